"""Best in class: the Rao-Blackwellised risk against plain Monte Carlo of the model, the search
against brute force and closed forms, the statistics of the ratios, and the optimality file."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import xarray as xr
import yaml
from conftest import ROOT, SCHEMA, TINY_CONFIG, run_snakemake

from multihead_icl import baselines as B
from multihead_icl import optimality as O
from multihead_icl.config import ConfigError, load_schema, load_suite
from multihead_icl.data import PromptSampler, TaskSpec
from multihead_icl.model import ReducedAttention, decomposable_weights

TWO_TASKS = TaskSpec(task_dims=(2, 3), noise_std=0.4, signal=(1.0, 0.7), context_length=10)
FAST = dict(
    samples=512,
    fresh_samples=4096,
    restarts=3,
    screen_samples=128,
    screen_iterations=10,
    iterations=40,
    polish_iterations=0,
)


def random_weights(spec: TaskSpec, heads: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-decomposable W and a full (non-diagonal) U: nothing the shortcuts could exploit."""
    gen = torch.Generator().manual_seed(seed)
    W = 0.4 * torch.randn(heads, spec.dim, spec.dim, generator=gen, dtype=torch.float64)
    U = torch.randn(heads, spec.num_tasks, spec.num_tasks, generator=gen, dtype=torch.float64)
    return W, U


