"""The authors' setting (docs/science.md §7): their block layout and scale, noiseless query, their
inits, their loss, and the full model against a token-by-token projection written out here."""

import math

import numpy as np
import pytest
import torch
from conftest import SCHEMA

from multihead_icl.config import ConfigError, load_schema, load_suite
from multihead_icl.data import PromptSampler, TaskSpec
from multihead_icl.model import FullAttention, ReducedAttention, initialise, reduced_view
from multihead_icl.tasks import split_blocks
from multihead_icl.training import risk

AUTHORS = {
    "tasks": 3,
    "input_dim": 50,
    "task_dim": 4,
    "signal": 1.0,
    "signal_per": "coordinate",
    "noise_std": 0.0,
    "query_noise": False,
    "context_length": 100,
}


def test_split_blocks_cuts_where_the_authors_generator_cuts():
    assert split_blocks(50, 3) == [16, 17, 17]
    assert split_blocks(50, 1) == [50]
    assert split_blocks(10, 4) == [2, 3, 2, 3]
    # their generator cuts at int(i * (dx / dy)) in floating point: the same blocks wherever that
    # float reaches dx at the last cut; where rounding stops it short (61 over 7), theirs drops the
    # last covariate and ours does not
    for dx in range(3, 80):
        for dy in range(1, min(dx, 8) + 1):
            cuts = [int(i * (dx / dy)) for i in range(dy + 1)]
            if cuts[-1] == dx:
                assert split_blocks(dx, dy) == [b - a for a, b in zip(cuts, cuts[1:])], (dx, dy)
    assert int(7 * (61 / 7)) == 60 and sum(split_blocks(61, 7)) == 61
    with pytest.raises(ValueError, match="input_dim"):
        split_blocks(2, 3)


def test_the_authors_spec_has_their_blocks_signal_and_floor():
    spec = TaskSpec.from_params(AUTHORS)
    assert spec.task_dims == (16, 17, 17) and spec.dim == 50
    assert spec.signal == (16.0, 17.0, 17.0)  # coefficient entries N(0, 1): kappa_i = d_i
    assert spec.risk_floor == 0.0
    noisy = TaskSpec.from_params({**AUTHORS, "noise_std": 0.5})
    assert (
        noisy.risk_floor == 0.0
        and TaskSpec.from_params({**AUTHORS, "noise_std": 0.5, "query_noise": True}).risk_floor
        == 0.25
    )


def test_generator_matches_the_authors_layout_scale_and_noiseless_query():
    spec = TaskSpec.from_params({**AUTHORS, "noise_std": 0.5})
    p = PromptSampler(spec, dtype=torch.float64).sample(4000, torch.Generator().manual_seed(0))
    coef = (
        p.coef.numpy()
    )  # (B, I, d): zero off each task's block [floor(i 50/3), floor((i+1) 50/3))
    for i, (lo, hi) in enumerate([(0, 16), (16, 33), (33, 50)]):
        outside = np.ones(50, dtype=bool)
        outside[lo:hi] = False
        assert np.all(coef[:, i, outside] == 0)
        norm2 = np.square(coef[:, i, lo:hi]).sum(axis=1)
        # E||g_i||^2 = d_i within four standard errors
        assert abs(norm2.mean() - (hi - lo)) < 4 * norm2.std() / math.sqrt(len(norm2))
        # entries N(0, 1)
        assert abs(coef[:, i, lo:hi].std() - 1.0) < 0.02
    # the query target is exactly <g_i, x_q>: no noise
    clean = np.einsum("bid,bd->bi", coef, p.x_query.numpy())
    np.testing.assert_allclose(p.y_query.numpy(), clean, atol=1e-12)
    # the context targets do carry noise sigma = 0.5
    residual = p.y.numpy() - np.einsum("bid,bld->bli", coef, p.x.numpy())
    assert abs(residual.std() - 0.5) < 0.01


def test_noiseless_query_keeps_the_random_stream():
    """Switching the query noise off changes only the query target: the same generator state
    gives the same covariates, coefficients and context."""
    on = PromptSampler(
        TaskSpec.from_params({**AUTHORS, "noise_std": 0.3, "query_noise": True})
    ).sample(8, torch.Generator().manual_seed(3))
    off = PromptSampler(TaskSpec.from_params({**AUTHORS, "noise_std": 0.3})).sample(
        8, torch.Generator().manual_seed(3)
    )
    for name in ("x", "y", "x_query", "coef"):
        torch.testing.assert_close(getattr(on, name), getattr(off, name))
    assert not torch.allclose(on.y_query, off.y_query)


def test_official_init_builds_the_stated_matrices():
    spec = TaskSpec.from_params(AUTHORS)
    model = FullAttention(3, spec.dim, spec.num_tasks)
    initialise(model, spec, "official", 0.01, torch.Generator().manual_seed(0))
    c, width, d = 100**-0.75, 53, 50
    for h in range(3):
        torch.testing.assert_close(model.W_Q[h], c * torch.eye(width))
        torch.testing.assert_close(model.W_K[h], c * torch.eye(width))
        v = torch.full((3,), c)
        v[h] = 2 * c
        expected_v = torch.zeros(width, width)
        expected_v[d:, d:] = torch.diag(v)
        torch.testing.assert_close(model.W_V[h], expected_v)
        torch.testing.assert_close(model.O[h][:, d:], torch.diag(v))  # O_h = (V_h)_yy^T
        assert torch.all(model.O[h][:, :d] == 0)
    view = reduced_view(model)
    # the read-outs of their code: diag(K^T Q)/sqrt(53) on the x block, diag of (O V)_yy
    torch.testing.assert_close(view.W, torch.eye(d).expand(3, d, d) * c**2 / math.sqrt(width))
    torch.testing.assert_close(
        torch.diagonal(view.U, dim1=1, dim2=2),
        torch.tensor([[4.0, 1, 1], [1, 4, 1], [1, 1, 4]]) * c**2,
    )
    assert float(view.score_leak.max()) == 0.0 and float(view.value_leak.max()) == 0.0


