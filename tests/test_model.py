"""The attention models against hand-computed formulas, finite differences and each other."""

import math

import numpy as np
import pytest
import torch

from multihead_icl.data import PromptSampler, TaskSpec
from multihead_icl.model import (
    FullAttention,
    ReducedAttention,
    build_model,
    decomposable_weights,
    initialise,
    reduced_view,
)

SPEC = TaskSpec(task_dims=(2, 3), noise_std=0.2, signal=(1.0, 1.0), context_length=6)


def prompts(batch=5, seed=0, spec=SPEC):
    return PromptSampler(spec, dtype=torch.float64).sample(
        batch, torch.Generator().manual_seed(seed)
    )


def test_reduced_model_matches_the_formula_by_hand_for_decomposable_weights():
    omega = np.array([[0.7, -0.2], [0.1, 0.9], [-0.5, 0.3]])
    mu = np.array([[1.5, 0.2], [-0.3, 2.0], [0.4, -1.1]])
    model = ReducedAttention(3, SPEC.dim, SPEC.num_tasks).double()
    w, u = decomposable_weights(SPEC, omega, mu)
    with torch.no_grad():
        model.W.copy_(torch.from_numpy(w))
        model.U.copy_(torch.from_numpy(u))
    p = prompts()
    got = model(p.x, p.y, p.x_query).detach().numpy()
    x, y, xq = p.x.numpy(), p.y.numpy(), p.x_query.numpy()
    blocks = [slice(0, 2), slice(2, 5)]
    expected = np.zeros_like(got)
    for b in range(x.shape[0]):
        for h in range(3):
            # score_l = sum_j omega_hj <x_l[S_j], x_q[S_j]>, softmax over the context only
            scores = np.array(
                [
                    sum(omega[h, j] * x[b, l, s] @ xq[b, s] for j, s in enumerate(blocks))
                    for l in range(6)
                ]
            )
            weights = np.exp(scores - scores.max())
            weights /= weights.sum()
            for i in range(2):
                expected[b, i] += mu[h, i] * sum(weights[l] * y[b, l, i] for l in range(6))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_linear_attention_is_the_scaled_average():
    model = build_model("linear", 2, SPEC.dim, SPEC.num_tasks).double()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        model.W.copy_(torch.randn(2, 5, 5, generator=gen, dtype=torch.float64))
        model.U.copy_(torch.randn(2, 2, 2, generator=gen, dtype=torch.float64))
    p = prompts(seed=1)
    x, y, xq = p.x.numpy(), p.y.numpy(), p.x_query.numpy()
    w, u = model.W.detach().numpy(), model.U.detach().numpy()
    expected = sum(u[h] @ (y[0].T @ (x[0] @ w[h] @ xq[0])) / 6 for h in range(2))
    np.testing.assert_allclose(model(p.x, p.y, p.x_query)[0].detach().numpy(), expected, rtol=1e-12)


def test_gradient_matches_finite_differences():
    torch.manual_seed(0)
    for kind in ("reduced", "full"):
        model = build_model(kind, 2, SPEC.dim, SPEC.num_tasks).double()
        initialise(model, SPEC, "gaussian", 0.8, torch.Generator().manual_seed(2))
        model.double()
        p = prompts(batch=7, seed=2)

        def loss(model=model, p=p):
            return (model(p.x, p.y, p.x_query) - p.y_query).square().mean()

        grads = torch.autograd.grad(loss(), list(model.parameters()))
        eps = 1e-6
        rng = np.random.default_rng(0)
        for param, grad in zip(model.parameters(), grads):
            for _ in range(4):
                idx = tuple(int(rng.integers(n)) for n in param.shape)
                with torch.no_grad():
                    param[idx] += eps
                    up = loss().item()
                    param[idx] -= 2 * eps
                    down = loss().item()
                    param[idx] += eps
                assert math.isclose(
                    grad[idx].item(), (up - down) / (2 * eps), rel_tol=1e-5, abs_tol=1e-9
                ), (kind, idx)


def _off_structure(weight: torch.Tensor, spec: TaskSpec) -> float:
    """Relative norm of the part of a (H, d, d) matrix that is not of the form sum_i omega_i P_i."""
    proj = torch.from_numpy(spec.block_projections())
    omega = torch.einsum("hjk,ijk->hi", weight, proj) / torch.tensor(
        spec.task_dims, dtype=weight.dtype
    )
    rest = weight - torch.einsum("hi,ijk->hjk", omega, proj)
    return (rest.norm() / weight.norm()).item()


def test_gradient_step_from_decomposable_init_stays_decomposable_up_to_sampling_noise():
    spec = TaskSpec(task_dims=(2, 2), noise_std=0.3, signal=(1.0, 1.0), context_length=16)
    residuals = {}
    for batch in (256, 16384):
        model = ReducedAttention(2, spec.dim, spec.num_tasks).double()
        initialise(model, spec, "decomposable", 0.3, torch.Generator().manual_seed(0), lead=1.0)
        model.double()
        p = PromptSampler(spec, dtype=torch.float64).sample(batch, torch.Generator().manual_seed(1))
        loss = (model(p.x, p.y, p.x_query) - p.y_query).square().mean()
        grad_w, _ = torch.autograd.grad(loss, [model.W, model.U])
        residuals[batch] = _off_structure(grad_w, spec)
    # the off-structure part of the gradient is pure sampling noise: ~ 1/sqrt(B)
    assert residuals[16384] < residuals[256] / 4, residuals
    assert residuals[16384] < 0.2, residuals


