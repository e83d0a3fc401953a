"""The exact spectral flow against independent references: autograd and finite differences for its
gradient, the linear-attention closed form and the infinite-L limit for its risk, the warm-up law
for its early phase, a second Monte-Carlo sample for its error, and synthetic trajectories for the
end-state classifier."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from multihead_icl.data import TaskSpec
from multihead_icl.flow import (
    DRIFTING,
    FINITE_LIMIT,
    NOT_RESOLVED,
    ExactRisk,
    classify_end,
    flow_times,
    gradient_descent,
    integrate_flow,
)
from multihead_icl.theory import (
    SpectralProblem,
    finite_length_risk,
    infinite_length_risk,
    warmup_law_time,
)


def spec(dims=(2, 3), signal=(1.0, 0.5), noise=0.3, length=20) -> TaskSpec:
    return TaskSpec(tuple(dims), noise, tuple(signal), length)


@pytest.mark.parametrize("normalise", ["softmax", "linear"])
def test_hand_gradient_equals_autograd_and_finite_differences(normalise):
    risk = ExactRisk(spec(), normalise, prompts=300, seed=3)
    rng = np.random.default_rng(0)
    omega, mu = 0.4 * rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    value, grad_omega, grad_mu = risk.gradient(omega, mu)
    w = torch.tensor(omega, requires_grad=True)
    m = torch.tensor(mu, requires_grad=True)
    reference = risk.risk_tensor(w, m)
    auto_omega, auto_mu = torch.autograd.grad(reference, (w, m))
    assert value == pytest.approx(float(reference.detach()), rel=1e-12)
    np.testing.assert_allclose(grad_omega, auto_omega.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(grad_mu, auto_mu.numpy(), rtol=1e-9, atol=1e-12)
    eps = 1e-6
    for k in range(omega.size):
        step = np.zeros(omega.size)
        step[k] = eps
        step = step.reshape(omega.shape)
        numeric = (risk.risk(omega + step, mu) - risk.risk(omega - step, mu)) / (2 * eps)
        assert numeric == pytest.approx(grad_omega.flat[k], rel=1e-5, abs=1e-8)
        numeric = (risk.risk(omega, mu + step) - risk.risk(omega, mu - step)) / (2 * eps)
        assert numeric == pytest.approx(grad_mu.flat[k], rel=1e-5, abs=1e-8)


def test_linear_attention_risk_matches_its_closed_form():
    """Isserlis' theorem gives the exact risk of linear attention (theory.py); the Monte-Carlo risk
    on 20,000 prompts must agree within a few of its standard errors (spread of 5 samples)."""
    task = spec(dims=(2, 3), length=12)
    omega = np.array([[0.5, -0.2], [0.1, 0.4]])
    mu = np.array([[0.8, 0.3], [-0.4, 0.9]])
    closed = finite_length_risk(
        SpectralProblem((2, 3), (1.0, 0.5), 0.09, 12.0, model="linear"), omega, mu
    )
    values = [ExactRisk(task, "linear", prompts=4000, seed=k).risk(omega, mu) for k in range(5)]
    se = np.std(values, ddof=1) / math.sqrt(len(values))
    assert abs(np.mean(values) - closed) < 4 * se + 1e-4, (np.mean(values), closed, se)


def test_softmax_risk_tends_to_the_infinite_length_limit():
    """R_L - R_inf is O(1/L): it shrinks about 4x from L = 100 to L = 400 and is small at 400."""
    omega = np.array([[0.3, 0.05], [0.05, 0.25]])
    mu = np.array([[1.2, 0.1], [0.2, 1.4]])
    limit = infinite_length_risk(SpectralProblem((2, 2), (1.0, 1.0), 0.09, math.inf), omega, mu)
    gaps = [
        ExactRisk(
            spec(dims=(2, 2), signal=(1.0, 1.0), length=L), "softmax", prompts=2000, seed=1
        ).risk(omega, mu)
        - limit
        for L in (100, 400)
    ]
    assert 0 < gaps[1] < 0.02
    assert 2.5 < gaps[0] / gaps[1] < 6.0, gaps


def test_flow_warmup_end_follows_the_warmup_law():
    """From a small init at long L, p_i reaches 0.1 when the logistic law says (within 10%)."""
    task = spec(dims=(2, 2), signal=(1.0, 1.0), length=400)
    omega0 = np.array([[0.012, 0.006], [0.005, 0.011]])
    mu0 = np.array([[0.010, 0.005], [0.006, 0.012]])
    risk = ExactRisk(task, "softmax", prompts=512, seed=0)
    times = np.linspace(0, 20, 201)
    flow = integrate_flow(risk, omega0, mu0, times, rtol=1e-6, atol=1e-10)
    assert flow.success
    law = warmup_law_time(SpectralProblem((2, 2), (1.0, 1.0), 0.09, math.inf), omega0, mu0, 0.1)
    for i in range(2):
        measured = np.interp(0.1, flow.signal[:, i], times)
        assert measured == pytest.approx(law[i], rel=0.1), (i, measured, law[i])


def test_two_samples_agree_within_the_stated_error():
    """The error bar of the flow is the gap between two samples: a third sample stays within
    twice the gap of the first two, and the gap is small at 4096 prompts."""
    task = spec(dims=(2, 2), signal=(1.0, 1.0), length=40)
    omega0 = np.array([[0.03, 0.01], [0.01, 0.025]])
    mu0 = np.array([[0.02, 0.01], [0.01, 0.03]])
    times = flow_times(np.array([0.0, 0.5, 1.0]), 60.0, 40)
    signals = [
        integrate_flow(
            ExactRisk(task, "softmax", 4096, seed), omega0, mu0, times, 1e-4, 1e-7
        ).signal
        for seed in (0, 1, 2)
    ]
    stated = np.abs(signals[0] - signals[1]).max()
    assert stated < 0.05
    assert np.abs(signals[0] - signals[2]).max() < 2 * stated + 0.01


def test_gradient_descent_with_a_small_step_follows_the_flow():
    task = spec(dims=(2, 2), signal=(1.0, 1.0), length=30)
    risk = ExactRisk(task, "softmax", prompts=256, seed=0)
    omega0, mu0 = np.full((2, 2), 0.1) + np.eye(2) * 0.2, np.full((2, 2), 0.1) + np.eye(2) * 0.3
    gd = gradient_descent(risk, omega0, mu0, 0.01, np.arange(0, 501, 50))
    flow = integrate_flow(risk, omega0, mu0, gd.times, 1e-8, 1e-11)
    big = gradient_descent(risk, omega0, mu0, 0.5, np.arange(0, 11))
    assert np.abs(gd.signal - flow.signal).max() < 0.01
    assert (
        np.abs(big.signal[-1] - flow.signal[-1]).max()
        > np.abs(gd.signal[-1] - flow.signal[-1]).max()
    )


def synthetic(kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    times = np.geomspace(1, 1e4, 120)
    base = np.array([[1.0, -0.5], [-0.5, 1.0]])
    if kind == "limit":
        scale = 1 - np.exp(-times / 50)
        return times, 0.3 * base * scale[:, None, None], 2.0 * base * scale[:, None, None]
    if kind == "drift":
        return (
            times,
            0.3 * base * (times**-0.22)[:, None, None],
            2.0 * base * (times**0.24)[:, None, None],
        )
    if kind == "log":  # a drift that slows decade after decade (||mu|| ~ ln t): not a power law
        return (
            times,
            0.3 * base * np.ones_like(times)[:, None, None],
            2.0 * base * np.log(1 + times)[:, None, None],
        )
    # slow approach still under way: neither settled nor a steady power law
    scale = 1 - np.exp(-times / 4000)
    return times, 0.3 * base * scale[:, None, None], 2.0 * base * scale[:, None, None]


@pytest.mark.parametrize(
    "kind, expected",
    [("limit", FINITE_LIMIT), ("drift", DRIFTING), ("slow", NOT_RESOLVED), ("log", NOT_RESOLVED)],
)
def test_end_state_classifier_on_synthetic_trajectories(kind, expected):
    times, omega, mu = synthetic(kind)
    end = classify_end(times, omega, mu, limit_rtol=0.01, drift_exponent=0.05)
    assert end.end_class == expected, end
    if kind == "drift":
        assert end.omega_exponent == pytest.approx(-0.22, abs=1e-6)
        assert end.mu_exponent == pytest.approx(0.24, abs=1e-6)


def test_short_or_broken_trajectories_are_not_resolved():
    times, omega, mu = synthetic("drift")
    assert classify_end(times[:4], omega[:4], mu[:4], 0.01, 0.05).end_class == NOT_RESOLVED
    omega = omega.copy()
    omega[-1] = np.nan
    assert classify_end(times, omega, mu, 0.01, 0.05).end_class == NOT_RESOLVED


def test_the_cli_runs_spectral_and_flow_on_a_trained_run(tmp_path):
    """eval-set -> train -> spectral -> flow from the command line, as a notebook or another
    workflow engine would drive the package; flow.nc has its contract's variables."""
    import json

    import xarray as xr
    from conftest import SCHEMA, TINY_CONFIG

    from multihead_icl import cli
    from multihead_icl.config import load_suite_file

    params = load_suite_file(TINY_CONFIG, SCHEMA).runs["tiny/s0"]
    params_file = tmp_path / "run.json"
    params_file.write_text(json.dumps(params))
    data, train, spectral, flow = (
        tmp_path / name for name in ("data.nc", "train.nc", "spectral.nc", "flow.nc")
    )
    assert cli.main(["eval-set", str(params_file), str(data)]) == 0
    assert cli.main(["train", str(params_file), str(data), str(train)]) == 0
    assert (
        cli.main(["spectral", str(train), str(data), str(spectral), "--config", str(TINY_CONFIG)])
        == 0
    )
    assert cli.main(["flow", str(spectral), str(flow), "--config", str(TINY_CONFIG)]) == 0
    with xr.open_dataset(flow) as ds:
        assert {
            "omega",
            "mu",
            "signal",
            "signal_check",
            "mc_gap",
            "signal_gd",
            "train_gd_gap",
            "end_class",
            "omega_exponent",
        } <= set(ds.variables)
        assert ds["time"].values[-1] == pytest.approx(200.0)  # tiny.yaml: flow.horizon
        assert ds["end_class"].attrs["flag_meanings"] == "finite_limit drifting not_resolved"
        assert json.loads(ds.attrs["flow_settings"])["samples"] == 128