def test_official_random_draws_one_normal_per_head_and_factor_and_reduced_gets_the_same_view():
    spec = TaskSpec.from_params({**AUTHORS, "tasks": 1})
    full = FullAttention(8, spec.dim, 1)
    initialise(full, spec, "official_random", 0.01, torch.Generator().manual_seed(5))
    c = 100**-0.75
    q = torch.stack([full.W_Q[h, 0, 0] for h in range(8)]) / c
    k = torch.stack([full.W_K[h, 0, 0] for h in range(8)]) / c
    assert len(set(q.tolist())) == 8 and not torch.allclose(q, k)
    for h in range(8):
        torch.testing.assert_close(full.W_Q[h], q[h] * c * torch.eye(51))
    # heads beyond the tasks lead none: v = c on their one task; head 0 leads task 0 (v = 2c)
    torch.testing.assert_close(full.W_V[:, 50, 50], torch.tensor([2 * c] + [c] * 7))
    reduced = ReducedAttention(8, spec.dim, 1)
    initialise(reduced, spec, "official_random", 0.01, torch.Generator().manual_seed(5))
    view = reduced_view(full)
    torch.testing.assert_close(reduced.W, view.W)
    torch.testing.assert_close(reduced.U, view.U)


def test_pytorch_init_is_nn_linear_default_and_needs_the_full_model():
    spec = TaskSpec.from_params(AUTHORS)
    model = FullAttention(3, spec.dim, spec.num_tasks)
    initialise(model, spec, "pytorch", 0.01, torch.Generator().manual_seed(0))
    for param, fan_in in ((model.W_Q, 53), (model.W_K, 53), (model.W_V, 53), (model.O, 3 * 53)):
        bound = 1 / math.sqrt(fan_in)
        top = float(param.detach().abs().max())
        assert 0.9 * bound < top <= bound
        # uniform on (-b, b): variance b^2 / 3
        assert abs(float(param.detach().var()) / (bound**2 / 3) - 1) < 0.1
    with pytest.raises(ValueError, match="full"):
        initialise(ReducedAttention(3, spec.dim, 3), spec, "pytorch", 0.01, torch.Generator())


def _token_by_token(
    model: FullAttention, x: torch.Tensor, y: torch.Tensor, x_query: torch.Tensor
) -> torch.Tensor:
    """The authors' forward written out: project every token with Q, K, V per head, scale the
    logits by D^-1/2, softmax over the context, and project the concatenated heads with O."""
    batch, length, _ = x.shape
    heads, width = model.W_Q.shape[0], model.W_Q.shape[1]
    out = torch.zeros(batch, model.tasks, dtype=x.dtype)
    for b in range(batch):
        query_token = torch.cat([x_query[b], torch.zeros(model.tasks, dtype=x.dtype)])
        concatenated = []
        for h in range(heads):
            q = model.W_Q[h] @ query_token
            keys = [model.W_K[h] @ torch.cat([x[b, l], y[b, l]]) for l in range(length)]
            values = [model.W_V[h] @ torch.cat([x[b, l], y[b, l]]) for l in range(length)]
            logits = torch.stack([q @ k for k in keys]) / math.sqrt(width)
            weights = torch.softmax(logits, dim=0)
            concatenated.append(sum(w * v for w, v in zip(weights, values)))
        o_proj = torch.cat(list(model.O), dim=1)  # (I, H D), as nn.Linear(H D, I).weight
        out[b] = o_proj @ torch.cat(concatenated)
    return out


@pytest.mark.parametrize("scheme", ["official", "pytorch"])
def test_full_model_equals_the_token_by_token_projection(scheme):
    spec = TaskSpec.from_params({**AUTHORS, "input_dim": 7, "context_length": 5})
    model = FullAttention(3, spec.dim, spec.num_tasks).double()
    initialise(model, spec, scheme, 0.01, torch.Generator().manual_seed(1))
    with torch.no_grad():  # away from the init's symmetry, so every block of every factor matters
        for param in model.parameters():
            param.add_(
                0.3
                * torch.randn(
                    param.shape, generator=torch.Generator().manual_seed(7), dtype=param.dtype
                )
            )
    p = PromptSampler(spec, dtype=torch.float64).sample(4, torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(
            model(p.x, p.y, p.x_query), _token_by_token(model, p.x, p.y, p.x_query)
        )


def test_risk_is_the_authors_mse_loss():
    prediction, target = torch.randn(7, 3), torch.randn(7, 3)
    torch.testing.assert_close(risk(prediction, target), torch.nn.MSELoss()(prediction, target))


def test_config_refuses_inits_that_do_not_apply():
    schema = load_schema(SCHEMA)
    base = {
        "defaults": {**AUTHORS, "model": "reduced", "init": "pytorch"},
        "experiments": {"e": {}},
    }
    with pytest.raises(ConfigError, match="init: pytorch"):
        load_suite(base, schema)
    fewer = {"defaults": {**AUTHORS, "heads": 2, "init": "official"}, "experiments": {"e": {}}}
    with pytest.raises(ConfigError, match="heads >= tasks"):
        load_suite(fewer, schema)
    suite = load_suite(
        {"defaults": {**AUTHORS, "model": "full", "init": "pytorch"}, "experiments": {"e": {}}},
        schema,
    )
    assert list(suite.datasets)[0].startswith("I3-d16x17x17-L100-")
