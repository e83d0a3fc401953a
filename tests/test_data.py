"""The prompt generator: block structure, signal, noise, rotations, seeding."""

import numpy as np
import pytest
import torch

from multihead_icl.data import PromptSampler, TaskSpec, sample_eval_set


def spec(**kw):
    base = dict(task_dims=(2, 5), noise_std=0.0, signal=(1.0, 2.5), context_length=8)
    base.update(kw)
    return TaskSpec(**base)


def test_coefficients_live_on_their_task_block():
    s = spec()
    p = PromptSampler(s).sample(64, torch.Generator().manual_seed(0))
    coef = p.coef.numpy()
    assert np.all(coef[:, 0, 2:] == 0) and np.all(coef[:, 1, :2] == 0)
    assert np.all(coef[:, 0, :2] != 0) and np.all(coef[:, 1, 2:] != 0)


def test_outputs_are_linear_in_their_block_without_noise():
    s = spec()
    p = PromptSampler(s).sample(16, torch.Generator().manual_seed(1))
    expected = torch.einsum("bld,bid->bli", p.x, p.coef)
    torch.testing.assert_close(p.y, expected)
    torch.testing.assert_close(p.y_query, torch.einsum("bd,bid->bi", p.x_query, p.coef))


def test_signal_is_expected_squared_norm_of_each_task_coefficient():
    s = spec()
    p = PromptSampler(s, dtype=torch.float64).sample(40000, torch.Generator().manual_seed(2))
    sq = p.coef.square().sum(-1).numpy()  # (B, I)
    mean, se = sq.mean(0), sq.std(0) / np.sqrt(len(sq))
    assert np.all(np.abs(mean - np.array(s.signal)) < 4 * se), (mean, se)


def test_noise_has_the_configured_variance_on_context_and_query():
    s = spec(noise_std=0.5)
    p = PromptSampler(s, dtype=torch.float64).sample(4000, torch.Generator().manual_seed(3))
    resid = (p.y - torch.einsum("bld,bid->bli", p.x, p.coef)).numpy()
    resid_q = (p.y_query - torch.einsum("bd,bid->bi", p.x_query, p.coef)).numpy()
    assert abs(resid.var() - 0.25) < 0.01
    assert abs(resid_q.var() - 0.25) < 0.02


def test_covariates_are_standard_normal():
    p = PromptSampler(spec(), dtype=torch.float64).sample(4000, torch.Generator().manual_seed(4))
    x = p.x.reshape(-1, 7).numpy()
    assert np.abs(x.mean(0)).max() < 0.02
    assert np.abs(np.cov(x.T) - np.eye(7)).max() < 0.03


def test_rotated_bases_are_orthogonal_and_hide_the_blocks():
    s = spec(rotate=True, basis_seed=7)
    phi, psi = s.bases()
    np.testing.assert_allclose(phi @ phi.T, np.eye(7), atol=1e-12)
    np.testing.assert_allclose(psi @ psi.T, np.eye(2), atol=1e-12)
    p = PromptSampler(s, dtype=torch.float64).sample(8, torch.Generator().manual_seed(5))
    coef = p.coef.numpy()
    assert np.abs(coef[:, 0, 2:]).max() > 1e-3  # observed coefficients are not block sparse
    latent = np.einsum("ji,bjk,kl->bil", psi, coef, phi)  # Psi^T C Phi recovers the blocks
    assert np.abs(latent[:, 0, 2:]).max() < 1e-12 and np.abs(latent[:, 1, :2]).max() < 1e-12
    torch.testing.assert_close(p.y, torch.einsum("bld,bid->bli", p.x, p.coef))


def test_same_seed_same_prompts_and_eval_set_is_reproducible():
    s = spec(noise_std=0.1)
    a = PromptSampler(s).sample(4, torch.Generator().manual_seed(9))
    b = PromptSampler(s).sample(4, torch.Generator().manual_seed(9))
    torch.testing.assert_close(a.y, b.y, rtol=0, atol=0)
    e1, e2 = sample_eval_set(s, 1500, seed=3), sample_eval_set(s, 1500, seed=3)
    assert len(e1) == 1500
    torch.testing.assert_close(e1.x, e2.x, rtol=0, atol=0)


def test_context_length_override_and_nonlinear_target():
    s = spec(target="tanh")
    p = PromptSampler(s).sample(4, torch.Generator().manual_seed(0), context_length=3)
    assert p.x.shape == (4, 3, 7) and p.y.shape == (4, 3, 2)
    assert p.y.abs().max() <= 1.0


@pytest.mark.parametrize(
    "kw",
    [dict(task_dims=(0, 2)), dict(signal=(1.0,)), dict(target="cubic"), dict(context_length=0)],
)
def test_bad_specs_are_rejected(kw):
    with pytest.raises(ValueError):
        spec(**kw)