@pytest.mark.parametrize("normalise", ["softmax", "linear"])
def test_conditional_excess_equals_plain_monte_carlo_of_the_model(normalise):
    """g, the context noise and the query noise are integrated out exactly: the mean must be the
    model's squared error on prompts drawn by the data module (with every source of noise)."""
    W, U = random_weights(TWO_TASKS, heads=3, seed=0)
    model = ReducedAttention(3, TWO_TASKS.dim, TWO_TASKS.num_tasks, normalise).double()
    model.W.data, model.U.data = W, U
    prompts = PromptSampler(TWO_TASKS, dtype=torch.float64).sample(
        40_000, torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        err = (model(prompts.x, prompts.y, prompts.x_query) - prompts.y_query).square().mean(
            dim=1
        ) - TWO_TASKS.noise_std**2
    covariates = O.draw_covariates(TWO_TASKS, 40_000, torch.Generator().manual_seed(2))
    rb = O.conditional_excess(W, U, covariates, TWO_TASKS, normalise)
    se = math.hypot(err.std() / 200, rb.std() / 200)
    assert abs(float(err.mean() - rb.mean())) < 4 * se
    assert rb.std() < err.std()  # the point of integrating out: less variance per prompt


def test_quadratic_terms_reproduce_the_reference_form():
    """general_terms is the reference with U = diag(mu), prompt by prompt; for d_i = 1 the
    block reduction of decomposable_terms loses nothing, so it must agree prompt by prompt too."""
    W, _ = random_weights(TWO_TASKS, heads=2, seed=3)
    mu = torch.randn(2, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    covariates = O.draw_covariates(TWO_TASKS, 64, torch.Generator().manual_seed(5))
    reference = O.conditional_excess(W, torch.diag_embed(mu), covariates, TWO_TASKS)
    assert torch.allclose(
        O.general_terms(W, covariates, TWO_TASKS, "softmax").excess(mu), reference, rtol=1e-10
    )

    scalar_tasks = TaskSpec(
        task_dims=(1, 1, 1), noise_std=0.3, signal=(1.0, 0.5, 2.0), context_length=7
    )
    omega = torch.tensor([[0.5, -0.2, 0.1], [0.0, 0.7, -0.4]], dtype=torch.float64)
    covariates = O.draw_covariates(scalar_tasks, 64, torch.Generator().manual_seed(6))
    z, r = covariates.block_projections(scalar_tasks)
    W = torch.as_tensor(O.decomposable_W(omega.numpy(), scalar_tasks))
    mu3 = torch.randn(2, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    fast = O.decomposable_terms(omega, z, r, scalar_tasks, "softmax").excess(mu3)
    assert torch.allclose(
        fast, O.conditional_excess(W, torch.diag_embed(mu3), covariates, scalar_tasks), rtol=1e-10
    )


def test_block_reduction_is_unbiased_for_wider_blocks():
    """For d_i > 1 the orthogonal parts are integrated out: same mean, smaller spread."""
    omega = torch.tensor([[0.4, -0.3], [0.1, 0.5]], dtype=torch.float64)
    mu = torch.tensor([[1.2, -0.5], [0.3, 0.9]], dtype=torch.float64)
    covariates = O.draw_covariates(TWO_TASKS, 30_000, torch.Generator().manual_seed(8))
    z, r = covariates.block_projections(TWO_TASKS)
    fast = O.decomposable_terms(omega, z, r, TWO_TASKS, "softmax").excess(mu)
    W = torch.as_tensor(O.decomposable_W(omega.numpy(), TWO_TASKS))
    full = O.conditional_excess(W, torch.diag_embed(mu), covariates, TWO_TASKS)
    diff = full - fast  # same prompts: paired
    assert abs(float(diff.mean())) < 4 * float(diff.std()) / math.sqrt(len(diff))
    assert fast.std() < full.std()


def test_solved_output_values_are_the_minimum_over_the_full_U():
    """The variable projection claims: the optimal U given W is diagonal with mu* on the diagonal.
    The gradient of the reference form over all of U must vanish there."""
    W, _ = random_weights(TWO_TASKS, heads=3, seed=9)
    covariates = O.draw_covariates(TWO_TASKS, 2000, torch.Generator().manual_seed(10))
    mu = O.general_terms(W, covariates, TWO_TASKS, "softmax").optimal_values()
    U = torch.diag_embed(mu).requires_grad_()  # U_h = diag(mu_h), (H, I, I)
    value = O.conditional_excess(W, U, covariates, TWO_TASKS).mean()
    (grad,) = torch.autograd.grad(value, U)
    assert grad.abs().max() < 1e-9
    moved = O.conditional_excess(
        W, U.detach() + 0.01 * torch.randn_like(U), covariates, TWO_TASKS
    ).mean()
    assert moved > value


def test_allocation_mask_keeps_each_head_on_its_task():
    search = O.BestInClass(TWO_TASKS, O.SearchSettings.from_mapping(FAST))
    fit = search.fit(2, O.allocation_mask(2, 2))
    assert np.all(fit.mu[~O.allocation_mask(2, 2)] == 0)
    assert O.allocation_mask(1, 2) is None


def test_single_head_search_reaches_the_brute_force_minimum():
    """One task, one head: the class is the curve omega -> min_mu risk. A dense grid on the same
    optimisation sample must not find anything lower than the quasi-Newton search."""
    spec = TaskSpec(task_dims=(3,), noise_std=0.3, signal=(1.0,), context_length=40)
    search = O.BestInClass(spec, O.SearchSettings.from_mapping(FAST))
    fit = search.fit(1)
    grid = np.linspace(-1.5, 1.5, 1201)
    with torch.no_grad():
        terms = [
            O.decomposable_terms(
                torch.tensor([[w]], dtype=torch.float64), search._z, search._r, spec, "softmax"
            )
            for w in grid
        ]
        brute = min(float(t.excess(t.optimal_values()).mean()) for t in terms)
    assert fit.sample_excess <= brute + 1e-7


def test_linear_attention_class_reaches_the_one_step_gd_closed_form():
    """With the softmax replaced by the average, one head on one task is one-step GD with step
    omega * mu: the search must land on the closed-form optimum of baselines.py."""
    spec = TaskSpec(task_dims=(4,), noise_std=0.3, signal=(1.0,), context_length=30)
    search = O.BestInClass(spec, O.SearchSettings.from_mapping(FAST), normalise="linear")
    fit = search.fit(1)
    fresh = search.fresh_excess({"linear": fit})["linear"]
    closed = B.gd_excess(spec).mean
    se = fresh.std() / math.sqrt(len(fresh))
    assert abs(fresh.mean() - closed) < 4 * se + 0.01 * closed


def test_classes_nest_and_multi_head_separates_from_single_head():
    search = O.BestInClass(TWO_TASKS, O.SearchSettings.from_mapping(FAST))
    fits = search.classes(heads=3)
    assert set(fits) == {"single_head", "allocated", "best_in_class"}
    assert fits["best_in_class"].sample_excess <= fits["single_head"].sample_excess + 1e-12
    assert fits["best_in_class"].sample_excess <= fits["allocated"].sample_excess + 1e-12
    fresh = search.fresh_excess(fits)
    ratio, low, high = O.ratio_interval(
        *O._mean_se(fresh["single_head"]),
        *O._mean_se(fresh["best_in_class"]),
        covariance=O._paired(fresh["single_head"], fresh["best_in_class"])[2],
        confidence=0.95,
    )
    assert low > 1.0  # two tasks: one head cannot serve both as well as three heads
    assert search.classes(heads=3)["best_in_class"] is fits["best_in_class"]  # searched once


def test_fits_do_not_depend_on_which_classes_were_searched_before():
    settings = O.SearchSettings.from_mapping(FAST)
    alone = O.BestInClass(TWO_TASKS, settings).classes(heads=2)["best_in_class"]
    after = O.BestInClass(TWO_TASKS, settings)
    after.fit(4)
    assert np.array_equal(after.classes(heads=2)["best_in_class"].omega, alone.omega)


def test_final_state_takes_rotated_weights_back_to_the_task_basis():
    spec = TaskSpec(
        task_dims=(2, 3),
        noise_std=0.3,
        signal=(1.0, 1.0),
        context_length=10,
        rotate=True,
        basis_seed=5,
    )
    omega, mu = np.array([[0.3, -0.1], [0.2, 0.4]]), np.array([[1.0, -2.0], [0.5, 3.0]])
    W, U = decomposable_weights(spec, omega, mu)  # observed basis
    phi, psi = spec.bases()
    train = xr.Dataset(
        {
            "W": (("time", "head", "r", "c"), np.stack([0 * W, W])),
            "U": (("time", "head", "yr", "yc"), np.stack([0 * U, U])),
            "eval_risk": ("time", [1.0, 0.2]),
            "eval_risk_se": ("time", [0.1, 0.01]),
            "basis_x": (("r", "c"), phi),
            "basis_y": (("yr", "yc"), psi),
        },
        attrs={"status": "converged"},
    )
    (risk, se), (W_latent, U_latent) = O.final_state(train)
    assert (risk, se) == (0.2, 0.01)
    assert np.allclose(W_latent, O.decomposable_W(omega, spec)) and np.allclose(
        U_latent, np.stack([np.diag(m) for m in mu])
    )
    train.attrs["status"] = "diverged"
    assert math.isnan(O.final_state(train)[0][0])


def test_trained_limit_treats_the_shared_evaluation_set_as_common_error():
    excess, se = O.trained_limit([(0.20, 0.01), (0.22, 0.01), (float("nan"), 0.01)], noise_var=0.09)
    assert excess == pytest.approx(0.12)
    assert se == pytest.approx(math.hypot(0.01, 0.01))  # within 0.01; between std 0.01414/sqrt(2)


def test_ratio_interval_covers_at_its_level():
    rng = np.random.default_rng(0)
    num, den, num_se, den_se = 0.06, 0.04, 0.003, 0.002
    covered = 0
    for _ in range(4000):
        _, low, high = O.ratio_interval(
            rng.normal(num, num_se), num_se, rng.normal(den, den_se), den_se, confidence=0.95
        )
        covered += low <= num / den <= high
    assert 0.93 < covered / 4000 < 0.97
    assert all(math.isnan(v) for v in O.ratio_interval(-0.01, 0.01, 0.04, 0.002, confidence=0.95))


def test_sanity_flags_fire_only_on_violations():
    excess = {name: 0.1 for name in O.REPORTED} | {"bayes": 0.01, "best_in_class": 0.05}
    se = {name: 0.001 for name in O.REPORTED}
    ok = O.sanity_flags(excess, se, {"single_head": (-0.05, 0.001)})
    assert not any(ok.values())
    bad = O.sanity_flags(
        excess | {"best_in_class": 0.2, "bayes": 0.3}, se, {"single_head": (0.01, 0.001)}
    )
    assert bad == {"best_above_trained": True, "bayes_not_lowest": True, "class_not_nested": True}


def test_configurations_are_the_runs_that_differ_only_by_seed():
    base = {"tasks": 2, "heads": 2, "context_length": 10}
    runs = {f"e/H{h}-s{s}": {**base, "heads": h, "seed": s} for h in (1, 2) for s in (0, 1, 2)}
    groups = O.group_configurations(runs)
    assert groups == {
        "H1": ["e/H1-s0", "e/H1-s1", "e/H1-s2"],
        "H2": ["e/H2-s0", "e/H2-s1", "e/H2-s2"],
    }
    assert list(
        O.group_configurations({"e/s0": {**base, "seed": 0}, "e/s1": {**base, "seed": 1}})
    ) == ["base"]


def test_optimality_file_contract():
    params = {
        "tasks": 2,
        "task_dim": [2, 3],
        "noise_std": 0.4,
        "signal": [1.0, 0.7],
        "context_length": 10,
        "model": "reduced",
        "target": "linear",
    }
    runs = {f"sweep/H{h}-s{s}": {**params, "heads": h, "seed": s} for h in (1, 3) for s in (0, 1)}
    finals = {
        run: (0.16 + 0.8 + 0.01 * p["seed"], 0.01) for run, p in runs.items()
    }  # worse than any class
    weights = {
        run: (np.zeros((p["heads"], 5, 5)), np.zeros((p["heads"], 2, 2))) for run, p in runs.items()
    }  # predicts 0
    ds = O.measure_experiment(runs, finals, {**FAST, "baseline_samples": 2000}, weights)
    assert list(ds.config.values) == ["H1", "H3"] and list(ds.heads.values) == [1, 3]
    for name in O.REPORTED:
        for var in (f"excess_{name}", f"excess_{name}_se"):
            assert (
                ds[var].dims == ("config",)
                and ds[var].attrs["units"]
                and ds[var].attrs["long_name"]
            )
    assert np.allclose(ds.optimality_ratio, ds.excess_trained / ds.excess_best_in_class)
    assert np.all(ds.optimality_ratio_low < ds.optimality_ratio) and np.all(
        ds.optimality_ratio < ds.optimality_ratio_high
    )
    assert ds.separation_ratio.values[0] == 1.0 and ds.separation_ratio_low.values[1] > 1.0
    assert np.isnan(ds.excess_allocated.values[0]) and np.isfinite(
        ds.excess_allocated.values[1]
    )  # H < I: undefined
    assert ds.flag_best_above_trained.dtype == np.int8 and ds.flag_bayes_not_lowest.sum() == 0
    assert (
        ds.best_omega.dims == ("config", "head", "task")
        and np.isnan(ds.best_omega.values[0, 1:]).all()
    )
    assert "optimality" in ds.attrs["config"] and ds.attrs["sanity_violations"] == "none"
    assert np.allclose(
        ds.excess_trained_fresh, np.mean(params["signal"]), rtol=0.05
    )  # the zero predictor pays kappa


def test_the_stage_imports_only_what_the_analysis_env_has():
    """envs/analysis.yaml has no matplotlib: the rule must not need it (pyyaml and jsonschema it
    has, for the config module that fills the schema's defaults)."""
    env = yaml.safe_load((ROOT / "envs" / "analysis.yaml").read_text())["dependencies"]
    code = (
        "import sys, multihead_icl.stages, multihead_icl.optimality; print(' '.join(sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    ).stdout.split()
    for module, package in (
        ("yaml", "pyyaml"),
        ("jsonschema", "jsonschema"),
        ("matplotlib", "matplotlib"),
    ):
        assert module not in loaded or any(str(dep).startswith(package) for dep in env), module


def test_config_accepts_the_optimality_keys_and_names_a_bad_one():
    schema = load_schema(SCHEMA)
    config = {
        "experiments": {"sweep": {"optimality": True, "grid": {"heads": [1, 2]}}},
        "optimality": {"restarts": 3},
    }
    suite = load_suite(config, schema)
    assert (
        suite.config["experiments"]["sweep"]["optimality"] is True
        and suite.config["optimality"]["restarts"] == 3
    )
    with pytest.raises(ConfigError, match="optimality"):
        load_suite({**config, "optimality": {"restart": 3}}, schema)
    with pytest.raises(ConfigError, match="optimality"):
        load_suite({"experiments": {"sweep": {"optimality": "yes"}}}, schema)


@pytest.mark.slow
def test_optimality_rule_end_to_end(tiny_workdir):
    ds = xr.open_dataset(tiny_workdir / "results" / "optimality" / "tiny.nc").isel(config=0)
    assert int(ds.seeds) == 2  # the two seeds are one configuration
    train = [xr.open_dataset(tiny_workdir / f"results/runs/tiny/s{s}/train.nc") for s in (0, 1)]
    expected = np.mean([float(t.eval_risk[-1]) for t in train]) - float(ds.noise_floor)
    assert float(ds.excess_trained) == pytest.approx(expected)
    for flag in ("flag_best_above_trained", "flag_bayes_not_lowest", "flag_class_not_nested"):
        assert int(ds[flag]) == 0, ds.attrs["sanity_violations"]
    # the trained (W, U) re-measured by this module agrees with training's own evaluation set
    gap = float(ds.excess_trained_fresh - ds.excess_trained)
    assert abs(gap) < 4 * math.hypot(float(ds.excess_trained_fresh_se), float(ds.excess_trained_se))
    assert "baseline_samples" in ds.attrs["config"] and ds.excess_best_in_class.attrs["units"]


@pytest.mark.slow
def test_optimality_on_a_nonlinear_target_stops_the_workflow_before_any_job(tmp_path):
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["experiments"]["tiny"]["base"]["target"] = "tanh"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = run_snakemake(tmp_path / "work", "-n", config=path, check=False)
    assert proc.returncode != 0
    assert "experiments.tiny.optimality: needs target linear" in proc.stderr