def test_full_model_with_leak_blocks_zero_equals_its_reduced_view():
    d, tasks, width = SPEC.dim, SPEC.num_tasks, SPEC.dim + SPEC.num_tasks
    full = FullAttention(3, d, tasks).double()
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for param in full.parameters():
            param.copy_(
                torch.randn(param.shape, generator=gen, dtype=torch.float64) / math.sqrt(width)
            )
        full.W_K[:, :, d:] = 0  # keys ignore y features -> no y -> score block
        full.W_V[:, :, :d] = 0  # values ignore x features -> no x -> value block
    view = reduced_view(full)
    assert view.score_leak.abs().max() < 1e-12 and view.value_leak.abs().max() < 1e-12
    reduced = ReducedAttention(3, d, tasks).double()
    with torch.no_grad():
        reduced.W.copy_(view.W)
        reduced.U.copy_(view.U)
    p = prompts(seed=4)
    torch.testing.assert_close(
        full(p.x, p.y, p.x_query), reduced(p.x, p.y, p.x_query), rtol=1e-10, atol=1e-12
    )


def test_full_model_leaks_are_reported_when_present():
    full = FullAttention(2, SPEC.dim, SPEC.num_tasks)
    initialise(full, SPEC, "gaussian", 1.0, torch.Generator().manual_seed(0))
    view = reduced_view(full)
    assert view.W.shape == (2, 5, 5) and view.U.shape == (2, 2, 2)
    assert (view.score_leak > 0.05).all() and (view.value_leak > 0.05).all()


def test_decomposable_init_of_full_model_has_the_requested_reduced_view():
    omega = np.array([[0.3, 0.1], [0.2, 0.4]])
    mu = np.array([[1.0, -0.5], [0.25, 2.0]])
    full = FullAttention(2, SPEC.dim, SPEC.num_tasks)
    initialise(full, SPEC, "decomposable", 0.0 + 1e-3, torch.Generator(), omega=omega, mu=mu)
    view = reduced_view(full)
    w, u = decomposable_weights(SPEC, omega, mu)
    np.testing.assert_allclose(view.W.numpy(), w, atol=1e-6)
    np.testing.assert_allclose(view.U.numpy(), u, atol=1e-6)


def _transformer(layers=2, heads=2, width=4, mlp_width=6, causal=False, spec=SPEC, seed=0):
    model = build_model(
        "transformer",
        heads,
        spec.dim,
        spec.num_tasks,
        layers=layers,
        width=width,
        mlp_width=mlp_width,
        causal=causal,
    )
    initialise(model, spec, "pytorch", 1.0, torch.Generator().manual_seed(seed))
    return model.double()


@pytest.mark.parametrize("causal", [False, True], ids=["full-attention", "causal"])
def test_transformer_gradient_matches_finite_differences(causal):
    """Every parameter of the pre-norm transformer (embedding, attention, MLP, LayerNorms, read-out)
    gets the gradient of the risk that central differences give."""
    model = _transformer(causal=causal)
    p = prompts(batch=3, seed=4)
    names = [name for name, _ in model.named_parameters()]
    values = tuple(param.detach().clone().requires_grad_(True) for param in model.parameters())

    def loss(*params):
        out = torch.func.functional_call(model, dict(zip(names, params)), (p.x, p.y, p.x_query))
        return (out - p.y_query).square().mean()

    assert torch.autograd.gradcheck(loss, values, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_masking_a_transformer_head_equals_zeroing_its_values():
    """head_mask[l, h] = 0 removes exactly head h's attention output in block l: the same as
    zeroing its value projection (weights and bias), since its output averages value vectors."""
    model = _transformer(layers=2, heads=2, width=4)
    p = prompts(batch=4, seed=5)
    mask = torch.ones(2, 2, dtype=torch.float64)
    mask[1, 0] = 0.0
    masked = model(p.x, p.y, p.x_query, head_mask=mask)
    assert not torch.allclose(masked, model(p.x, p.y, p.x_query))
    assert torch.equal(
        model(p.x, p.y, p.x_query, head_mask=torch.ones(2, 2).double()), model(p.x, p.y, p.x_query)
    )
    width, head_dim = 4, 2
    with torch.no_grad():
        rows = slice(2 * width, 2 * width + head_dim)  # block 1's value rows of head 0
        model.blocks[1].qkv.weight[rows] = 0.0
        model.blocks[1].qkv.bias[rows] = 0.0
    torch.testing.assert_close(model(p.x, p.y, p.x_query), masked)


def test_the_transformer_reads_the_query_and_every_context_pair():
    """The prediction changes with the query's x and with any context pair, and not with the query's
    target (the query token carries 0 in its y slot)."""
    model = _transformer()
    p = prompts(batch=2, seed=6)
    base = model(p.x, p.y, p.x_query)
    y = p.y.clone()
    y[:, 3] += 1.0
    assert not torch.allclose(model(p.x, y, p.x_query), base)
    assert not torch.allclose(model(p.x, p.y, p.x_query + 0.5), base)
    assert base.shape == (2, SPEC.num_tasks)


def test_flat_parameters_round_trip_and_refuse_another_shape():
    from multihead_icl.model import flat_parameters_of, load_flat_parameters

    model = _transformer(seed=1)
    flat, layout = flat_parameters_of(model)
    other = _transformer(seed=2)
    load_flat_parameters(other, flat.numpy(), layout)
    p = prompts(batch=2)
    torch.testing.assert_close(other(p.x, p.y, p.x_query), model(p.x, p.y, p.x_query))
    with pytest.raises(ValueError, match="layout does not fit"):
        load_flat_parameters(_transformer(layers=1), flat.numpy(), layout)
