"""The spectral read-out: hand-built weights give back what was put in; allocation, prediction and
n_eff on cases with known answers; a whole spectral.nc from an exactly known trajectory; the
rule."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import xarray as xr
import yaml
from conftest import TINY_CONFIG

from multihead_icl import io
from multihead_icl.config import complete_run
from multihead_icl.data import TaskSpec, sample_eval_set
from multihead_icl.model import decomposable_weights
from multihead_icl.spectral import (
    allocation_is_clean,
    allocation_share,
    analyse_run,
    decomposability_residual,
    effective_token_ratio,
    predicted_winner,
    semi_singular_values,
    to_latent,
    value_residual,
    winner_and_purity,
)
from multihead_icl.spectral_settings import SpectralSettings
from multihead_icl.theory import SpectralProblem, finite_length_risk, integrate_spectral_ode

CONTRACT = (
    "omega",
    "mu",
    "signal",
    "share",
    "decomposability_residual",
    "winner",
    "purity",
    "predicted_winner",
    "warmup_end",
    "emergence_end",
    "omega_ode",
    "mu_ode",
)


def rotated_spec(dims=(2, 3, 1), length=32) -> TaskSpec:
    return TaskSpec(
        task_dims=dims,
        noise_std=0.3,
        signal=(1.0,) * len(dims),
        context_length=length,
        rotate=True,
        basis_seed=4,
    )


def test_read_out_of_hand_built_decomposable_weights_returns_the_values_put_in():
    spec = rotated_spec()
    rng = np.random.default_rng(0)
    omega, mu = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    weight, value = decomposable_weights(
        spec, omega, mu
    )  # observed basis: Phi (.) Phi^T, Psi (.) Psi^T
    phi, psi = spec.bases()
    assert not np.allclose(
        weight[0], np.diag(np.diag(weight[0]))
    )  # the rotation really mixes coordinates
    w_lat, u_lat = to_latent(weight, value, phi, psi)
    got_omega, got_mu = semi_singular_values(w_lat, u_lat, spec.block_mask())
    np.testing.assert_allclose(got_omega, omega, atol=1e-12)
    np.testing.assert_allclose(got_mu, mu, atol=1e-12)
    assert np.all(decomposability_residual(w_lat, got_omega, spec.block_mask()) < 1e-12)
    assert np.all(value_residual(u_lat, got_mu) < 1e-12)


def test_decomposability_residual_of_a_known_perturbation():
    spec = TaskSpec(task_dims=(2, 2), noise_std=0.3, signal=(1.0, 1.0), context_length=8)
    w_lat = np.diag([1.0, 1.0, 2.0, 2.0])[None].copy()
    w_lat[0, 0, 3] = 0.5  # off-block entry
    w_lat[0, 0, 0], w_lat[0, 1, 1] = 1.3, 0.7  # traceless inside block 1: omega unchanged
    omega, _ = semi_singular_values(w_lat, np.zeros((1, 2, 2)), spec.block_mask())
    np.testing.assert_allclose(omega, [[1.0, 2.0]])
    expected = math.sqrt(0.5**2 + 0.3**2 + 0.3**2) / np.linalg.norm(w_lat[0])
    assert decomposability_residual(w_lat, omega, spec.block_mask())[0] == pytest.approx(expected)


def test_allocation_shares_winners_purity_and_clean():
    allocated_omega = np.array([[0.5, 0.01, 0.0], [0.02, 0.4, 0.0], [0.0, 0.01, 0.45]])
    allocated_mu = np.array([[2.0, 0.1, 0.0], [0.1, 2.5, 0.0], [0.0, 0.1, 2.2]])
    share = allocation_share(allocated_omega, allocated_mu)
    np.testing.assert_allclose(share.sum(axis=0), 1.0)
    winner, purity = winner_and_purity(share)
    assert winner.tolist() == [0, 1, 2] and np.all(purity > 0.99)
    assert allocation_is_clean(winner, purity, heads=3, threshold=0.9)
    # every head serves every task alike (what the default runs drift to): purity 1/H, not clean
    shared = np.full((3, 3), 0.3)
    winner, purity = winner_and_purity(allocation_share(shared, shared))
    np.testing.assert_allclose(purity, 1 / 3)
    assert not allocation_is_clean(winner, purity, heads=3, threshold=0.9)
    # one head wins two tasks: pure but not clean when H >= I; fine when H < I
    assert not allocation_is_clean(np.array([0, 0, 2]), np.ones(3), heads=3, threshold=0.9)
    assert allocation_is_clean(np.array([0, 0, 1]), np.ones(3), heads=2, threshold=0.9)
    # no head serves a task: undefined, never clean
    winner, purity = winner_and_purity(allocation_share(np.zeros((2, 2)), np.ones((2, 2))))
    assert winner.tolist() == [-1, -1] and np.isnan(purity).all()
    assert not allocation_is_clean(winner, purity, heads=2, threshold=0.9)


def test_predicted_winner_uses_the_growing_mode_not_the_largest_omega():
    """Head 0 has the larger omega, head 1 the larger a = (sqrt(d) omega + mu)/2; the infinite-L
    flow must end its warm-up with head 1 leading, as predicted."""
    dims = np.array([4.0])
    omega0 = np.array([[0.02], [0.01]])
    mu0 = np.array([[0.0], [0.03]])
    winner, margin = predicted_winner(dims, omega0, mu0)
    assert winner.tolist() == [1] and margin[0] == pytest.approx(0.025 / 0.02)
    problem = SpectralProblem((4,), (1.0,), 0.09, math.inf)
    times = np.linspace(0, 30, 301)
    sol = integrate_spectral_ode(problem, omega0, mu0, times, rtol=1e-10, atol=1e-14)
    end_of_warmup = int(np.argmax(sol.signal[:, 0] >= 0.1))
    assert winner_and_purity(allocation_share(sol.omega[end_of_warmup], sol.mu[end_of_warmup]))[
        0
    ].tolist() == [1]


def test_effective_token_ratio_limits():
    spec = TaskSpec(task_dims=(2, 2), noise_std=0.3, signal=(1.0, 1.0), context_length=50)
    prompts = sample_eval_set(spec, 64, seed=0)
    weight = np.stack(
        [np.zeros((2, 4, 4)), np.stack([np.zeros((4, 4)), 40 * np.eye(4)])]
    )  # (T=2, H=2, d, d)
    ratio = effective_token_ratio(weight, prompts)
    np.testing.assert_allclose(ratio[0], 1.0)  # W = 0: uniform attention over all L tokens
    assert ratio[1, 0] == pytest.approx(1.0) and ratio[1, 1] < 3 / 50  # sharp W: a few tokens


def _synthetic_run(rotate: bool = True) -> tuple[xr.Dataset, dict, object]:
    """A train.nc whose W, U follow the spectral ODE exactly (what perfect gradient flow would
    record)."""
    params = dict(
        tasks=2,
        task_dim=[2, 3],
        noise_std=0.3,
        signal=1.0,
        context_length=64,
        rotate=rotate,
        basis_seed=1,
        heads=3,
        model="reduced",
        init="decomposable",
        init_scale=0.01,
        optimizer="gd",
        lr=0.5,
        batch_size=256,
        target="linear",
        seed=0,
    )
    spec = TaskSpec.from_params(params)
    problem = SpectralProblem.from_params(params)
    omega0 = np.array([[0.012, 0.004], [0.006, 0.01], [0.003, 0.005]])
    mu0 = np.array([[0.01, 0.006], [0.004, 0.012], [0.008, 0.002]])
    times = 0.5 * np.unique(np.concatenate([[0], np.round(np.geomspace(1, 400, 70))]))
    sol = integrate_spectral_ode(problem, omega0, mu0, times, rtol=1e-9, atol=1e-12)
    assert sol.success
    weights = np.stack([decomposable_weights(spec, o, m)[0] for o, m in zip(sol.omega, sol.mu)])
    values = np.stack([decomposable_weights(spec, o, m)[1] for o, m in zip(sol.omega, sol.mu)])
    risk = np.array([finite_length_risk(problem, o, m) for o, m in zip(sol.omega, sol.mu)])
    phi, psi = spec.bases()
    ds = xr.Dataset(
        {
            "W": (("time", "head", "x_row", "x_col"), weights),
            "U": (("time", "head", "y_row", "y_col"), values),
            "eval_risk": (("time",), risk),
            "eval_risk_se": (("time",), np.full(len(times), 1e-3)),
            "grad_norm": (("time",), np.exp(-times / 50)),
            "basis_x": (("x_row", "x_col"), phi),
            "basis_y": (("y_row", "y_col"), psi),
            "block_mask": (("task", "x_col"), spec.block_mask()),
        },
        coords={
            "time": times,
            "step": ("time", (times / 0.5).astype(int)),
            "head": np.arange(3),
            "task": np.arange(2),
        },
        attrs={**io.provenance_attrs(params), "status": "max_steps"},
    )
    return ds, params, sol


def test_analyse_run_on_an_exact_gradient_flow_trajectory():
    train, params, sol = _synthetic_run()
    spec = TaskSpec.from_params(params)
    ds = analyse_run(train, sample_eval_set(spec, 32, seed=0), SpectralSettings.from_config())
    for name in CONTRACT:
        assert name in ds and "long_name" in ds[name].attrs, name
    assert io.read_config(ds) == complete_run(json.loads(json.dumps(params)))
    np.testing.assert_allclose(ds["omega"].values, sol.omega, atol=1e-12)
    np.testing.assert_allclose(ds["mu"].values, sol.mu, atol=1e-12)
    assert np.nanmax(ds["decomposability_residual"].values) < 1e-10
    # the overlay integrates the same ODE from the same start (default tolerance): it must agree
    assert float(ds["ode_agreement"]) < 1e-3
    assert ds["emerged"].values.all() and bool(ds["loss_emerged"])
    assert np.all(ds["warmup_end"].values < ds["emergence_end"].values)
    # finite L = 64 changes the warm-up only by O(1/L): the infinite-L law is within 15%
    np.testing.assert_allclose(ds["warmup_end"].values, ds["warmup_law_time"].values, rtol=0.15)
    assert ds["predicted_winner"].values.tolist() == [0, 1]
    # the overlay is the trajectory itself here, so its winners are the observed ones
    assert (
        ds["ode_winner_at_emergence"].values.tolist() == ds["winner_at_emergence"].values.tolist()
    )
    assert ds["ode_winner"].values.tolist() == ds["winner"].values.tolist()
    assert np.isfinite(ds["n_eff_ratio"].values).all() and np.all(
        ds["n_eff_ratio"].values <= 1 + 1e-9
    )
    assert ds["relative_change_last_tenth"].item() >= 0
    # purity at the end is the maximal share at the last record
    np.testing.assert_allclose(ds["purity"].values, ds["share"].isel(time=-1).max("head").values)
    assert bool(ds["clean"]) == bool(ds["clean_over_time"].isel(time=-1))


@pytest.mark.parametrize(
    "model,init", [("full", "decomposable"), ("linear", "decomposable"), ("reduced", "gaussian")]
)
def test_analyse_run_of_other_models_and_inits_says_what_it_did(model, init):
    from multihead_icl.training import train

    params = dict(
        tasks=2,
        task_dim=2,
        noise_std=0.3,
        signal=1.0,
        context_length=16,
        heads=2,
        model=model,
        init=init,
        init_scale=0.05,
        init_lead=0.0,
        optimizer="gd",
        lr=0.5,
        batch_size=32,
        steps=12,
        record_points=6,
        seed=0,
        eval_prompts=16,
        eval_seed=1,
        target="linear",
        rotate=False,
    )
    eval_set = sample_eval_set(TaskSpec.from_params(params), 16, 1)
    ds = analyse_run(train(params, eval_set).dataset, eval_set, SpectralSettings.from_config())
    assert (
        np.isfinite(ds["omega_ode"].values).all() and np.isfinite(ds["signal_gd_map"].values).all()
    )
    np.testing.assert_allclose(ds["omega_ode"].isel(time=0).values, ds["omega"].isel(time=0).values)
    if model == "linear":
        assert np.isnan(ds["n_eff_ratio"].values).all() and "not defined" in ds.attrs["n_eff_note"]
        assert "linear attention" in ds.attrs["ode_model"]
    else:
        assert np.isfinite(ds["n_eff_ratio"].values).all()
    if model == "full":
        assert "reduced view" in ds.attrs["n_eff_note"] and "model full" in ds.attrs["ode_model"]
    if init == "gaussian":
        assert "read-out omega(0)" in ds.attrs["ode_model"]
        assert (
            ds["decomposability_residual"].isel(time=0).min() > 0.1
        )  # a Gaussian W is far from decomposable


@pytest.mark.slow
def test_spectral_rule_end_to_end(tiny_workdir):
    """The tiny suite's spectral.nc and surrogate check, built by Snakemake (shared run of the tiny
    suite); omega is recomputed from train.nc by hand, the settings come from config/tiny.yaml."""
    settings = SpectralSettings.from_config(yaml.safe_load(TINY_CONFIG.read_text()).get("spectral"))
    for run in ("s0", "s1"):
        spectral = xr.open_dataset(tiny_workdir / f"results/runs/tiny/{run}/spectral.nc")
        train = xr.open_dataset(tiny_workdir / f"results/runs/tiny/{run}/train.nc")
        for name in CONTRACT:
            assert name in spectral, name
        mask = train["block_mask"].values
        phi = train["basis_x"].values
        w = np.einsum("ab,thbc,cd->thad", phi.T, train["W"].values, phi)
        by_hand = np.stack(
            [
                np.trace(w[..., mask[i] > 0, :][..., mask[i] > 0], axis1=-2, axis2=-1)
                / mask[i].sum()
                for i in range(mask.shape[0])
            ],
            -1,
        )
        np.testing.assert_allclose(spectral["omega"].values, by_hand, atol=1e-10)
        assert np.isfinite(spectral["omega_ode"].isel(time=0)).all()
        assert json.loads(spectral.attrs["spectral_settings"]) == settings.as_dict()
    check = xr.open_dataset(tiny_workdir / "results/theory/surrogate_check.nc")
    assert bool(check["agrees"].sel(omega=0.15).all()) and not bool(
        check["agrees"].sel(omega=0.6).any()
    )


def test_clean_window_finds_onset_and_drift_after_the_peak():
    from multihead_icl.spectral import _clean_window

    times = np.arange(8.0)
    purity = np.array(
        [
            [0.5, 0.5],
            [0.8, 0.6],
            [0.95, 0.7],
            [0.99, 0.8],
            [0.97, 0.85],
            [0.85, 0.8],
            [0.7, 0.7],
            [0.92, 0.6],
        ]
    )
    onset, drift = _clean_window(times, purity, 0.9)
    assert onset[0] == 2.0 and drift[0] == 5.0  # peak at t = 3, first below 0.9 after it at t = 5
    assert np.isnan(onset[1]) and np.isnan(drift[1])  # never clean
    onset, drift = _clean_window(times[:5], purity[:5], 0.9)
    assert onset[0] == 2.0 and np.isnan(drift[0])  # still clean at the end
