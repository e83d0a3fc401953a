"""The attention models against hand-computed formulas, finite differences and each other."""

import math

import numpy as np
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
