"""Baselines: every reported excess (closed form or exact Monte Carlo) against the predictor itself
scored on prompts from the data module, and against the calibration numbers of docs/science.md
§6."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar

from multihead_icl import baselines as B
from multihead_icl.data import PromptSampler, TaskSpec

# two unequal tasks, shown in random bases, L small enough that the finite-L terms are large
SPEC = TaskSpec(
    task_dims=(2, 3), noise_std=0.5, signal=(1.0, 0.6), context_length=12, rotate=True, basis_seed=3
)


@pytest.fixture(scope="module")
def prompts():
    sampler = PromptSampler(SPEC, dtype=torch.float64)
    return sampler.sample(60_000, torch.Generator().manual_seed(0))


def scored(prediction: torch.Tensor, prompts) -> tuple[float, float]:
    """Excess measured directly: squared error against the noiseless query target (observed basis;
    the orthogonal Psi keeps the average over tasks)."""
    clean = torch.einsum("bid,bd->bi", prompts.coef, prompts.x_query)
    per_prompt = (prediction.to(torch.float64) - clean).square().mean(dim=1)
    return float(per_prompt.mean()), float(per_prompt.std() / per_prompt.numel() ** 0.5)


def assert_agrees(measured: tuple[float, float], reported: B.Excess, sigmas: float = 4.0) -> None:
    mean, se = measured
    assert abs(mean - reported.mean) <= sigmas * np.hypot(se, reported.mean_se), (
        mean,
        se,
        reported.mean,
        reported.mean_se,
    )


def test_bayes_posterior_variance_matches_the_ridge_predictor_on_prompts(prompts):
    assert_agrees(
        scored(B.predict_bayes(prompts, SPEC), prompts),
        B.bayes_excess(SPEC, samples=50_000, seed=1),
    )


@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_no_other_ridge_beats_the_bayes_penalty_on_the_same_prompts(prompts, factor):
    clean = torch.einsum("bid,bd->bi", prompts.coef, prompts.x_query)
    bayes = (B.predict_bayes(prompts, SPEC) - clean).square().mean(dim=1)
    other = (
        (B.predict_ridge(prompts, SPEC, factor * B.bayes_ridge(SPEC)) - clean).square().mean(dim=1)
    )
    diff = other - bayes
    assert diff.mean() > 3 * diff.std() / diff.numel() ** 0.5


@pytest.mark.parametrize("on_all", [False, True])
def test_ols_inverse_wishart_closed_form_matches_least_squares_on_prompts(prompts, on_all):
    predict = B.predict_ols_full if on_all else B.predict_ols_block
    assert_agrees(
        scored(predict(prompts, SPEC), prompts), B.ols_excess(SPEC, on_all_covariates=on_all)
    )


@pytest.mark.parametrize("centred", [False, True])
@pytest.mark.parametrize("step", [None, 0.5])
def test_one_step_gd_closed_form_matches_the_predictor_at_best_and_other_steps(
    prompts, centred, step
):
    measured = scored(B.predict_gd(prompts, SPEC, step=step, centred=centred), prompts)
    assert_agrees(measured, B.gd_excess(SPEC, step=step, centred=centred))


@pytest.mark.parametrize("centred", [False, True])
def test_best_step_is_the_minimiser_of_the_closed_form(centred):
    best = B.gd_best_step(SPEC, centred)
    for task in range(SPEC.num_tasks):

        def excess(eta: float, task: int = task) -> float:
            steps = best.copy()
            steps[task] = eta
            return B.gd_excess(SPEC, step=steps, centred=centred).per_task[task]

        found = minimize_scalar(
            excess, bounds=(0.0, 3.0), method="bounded", options={"xatol": 1e-10}
        ).x
        assert found == pytest.approx(best[task], rel=1e-5)


def test_bartlett_eigenvalues_have_the_law_of_a_direct_gram_matrix():
    rng = np.random.default_rng(0)
    dim, dof, n = 3, 7, 40_000
    bartlett = B.wishart_eigenvalues(dim, dof, n, rng)
    x = rng.standard_normal((n, dof, dim))
    direct = np.linalg.eigvalsh(np.einsum("sld,sle->sde", x, x))
    for stat in (
        lambda e: e.min(axis=1),
        lambda e: e.max(axis=1),
        lambda e: (1 / (e + 0.5)).sum(axis=1),
    ):
        a, b = stat(bartlett), stat(direct)
        assert abs(a.mean() - b.mean()) < 4 * np.hypot(a.std(), b.std()) / np.sqrt(n)


def test_ordering_and_limits_of_the_baselines():
    spec = TaskSpec(task_dims=(4, 4), noise_std=0.3, signal=(1.0, 1.0), context_length=30)
    ex = B.baseline_excess(spec, samples=20_000)
    assert ex["bayes"].mean < ex["ols_block"].mean < ex["ols_full"].mean
    assert ex["linear_attention"].mean < ex["debiased_gd"].mean  # centring costs one pair
    # Bayes tends to OLS as the prior washes out (large L), and is 0 without noise once L >= d
    long = TaskSpec(task_dims=(4,), noise_std=0.3, signal=(1.0,), context_length=5000)
    assert B.bayes_excess(long, 20_000).mean == pytest.approx(B.ols_excess(long).mean, rel=2e-3)
    noiseless = TaskSpec(task_dims=(4,), noise_std=0.0, signal=(1.0,), context_length=6)
    assert B.bayes_excess(noiseless, 1000).mean == 0.0
    assert np.isinf(B.ols_excess(TaskSpec((4,), 0.3, (1.0,), 5)).mean)  # L <= d + 1


@pytest.mark.parametrize(
    "length, bayes, linear",
    [(50, 0.0079, 0.097), (200, 0.0018, 0.026), (800, 0.00046, 0.0068)],
)
def test_single_task_calibration_of_science_md(length, bayes, linear):
    """docs/science.md §6: d = 4, sigma^2 = 0.09, numbers quoted to two significant digits."""
    spec = TaskSpec(task_dims=(4,), noise_std=0.3, signal=(1.0,), context_length=length)
    assert B.bayes_excess(spec, 50_000).mean == pytest.approx(bayes, rel=0.04)
    assert B.gd_excess(spec).mean == pytest.approx(linear, rel=0.04)
