"""Figures, their summaries and the verdict table, on hand-built runs whose numbers are known.

The synthetic runs follow the file contracts of docs/science.md §8: a train.nc with decomposable
W, U built from chosen omega(t), mu(t), the matching spectral.nc, a lengths.nc and an
optimality.nc. Each test checks a number the figure or the verdict must reproduce, so a wrong
read-out fails.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
import re
import types
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from conftest import ROOT, SCHEMA, rendering_defects

from multihead_icl import allocation, measurements, plots, report, stages, verdict_table, verdicts
from multihead_icl.measurements import RunData
from multihead_icl.report import FIGURE_KINDS, CaptionData
from multihead_icl.verdicts import FAILS, HOLDS, INCONCLUSIVE, PARTLY, UNMEASURED

TIMES = np.concatenate([[0.0], np.geomspace(0.5, 200.0, 24)])
RUN_DEFAULTS = {
    k: v.get("default")
    for k, v in yaml.safe_load(SCHEMA.read_text())["$defs"]["run_parameters"]["properties"].items()
}
RATE, T0 = 0.6, 12.0


def logistic(t, rate=RATE, t0=T0):
    return 1.0 / (1.0 + np.exp(-rate * (np.asarray(t) - t0)))


def make_run(
    run="exp/s0",
    heads=2,
    tasks=2,
    dim=2,
    winners=None,
    leak=0.2,
    leak_end=None,
    predicted=None,
    noise_std=0.3,
    init_scale=0.01,
    context_length=32,
    t0=T0,
    ode_error=0.02,
    n_eff=0.8,
    model="reduced",
    target="linear",
    optimizer="gd",
    frozen_end=True,
) -> RunData:
    """A run whose task i is served by head winners[i] with share 1/(1 + (H-1) leak^4) (leak_end:
    another leak at the last record, e.g. to mimic a drift after emergence)."""
    winners = list(range(tasks)) if winners is None else list(winners)
    predicted = winners if predicted is None else list(predicted)
    T = TIMES.size
    p = np.stack([logistic(TIMES, t0=t0 + 2 * i) for i in range(tasks)], axis=1)  # (T, I)
    amp = np.full((T, heads, tasks), leak)
    for i, h in enumerate(winners):
        amp[:, h, i] = 1.0
    if leak_end is not None:
        for i, h in enumerate(winners):
            others = [g for g in range(heads) if g != h]
            amp[-1, others, i] = leak_end
    scale = np.sqrt(p / (amp**2).sum(axis=1))[:, None, :]  # sum_h mu omega = p
    omega = 0.5 * amp * scale
    mu = 2.0 * amp * scale
    if not frozen_end:
        omega[-1] *= 1.5
    mask = np.zeros((tasks, tasks * dim))
    for i in range(tasks):
        mask[i, i * dim : (i + 1) * dim] = 1
    W = np.einsum("thi,ij,jk->thjk", omega, mask, np.eye(tasks * dim))
    U = np.einsum("thi,ij->thij", mu, np.eye(tasks))
    sigma2 = noise_std**2
    risk_task = sigma2 + (1 - p) ** 2 + 0.5 / context_length
    risk = risk_task.mean(axis=1)
    params = {
        **RUN_DEFAULTS,
        "tasks": tasks,
        "task_dim": dim,
        "heads": heads,
        "noise_std": noise_std,
        "signal": 1.0,
        "context_length": context_length,
        "init_scale": init_scale,
        "model": model,
        "target": target,
        # distinct runs of a real suite differ in some parameter (here the seed, from the run id)
        "optimizer": optimizer,
        "seed": zlib.crc32(run.encode()),
        "lr": 0.5,
        "init": "decomposable",
    }
    attrs = {"config": json.dumps(params), "status": "max_steps", "noise_floor": sigma2}
    train = xr.Dataset(
        {
            "W": (("time", "head", "x_row", "x_col"), W),
            "U": (("time", "head", "y_row", "y_col"), U),
            "train_risk": ("time", risk * (1 + 0.05 * np.cos(np.arange(T)))),
            "eval_risk": ("time", risk),
            "eval_risk_se": ("time", np.full(T, 0.002)),
            "eval_risk_task": (("time", "task"), risk_task),
            "grad_norm": ("time", 0.01 + np.abs(np.gradient(risk))),
            "basis_x": (("x_row", "x_col"), np.eye(tasks * dim)),
            "basis_y": (("y_row", "y_col"), np.eye(tasks)),
            "block_mask": (("task", "x_col"), mask),
        },
        coords={
            "time": TIMES,
            "step": ("time", (TIMES / 0.5).astype(int)),
            "head": np.arange(heads),
            "task": np.arange(tasks),
        },
        attrs=attrs,
    )
    share = (mu * omega) ** 2 / ((mu * omega) ** 2).sum(axis=1, keepdims=True)
    warm = np.array([t0 + 2 * i - math.log(9) / RATE for i in range(tasks)])
    emer = np.array([t0 + 2 * i + math.log(9) / RATE for i in range(tasks)])
    at_em = [int(np.argmin(np.abs(TIMES - e))) for e in emer]
    omega_ode = omega * (1 + ode_error)
    cleanest = int(np.argmax(share.max(axis=1).min(axis=1)))
    signal_ode = (mu * omega_ode).sum(axis=1)
    spectral = xr.Dataset(
        {
            "omega": (("time", "head", "task"), omega),
            "mu": (("time", "head", "task"), mu),
            "signal": (("time", "task"), p),
            "share": (("time", "head", "task"), share),
            "decomposability_residual": (("time", "head"), np.zeros((T, heads))),
            "winner": ("task", np.argmax(share[-1], axis=0)),
            "purity": ("task", share[-1].max(axis=0)),
            "winner_at_emergence": (
                "task",
                np.array([np.argmax(share[k, :, i]) for i, k in enumerate(at_em)]),
            ),
            "purity_at_emergence": (
                "task",
                np.array([share[k, :, i].max() for i, k in enumerate(at_em)]),
            ),
            "predicted_winner": ("task", np.array(predicted)),
            "warmup_end": ("task", warm),
            "emergence_end": ("task", emer),
            "warmup_law_time": ("task", warm * 1.05),
            "warmup_rate": ("task", np.full(tasks, 2.0 / 3.0)),
            "loss_warmup_end": ((), float(warm.min())),
            "loss_emergence_end": ((), float(emer.max())),
            "omega_ode": (("time", "head", "task"), omega_ode),
            "mu_ode": (("time", "head", "task"), mu),
            "signal_ode": (("time", "task"), signal_ode),
            "ode_signal_gap": ("task", np.abs(signal_ode - p).max(axis=0)),
            "ode_agreement": ((), float(np.abs(signal_ode - p).max())),
            "ode_agreement_emergence": (
                (),
                float(np.abs(signal_ode - p)[TIMES <= emer.max()].max()),
            ),
            "winner_at_cleanest": ("task", np.argmax(share[cleanest], axis=0)),
            "cleanest_purity": ((), float(share[cleanest].max(axis=0).min())),
            "n_eff_ratio": (("time", "head"), np.full((T, heads), n_eff)),
        },
        coords={"time": TIMES, "head": np.arange(heads), "task": np.arange(tasks)},
        attrs={"config": json.dumps(params), "ode_model": "a test ODE", "ode_status": "ok"},
    )
    lengths_L = np.array([context_length // 2, context_length, 2 * context_length])
    excess_L = 0.5 / lengths_L * context_length / context_length + 0.01
    lengths = xr.Dataset(
        {
            "risk": ("length", excess_L + sigma2),
            "risk_se": ("length", np.full(3, 0.001)),
            "excess_risk": ("length", excess_L),
        },
        coords={"length": lengths_L},
        attrs={"train_context_length": context_length, "config": json.dumps(params)},
    )
    return RunData(run, train, spectral, params, lengths)


def with_flow(
    run: RunData,
    end_class=1,
    end_class_check=None,
    train_gd_gap=0.05,
    mc_gap=0.02,
    n_eff=None,
    horizon=1e4,
    exponents=(-0.22, 0.24),
) -> RunData:
    """``run`` with a flow.nc after flow.py: the same logistic rise as the run, then (end_class) a
    finite limit (0), a power-law drift (1) or an unresolved approach (2)."""
    T = np.concatenate([[0.0], np.geomspace(0.5, horizon, 40)])
    s = run.spectral
    heads, tasks = s.sizes["head"], s.sizes["task"]
    base_omega, base_mu = s["omega"].values[-1], s["mu"].values[-1]
    rise = np.stack([logistic(T, t0=T0 + 2 * i) for i in range(tasks)], axis=1)[:, None, :]
    late = np.clip(T / 200.0, 1.0, None)[:, None, None]
    w_exp, m_exp = (
        exponents if end_class == 1 else ((0.0, 0.0) if end_class == 0 else (0.05, -0.02))
    )
    omega = (
        base_omega[None] * np.sqrt(rise) * late**w_exp * (1 + 1e-6 * (run.params["seed"] % 997))
    )  # each seed its own init
    mu = base_mu[None] * np.sqrt(rise) * late**m_exp
    signal = (omega * mu).sum(axis=1)
    share = (omega * mu) ** 2 / ((omega * mu) ** 2).sum(axis=1, keepdims=True)
    neff = np.full(
        (T.size, heads), run.spectral["n_eff_ratio"].values[-1, 0] if n_eff is None else n_eff
    )
    gd_t = np.arange(0, 41) * 0.5
    warm = np.array([T0 + 2 * i - math.log(9) / RATE for i in range(tasks)])
    rt = s["time"].values
    flags = {
        "flag_values": np.array([0, 1, 2], dtype=np.int8),
        "flag_meanings": "finite_limit drifting not_resolved",
    }
    check = end_class if end_class_check is None else end_class_check
    flow = xr.Dataset(
        {
            "omega": (("time", "head", "task"), omega),
            "mu": (("time", "head", "task"), mu),
            "signal": (("time", "task"), signal),
            "signal_check": (("time", "task"), signal + 0.5 * mc_gap),
            "excess": ("time", 0.05 + (1 - signal.mean(axis=1)) ** 2),
            "grad_norm": ("time", 1e-2 / (1 + T)),
            "n_eff_ratio": (("time", "head"), neff),
            "purity": (("time", "task"), share.max(axis=1)),
            "winner": (("time", "task"), share.argmax(axis=1)),
            "mc_gap": ((), mc_gap),
            "mc_gap_long": ((), mc_gap),
            "signal_gd": (
                ("gd_time", "task"),
                np.stack([logistic(gd_t, t0=T0 + 2 * i) for i in range(tasks)], axis=1),
            ),
            "omega_gd": (("gd_time", "head", "task"), np.zeros((gd_t.size, heads, tasks))),
            "mu_gd": (("gd_time", "head", "task"), np.zeros((gd_t.size, heads, tasks))),
            "flow_gd_gap": ((), 0.08),
            "train_gd_gap": ((), train_gd_gap),
            "train_flow_gap": ((), train_gd_gap + 0.05),
            "train_flow_gap_run": ((), train_gd_gap + 0.1),
            "trained_grad_norm": ("run_time", np.full(rt.size, 0.02)),
            "trained_excess": ("run_time", np.full(rt.size, 0.06)),
            "warmup_end": ("task", warm),
            "emergence_end": ("task", warm + 2 * math.log(9) / RATE),
            "clean_onset": ((), 30.0),
            "clean_end": ((), 300.0),
            "end_class": ((), np.int8(end_class), flags),
            "end_class_check": ((), np.int8(check), flags),
            "relative_change_last_decade": ((), {0: 1e-4, 1: 0.4, 2: 0.1}[end_class]),
            "omega_exponent": ((), w_exp),
            "mu_exponent": ((), m_exp),
            "omega_exponent_check": ((), w_exp),
            "mu_exponent_check": ((), m_exp),
        },
        coords={
            "time": T,
            "gd_time": gd_t,
            "run_time": rt,
            "head": np.arange(heads),
            "task": np.arange(tasks),
        },
        attrs={
            "config": json.dumps(run.params),
            "run_end_time": float(rt[-1]),
            "gd_status": "test",
        },
    )
    return RunData(run.run, run.train, run.spectral, run.params, run.lengths, flow)


def make_optimality(
    x_name="context_length",
    x=(16, 32, 64),
    ratio=(1.2, 1.3, 1.4),
    half_width=0.1,
    single_over_multi=(1.0, 1.8, 2.5),
):
    """An optimality.nc after docs/science.md §8: one row per configuration, excess risks, SEs,
    ratios."""
    x = np.asarray(x)
    best = 0.5 / x
    trained = best * np.asarray(ratio)
    single = best * np.asarray(single_over_multi)
    data = {
        "excess_trained": ("config", trained),
        "excess_trained_se": ("config", 0.01 * trained),
        "excess_best_in_class": ("config", best),
        "excess_best_in_class_se": ("config", 0.01 * best),
        "excess_single_head": ("config", single),
        "excess_single_head_se": ("config", 0.01 * single),
        "excess_bayes": ("config", 0.1 / x),
        "excess_bayes_se": ("config", 0.001 / x),
        "optimality_ratio": ("config", np.asarray(ratio, dtype=float)),
        "optimality_ratio_low": ("config", np.asarray(ratio) - half_width),
        "optimality_ratio_high": ("config", np.asarray(ratio) + half_width),
        "separation_ratio": ("config", np.asarray(single_over_multi, dtype=float)),
        "separation_ratio_low": ("config", np.asarray(single_over_multi) - half_width),
        "separation_ratio_high": ("config", np.asarray(single_over_multi) + half_width),
        x_name: ("config", x),
    }
    return xr.Dataset(data, coords={"config": np.arange(x.size)})


def make_surrogate_check(tolerance=0.1):
    """A surrogate_check.nc after spectral.py: relative gap of surrogate and Monte Carlo on a
    grid."""
    omega = np.array([0.15, 0.3, 0.6])
    gap = np.array([[0.02, 0.06, 0.4], [0.03, 0.12, 0.9]])  # (pattern, omega)
    sat = np.exp(2 * omega**2)[None, :] / 20 * np.array([[1.0], [2.0]])
    dims = ("pattern", "omega")
    return xr.Dataset(
        {
            "relative_gap": (dims, gap),
            "saturation_index": (dims, sat),
            "agrees": (dims, np.abs(gap) <= tolerance),
            "conclusive": (dims, np.ones_like(gap, dtype=bool)),
            "mc_excess": (dims, np.ones_like(gap)),
        },
        coords={"pattern": ["allocated", "shared"], "omega": omega},
        attrs={"config": json.dumps({"tolerance": tolerance}), "summary": "agrees at small omega"},
    )


@pytest.fixture(scope="module")
def runs():
    return [with_flow(make_run(f"exp/s{k}", t0=T0 + k)) for k in range(3)]


# ---------------------------------------------------------------------------------------------
# plan, thresholds, caption data


def test_every_role_a_figure_kind_reads_is_a_key_of_the_figures_section():
    schema = yaml.safe_load(SCHEMA.read_text())
    settings = schema["properties"]["figures"]["properties"]
    named = {kind.setting for kind in FIGURE_KINDS.values() if kind.setting}
    assert named <= set(settings), named - set(settings)


def test_plan_draws_only_figures_whose_experiment_exists():
    settings = report.report_settings(
        {"allocation": "alloc", "winner": "alloc", "length": "missing"}
    )
    experiments = {"alloc": ["alloc/s0", "alloc/s1"], "other": ["other/base"]}
    plan = report.report_plan(settings, experiments)
    kinds = {(f.kind, f.target) for f in plan}
    assert ("winner", "alloc") in kinds and ("convergence", "suite") in kinds
    assert {k for k, _ in kinds} == {
        "convergence",
        "surrogate",
        "risk",
        "allocation",
        "heatmaps",
        "trajectories",
        "winner",
        "flow",
        "limit",
    }
    without_flows = {f.kind for f in report.report_plan(settings, experiments, flows=[])}
    assert "flow" not in without_flows and "limit" not in without_flows
    assert {t for k, t in kinds if k == "risk"} == {
        "alloc/s0"
    }  # runs: null -> first run of `allocation`
    assert next(f for f in plan if f.kind == "winner").runs == ("alloc/s0", "alloc/s1")
    both = report.report_plan({**settings, "runs": ["other", "alloc/s1"]}, experiments)
    assert {f.target for f in both if f.kind == "risk"} == {"other/base", "alloc/s1"}
    opt = report.report_plan(
        {**settings, "optimality": ["alloc", "other"]}, experiments, optimality=["other"]
    )
    assert [f.target for f in opt if f.kind == "optimality"] == [
        "other"
    ]  # only experiments with an optimality file
    with pytest.raises(ValueError, match="neither a run id nor an experiment"):
        report.report_plan({**settings, "runs": ["nope"]}, experiments)
    with pytest.raises(ValueError, match="unknown verdict thresholds"):
        report.thresholds({"purity_typo": 0.9})


def test_caption_data_reads_lazily_and_pickles_as_its_path(tmp_path):
    path = tmp_path / "s.json"
    data = CaptionData(path)  # the file does not exist yet: nothing is read
    path.write_text(json.dumps({"final_risk": 0.25, "nested": {"a": 1}}))
    assert data.final_risk == 0.25 and data["nested"]["a"] == 1 and "nested" in data
    with pytest.raises(AttributeError):
        _ = data.missing
    assert pickle.loads(pickle.dumps(data)) == str(path)


# ---------------------------------------------------------------------------------------------
# measurements


def test_convergence_measurement_matches_a_hand_computation(runs):
    for r in runs:
        times = r.train.time.values
        earlier = np.flatnonzero(times <= 0.9 * times[-1])[-1]  # the record at or before 0.9 T
        final = np.concatenate([r.train.W.values[-1].ravel(), r.train.U.values[-1].ravel()])
        before = np.concatenate(
            [r.train.W.values[earlier].ravel(), r.train.U.values[earlier].ravel()]
        )
        expected = np.linalg.norm(final - before) / np.linalg.norm(final)
        assert measurements.relative_change_last_tenth(r.train) == pytest.approx(expected)
    moving = make_run(frozen_end=False)
    assert measurements.relative_change_last_tenth(moving.train) > 0.1
    assert measurements.relative_change_last_tenth(runs[0].train) < 1e-3


def test_allocation_and_phases_are_read_from_the_spectral_file():
    r = make_run(leak=0.2, leak_end=0.8)
    alloc = measurements.measure_allocation(r.spectral, 0.9)
    assert alloc["min_purity_emergence"] == pytest.approx(1 / (1 + 0.2**4), rel=1e-6)
    assert alloc["min_purity_end"] == pytest.approx(1 / (1 + 0.8**4), rel=1e-6)
    assert alloc["clean_emergence"] and not alloc["clean_end"]
    phases = measurements.measure_phases(r.spectral, speedup=2.0)
    w, e = T0 - math.log(9) / RATE, T0 + math.log(9) / RATE
    speedup = (0.8 / (e - w)) / (0.1 / w)
    assert phases["tasks"][0]["speedup"] == pytest.approx(speedup)
    assert phases["tasks"][0]["sharp"] == (speedup >= 2.0)


def test_drift_time_is_the_first_record_where_a_clean_allocation_loses_purity():
    clean = make_run(leak=0.2)
    assert measurements.drift_time(clean.spectral, 0.9) is None
    drifted = make_run(leak=0.2, leak_end=0.8)
    assert measurements.drift_time(drifted.spectral, 0.9) == pytest.approx(TIMES[-1])
    sweep = [
        make_run(f"L/L{L}", context_length=L, leak_end=0.8 if L < 64 else None)
        for L in (16, 32, 64)
    ]
    pur = measurements.measure_purity(sweep, 0.9)
    assert pur["x_name"] == "context_length" and [r["x"] for r in pur["runs"]] == [16, 32, 64]
    assert [r["drift_time"] is None for r in pur["runs"]] == [False, False, True]
    assert (pur["clean_emergence"], pur["clean_end"]) == (3, 1)


def test_warmup_law_fit_recovers_a_known_slope():
    slope = 2.0 / (2.0 / 3.0)  # the law's slope for warmup_rate = 2/3
    runs = []
    for k, s in enumerate([1e-2, 1e-3, 1e-4]):
        r = make_run(f"init/s{k}", init_scale=s)
        r.spectral["warmup_end"] = ("task", np.array([5.0, 6.0]) + slope * math.log(1 / s))
        runs.append(r)
    law = measurements.measure_warmup_law(runs, 0.3)
    assert law["fit"]["slope"] == pytest.approx(slope) and law["law_slope"] == pytest.approx(slope)
    assert law["agrees"] and law["fit"]["r2"] > 0.9
    for r in runs:
        r.spectral["warmup_end"] = r.spectral["warmup_end"] * 0 + 10.0  # flat: no dependence on s
    assert not measurements.measure_warmup_law(runs, 0.3)["agrees"]


# ---------------------------------------------------------------------------------------------
# verdicts


def verdict_of(rows, claim):
    return next(r for r in rows if r.claim == claim)


def test_verdicts_decide_by_their_thresholds():
    finite = [with_flow(make_run(f"alloc/s{k}"), end_class=0) for k in range(3)]
    settings = {"allocation": "alloc", "winner": "alloc", "warmup": None}
    rows = verdicts.build_verdicts(finite, {}, settings, None)
    assert [r.claim for r in rows] == [f"C{k}" for k in range(1, 10)] + ["Q1"]
    assert (
        verdict_of(rows, "C1").verdict == HOLDS
        and verdict_of(rows, "C1").judged_on == verdicts.FLOW
    )
    assert verdict_of(rows, "C3").verdict == HOLDS
    assert verdict_of(rows, "C4").verdict == HOLDS
    assert verdict_of(rows, "C7").verdict == HOLDS  # gaps 0.05 within the fixed 0.1 (no streams)
    assert verdict_of(rows, "C2").verdict == PARTLY  # phases sharp; the law is not measured
    assert "exact flows emerge sharply" in verdict_of(rows, "C2").measurement
    assert "warm-up law not measured" in verdict_of(rows, "C2").measurement
    for claim in ("C5", "C6", "C8", "C9", "Q1"):
        assert verdict_of(rows, claim).verdict == UNMEASURED

    drifting = [with_flow(make_run(f"alloc/s{k}"), end_class=1) for k in range(3)]
    c1 = verdict_of(verdicts.build_verdicts(drifting, {}, settings, None), "C1")
    assert (
        c1.verdict == FAILS and "no finite limit" in c1.measurement and "t^-0.22" in c1.measurement
    )
    mixed = finite[:2] + drifting[2:]  # 2/3 decisive flows finite: at least partly_fraction
    assert verdict_of(verdicts.build_verdicts(mixed, {}, settings, None), "C1").verdict == PARTLY
    mostly_drifting = finite[:1] + drifting[1:]  # 1/3: below partly_fraction
    assert (
        verdict_of(verdicts.build_verdicts(mostly_drifting, {}, settings, None), "C1").verdict
        == FAILS
    )
    unresolved = [with_flow(make_run(f"alloc/s{k}"), end_class=2) for k in range(3)]
    assert (
        verdict_of(verdicts.build_verdicts(unresolved, {}, settings, None), "C1").verdict
        == INCONCLUSIVE
    )
    disagree = [
        with_flow(make_run(f"alloc/s{k}"), end_class=1, end_class_check=2) for k in range(3)
    ]
    assert (
        verdict_of(verdicts.build_verdicts(disagree, {}, settings, None), "C1").verdict
        == INCONCLUSIVE
    )
    no_flow = [make_run(f"alloc/s{k}") for k in range(3)]
    assert (
        verdict_of(verdicts.build_verdicts(no_flow, {}, settings, None), "C1").verdict == UNMEASURED
    )

    # C7: against the seed-to-seed spread of training when the suite measures it, else inconclusive
    # above the fixed threshold
    far = [with_flow(make_run(f"alloc/s{k}"), end_class=0, train_gd_gap=0.3) for k in range(3)]
    assert (
        verdict_of(verdicts.build_verdicts(far, {}, settings, None), "C7").verdict == INCONCLUSIVE
    )
    streams = [make_run(f"streams/stream{k}", t0=T0 + 0.2 * k) for k in range(3)]
    for r in streams:
        r.params["seed"] = far[0].params["seed"]
    with_streams = {**settings, "streams": "streams"}
    spread = measurements.measure_stream_spread(streams)["median_gap"]
    assert 0 < spread < 0.3
    c7 = verdict_of(verdicts.build_verdicts(far + streams, {}, with_streams, None), "C7")
    assert c7.verdict == FAILS and "seed-to-seed spread" in c7.noise_floor
    spread_max = verdicts.measure_stream_spread(streams)["max_gap"]
    between = [
        with_flow(
            make_run(f"alloc/s{k}"), end_class=0, mc_gap=0.0, train_gd_gap=(spread + spread_max) / 2
        )
        for k in range(3)
    ]
    assert spread_max > spread  # streams offset by 0.2 each: pairs differ by 0.2 and 0.4 in t0
    # above the typical spread, not beyond the largest: batch noise cannot be ruled out
    assert (
        verdict_of(verdicts.build_verdicts(between + streams, {}, with_streams, None), "C7").verdict
        == INCONCLUSIVE
    )
    near = [
        with_flow(make_run(f"alloc/s{k}"), end_class=0, train_gd_gap=spread / 2) for k in range(3)
    ]
    assert (
        verdict_of(verdicts.build_verdicts(near + streams, {}, with_streams, None), "C7").verdict
        == HOLDS
    )

    drifted = [
        make_run(f"alloc/s{k}", leak_end=0.8, predicted=[1, 0], frozen_end=False, ode_error=0.5)
        for k in range(3)
    ]
    rows = verdicts.build_verdicts(drifted, {}, settings, None)
    assert verdict_of(rows, "C3").verdict == PARTLY  # clean at the end of emergence only
    assert verdict_of(rows, "C4").verdict == FAILS  # 0/6 right, chance is 1/2

    stricter = verdicts.build_verdicts(finite, {}, settings, {"purity": 0.999})
    assert verdict_of(stricter, "C3").verdict == FAILS
    assert "0.999" in verdict_of(stricter, "C3").threshold


def test_flow_verdicts_of_regimes_and_optimality():
    """C8 on the flow's n_eff / L and C5 on the flow's end state: each verdict state from small
    inputs."""
    levels = [0.1, 0.3, 0.6, 1.0]
    rising = [
        with_flow(make_run(f"noise/s{k}", noise_std=s, n_eff=0.9), n_eff=0.5 + 0.3 * s)
        for k, s in enumerate(levels)
    ]
    falling = [
        with_flow(make_run(f"noise/s{k}", noise_std=s, n_eff=0.2 + s), n_eff=0.9 - 0.3 * s)
        for k, s in enumerate(levels)
    ]
    settings = {"regimes": "noise"}
    c8 = verdict_of(verdicts.build_verdicts(rising, {}, settings, None), "C8")
    assert (
        c8.verdict == HOLDS and c8.judged_on == verdicts.FLOW and "trained runs" in c8.measurement
    )
    assert verdict_of(verdicts.build_verdicts(falling, {}, settings, None), "C8").verdict == FAILS

    def with_flow_ratio(opt, ratio, half_width=0.1):
        opt = opt.copy()
        ratio = np.asarray(ratio, dtype=float)
        for suffix, value in (
            ("", ratio),
            ("_low", ratio - half_width),
            ("_high", ratio + half_width),
        ):
            opt[f"optimality_ratio_flow{suffix}"] = ("config", value)
        return opt

    settings = {"optimality": ["L"]}
    runs = rising[:1]
    holds = verdict_of(
        verdicts.build_verdicts(
            runs, {"L": with_flow_ratio(make_optimality(), (1.1, 1.2, 1.5))}, settings, None
        ),
        "C5",
    )
    assert (
        holds.verdict == HOLDS
        and holds.judged_on == verdicts.FLOW
        and "3/3 configurations" in holds.measurement
    )
    fails = verdict_of(
        verdicts.build_verdicts(
            runs, {"L": with_flow_ratio(make_optimality(), (2.5, 3.0, 3.5))}, settings, None
        ),
        "C5",
    )
    assert fails.verdict == FAILS
    straddles = verdict_of(
        verdicts.build_verdicts(
            runs, {"L": with_flow_ratio(make_optimality(), (1.95, 2.0, 2.05))}, settings, None
        ),
        "C5",
    )
    assert straddles.verdict == INCONCLUSIVE


def test_regime_length_and_optimality_verdicts():
    noise = [
        make_run(f"noise/s{k}", noise_std=s, n_eff=0.2 + s)
        for k, s in enumerate([0.1, 0.3, 0.6, 1.0])
    ]
    reverse = [
        make_run(f"noise/s{k}", noise_std=s, n_eff=1.0 - 0.5 * s)
        for k, s in enumerate([0.1, 0.3, 0.6, 1.0])
    ]
    opt = {
        "L": make_optimality(),
        "tasks": make_optimality("tasks", (1, 2, 3), single_over_multi=(1.0, 1.8, 2.5)),
    }
    settings = {"regimes": "noise", "length": "noise", "optimality": ["L"], "separation": "tasks"}
    rows = verdicts.build_verdicts(noise, opt, settings, None)
    assert verdict_of(rows, "C8").verdict == HOLDS  # no flows: judged on the trained runs
    assert (
        verdict_of(rows, "C8").judged_on == verdicts.TRAINED
        and "ρ = 1" in verdict_of(rows, "C8").measurement
    )
    assert (
        verdict_of(rows, "C5").verdict == HOLDS
        and "3/3 configurations" in verdict_of(rows, "C5").measurement
    )
    assert (
        verdict_of(rows, "C6").verdict == HOLDS
        and "2/2 configurations" in verdict_of(rows, "C6").measurement
    )
    assert verdict_of(rows, "C6").judged_on == verdicts.SEARCH  # class optima, not trained runs
    assert (
        verdict_of(rows, "C9").verdict == PARTLY
    )  # length passes, linear and nonlinear not measured
    assert verdict_of(verdicts.build_verdicts(reverse, {}, settings, None), "C8").verdict == FAILS
    far = {
        "L": make_optimality(ratio=(1.5, 2.5, 3.5)),
        "tasks": make_optimality("tasks", (1, 2, 3), single_over_multi=(1.0, 0.9, 1.05)),
    }
    rows = verdicts.build_verdicts(noise, far, settings, None)
    assert verdict_of(rows, "C5").verdict == FAILS  # 1/3 within the factor 2
    assert verdict_of(rows, "C6").verdict == FAILS


def test_verdict_table_html_lists_every_claim_with_its_threshold(runs):
    rows = verdicts.build_verdicts(
        runs,
        {},
        {"allocation": "exp", "winner": "exp"},
        None,
        [{"kind": "winner", "path": "results/figures/exp/winner.svg"}],
    )
    page = verdict_table.verdicts_html(rows)
    for row in rows:
        assert f"<td class='c'>{row.claim}</td>" in page
    assert "results/figures/exp/winner.svg" in page and "≥ 0.9 = holds" in page
    # read on its own, next to the figures, the page opens each one
    linked = verdict_table.verdicts_html(rows, folder="results/figures")
    assert "<a href='exp/winner.svg'>results/figures/exp/winner.svg</a>" in linked
    data = verdict_table.verdicts_json(rows)
    assert sum(data["counts"].values()) == 10 and data["by_claim"]["C4"] == HOLDS


# ---------------------------------------------------------------------------------------------
# figures


def make_regime_map() -> xr.Dataset:
    """A gathered map of 8 points: H in {1, 2} x sigma in {0, 0.3}, two inits a cell; the single
    head settles superposed, two heads drift, one point is not resolved."""
    from multihead_icl.regime_map import DRIFT, REGIMES, SUPERPOSED, UNRESOLVED

    heads = np.array([1, 1, 1, 1, 2, 2, 2, 2])
    noise = np.array([0.0, 0.0, 0.3, 0.3] * 2)
    lead = np.array([0.5, 0.0] * 4)
    regime = np.where(heads == 1, SUPERPOSED, DRIFT).astype(np.int8)
    regime[-1] = UNRESOLVED
    flags = {
        "flag_values": np.array(list(REGIMES), dtype=np.int8),
        "flag_meanings": " ".join(REGIMES.values()),
    }
    ratio = np.linspace(1.0, 1.05, 8)
    point = [f"H{h}-noise{n:g}-init_lead{l:g}" for h, n, l in zip(heads, noise, lead)]
    return xr.Dataset(
        {
            "regime": (("point",), regime, flags),
            "omega_exponent": (("point",), np.where(heads == 2, -0.2, 0.0)),
            "mu_exponent": (("point",), np.where(heads == 2, 0.2, 0.0)),
            "purity_end": (("point",), np.full(8, 0.6)),
            "clean_onset": (("point",), np.full(8, np.nan)),
            "clean_lost": (("point",), np.full(8, np.nan)),
            "emergence_end": (("point",), np.full(8, 20.0)),
            "excess_end": (("point",), np.full(8, 0.1)),
            "excess_ratio": (("point",), ratio),
            "excess_ratio_low": (("point",), ratio - 0.01),
            "excess_ratio_high": (("point",), ratio + 0.01),
            "mc_gap": (("point",), np.full(8, 0.02)),
        },
        coords={
            "point": ("point", point),
            "cell": ("point", [p.rsplit("-", 1)[0] for p in point]),
            "heads": ("point", heads),
            "noise_std": ("point", noise),
            "init_lead": ("point", lead),
        },
        attrs={
            "axes": json.dumps(["heads", "noise_std"]),
            "init_keys": json.dumps(["init_lead"]),
            "horizon": 1e4,
        },
    )


def make_ablation(heads=2, tasks=2, layers=1, snapshots=4):
    """An ablation.nc: head h serves task h (increase 0.3 against 0.01), at the end and from the
    second snapshot on, with the baselines the figure draws."""
    increase = np.full((layers, heads, tasks), 0.01)
    for i in range(tasks):
        increase[:, i % heads, i] = 0.3
    share = allocation.ablation_share(increase)
    winner, purity = allocation.winner_and_purity(share)
    over = np.repeat(increase[None], snapshots, axis=0)
    over[0] = 0.1  # at init every head matters alike
    share_t = allocation.ablation_share(over)
    winner_t, purity_t = allocation.winner_and_purity(share_t)
    dims, at = ("layer", "head", "task"), ("snapshot", "layer", "head", "task")
    return xr.Dataset(
        {
            "risk": ("task", np.full(tasks, 0.2)),
            "risk_se": ("task", np.full(tasks, 0.01)),
            "risk_increase": (dims, increase),
            "risk_increase_se": (dims, np.full_like(increase, 0.005)),
            "share": (dims, share),
            "winner": (("layer", "task"), winner),
            "purity": (("layer", "task"), purity),
            "risk_over_time": (
                ("snapshot", "task"),
                np.linspace(1.0, 0.2, snapshots)[:, None] + 0 * np.zeros(tasks),
            ),
            "risk_increase_over_time": (at, over),
            "risk_increase_se_over_time": (at, np.full_like(over, 0.005)),
            "share_over_time": (at, share_t),
            "winner_over_time": (("snapshot", "layer", "task"), winner_t),
            "purity_over_time": (("snapshot", "layer", "task"), purity_t),
            "baseline_risk": (
                ("baseline", "task"),
                np.array([[0.1] * tasks, [0.12] * tasks, [1.0] * tasks]),
            ),
            "baseline_gap_se": ("baseline", np.full(3, 0.004)),
        },
        coords={
            "baseline": ["ridge_tuned", "ols_block", "zero"],
            "snapshot_time": ("snapshot", np.geomspace(1.0, 200.0, snapshots)),
            "snapshot_step": ("snapshot", np.geomspace(2, 400, snapshots)),
        },
    )


def draw_kind(kind, runs):
    target = runs[0].run if FIGURE_KINDS[kind].scope == "run" else "exp"
    if FIGURE_KINDS[kind].needs == ("train", "ablation"):
        runs = [dataclasses.replace(r, ablation=make_ablation()) for r in runs]
    opt = None
    if kind in ("optimality", "baselines"):
        opt = make_optimality()
    elif kind == "separation":
        opt = make_optimality("tasks", (1, 2, 3))
    return plots.draw(
        kind,
        runs,
        opt,
        target,
        {},
        make_surrogate_check() if kind == "surrogate" else None,
        make_regime_map() if kind == "regime_map" else None,
    )


@pytest.mark.parametrize("kind", list(FIGURE_KINDS))
def test_every_kind_draws_data_in_every_axes_and_a_json_summary(kind, runs, tmp_path):
    fig, summary = draw_kind(kind, runs)
    assert plots.empty_axes(fig) == []
    path = tmp_path / f"{kind}.svg"
    plots.save_figure(fig, path)
    plots.write_summary(summary, tmp_path / f"{kind}.json")
    json.loads((tmp_path / f"{kind}.json").read_text())
    assert svg_axes_without_data(path) == []


def svg_axes_without_data(path: Path) -> list[str]:
    """Axes groups of a matplotlib SVG that hold no element marked as data (plots.mark)."""
    root = ET.parse(path).getroot()
    missing = []
    for g in root.iter("{http://www.w3.org/2000/svg}g"):
        if re.fullmatch(r"axes_\d+", g.get("id", "")):
            if not any((e.get("id") or "").startswith(plots.DATA_GID) for e in g.iter()):
                missing.append(g.get("id"))
    return missing


def test_empty_axes_are_caught(tmp_path):
    plots.setup_style()
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2)
    plots.mark(a.plot([1, 2], [3, 4]))
    b.axhline(1.0)  # a reference line is not data
    assert plots.empty_axes(fig) == ["axes 1"]
    plots.save_figure(fig, tmp_path / "f.svg")
    assert svg_axes_without_data(tmp_path / "f.svg") == ["axes_2"]
    fig, ax = plt.subplots()
    plots.mark(ax.plot([1, 2], [np.nan, np.nan]))
    assert len(plots.empty_axes(fig)) == 1
    plt.close("all")


def test_svg_files_are_deterministic(runs, tmp_path):
    for k in range(2):
        fig, _ = draw_kind("risk", runs)
        plots.save_figure(fig, tmp_path / f"risk{k}.svg")
    one, two = (tmp_path / f"risk{k}.svg").read_bytes(), (tmp_path / "risk1.svg").read_bytes()
    assert (tmp_path / "risk0.svg").read_bytes() == two
    assert b"<dc:date>" not in one


def test_figure_summaries_quote_the_data(runs):
    _, risk = draw_kind("risk", runs)
    assert risk["convergence"]["final_risk"] == pytest.approx(float(runs[0].train.eval_risk[-1]))
    assert risk["convergence"]["initial_risk"] == pytest.approx(float(runs[0].train.eval_risk[0]))
    _, alloc = draw_kind("allocation", runs)
    assert [t["purity_end"] for t in alloc["allocation"]["tasks"]] == pytest.approx(
        runs[0].spectral.purity.values.tolist()
    )
    _, ode = draw_kind("trajectories", runs)
    assert ode["ode"]["max_signal_gap"] == pytest.approx(float(runs[0].spectral.ode_agreement))
    _, win = draw_kind("winner", runs)
    assert (win["agree"], win["total"]) == (6, 6)
    _, opt = draw_kind("optimality", runs)
    assert opt["ratio"] == pytest.approx([1.2, 1.3, 1.4]) and opt["x"] == [16, 32, 64]
    assert opt["x_label"] == plots.param_name(opt["x_name"]) and "_" not in opt["x_label"]
    _, sur = draw_kind("surrogate", runs)
    assert (sur["agree"], sur["total"]) == (3, 6) and sur[
        "min_saturation_failing"
    ] == pytest.approx(np.exp(2 * 0.6**2) / 20)
    _, length = draw_kind("length", runs)
    assert length["runs"][0]["excess"] == pytest.approx(runs[0].lengths.excess_risk.values.tolist())


def test_the_real_spectral_file_feeds_the_figures(runs, tmp_path):
    """Contract check: spectral.analyse_run's output (not a hand-built one) is drawn and judged."""
    from multihead_icl import spectral
    from multihead_icl.spectral_settings import SpectralSettings

    ds = spectral.analyse_run(runs[0].train, None, SpectralSettings.from_config())
    real = RunData("exp/s0", runs[0].train, ds, runs[0].params, runs[0].lengths)
    for kind in ("risk", "trajectories", "allocation", "heatmaps", "winner"):
        fig, _ = plots.draw(
            kind, [real], None, "exp/s0" if FIGURE_KINDS[kind].scope == "run" else "exp", {}
        )
        assert plots.empty_axes(fig) == []
    alloc = measurements.measure_allocation(ds, 0.9)
    assert alloc["min_purity_end"] == pytest.approx(1 / (1 + 0.2**4), rel=1e-3)
    assert [t["winner"] for t in alloc["tasks"]] == [0, 1]


# ---------------------------------------------------------------------------------------------
# captions


def render_caption(kind: str, summary_path: Path) -> str:
    """The caption as Snakemake's report renders it: Jinja (trim/lstrip blocks), then docutils."""
    from docutils.core import publish_parts
    from jinja2 import Environment

    env = Environment(trim_blocks=True, lstrip_blocks=True)
    sm = types.SimpleNamespace(params=types.SimpleNamespace(summary=CaptionData(summary_path)))
    links = "\n".join(f".. _{c['category']}: javascript:void(0)" for c in report.CLAIMS.values())
    text = env.from_string(
        (ROOT / "report" / f"{kind}.rst").read_text() + "\n\n" + links + "\n"
    ).render(snakemake=sm)
    html = publish_parts(
        text, writer="html", settings_overrides={"report_level": 5, "halt_level": 5}
    )["body"]
    assert "system-message" not in html, html
    assert rendering_defects(html) == [], kind
    return re.sub(r"<[^>]+>", "", html)


@pytest.mark.parametrize("kind", list(FIGURE_KINDS))
def test_caption_renders_and_quotes_the_summary(kind, runs, tmp_path):
    fig, summary = draw_kind(kind, runs)
    path = tmp_path / f"{kind}.json"
    plots.write_summary({"thresholds": report.thresholds(), **summary}, path)
    text = render_caption(kind, path)
    data = json.loads(path.read_text())
    expected = {
        "risk": lambda d: measurements.fmt(d["convergence"]["final_risk"]),
        "trajectories": lambda d: measurements.fmt(d["ode"]["max_signal_gap"]),
        "surrogate": lambda d: f"{d['agree']} of {d['total']}",
        "allocation": lambda d: measurements.fmt(d["allocation"]["min_purity_end"]),
        "heatmaps": lambda d: measurements.fmt(d["snapshots"][-1]["time"]),
        "convergence": lambda d: measurements.fmt(d["median_change"]),
        "limit": lambda d: "^" + measurements.fmt(d["flows"][0]["omega_exponent"], 2),
        "flow": lambda d: measurements.fmt(d["flows"][0]["train_gd_gap"], 2),
        "warmup": lambda d: str(d["scales"][0]),
        "winner": lambda d: f"{d['agree']} of {d['total']}",
        "purity": lambda d: f"training in {d['clean_end']} of {d['total']}",
        "optimality": lambda d: measurements.fmt(d["ratio"][1]),
        "baselines": lambda d: measurements.fmt(d["predictors"]["bayes"]["excess"][0]),
        "separation": lambda d: measurements.fmt(d["ratio"][2]),
        "regimes": lambda d: measurements.fmt(d["by_noise"][0]["mean_neff_over_L"]),
        "length": lambda d: measurements.fmt(d["runs"][0]["excess"][0]),
        "linear": lambda d: measurements.fmt(d["runs"][0]["final_risk"]),
        "nonlinear": lambda d: measurements.fmt(d["runs"][0]["final_excess"]),
        "regime_map": lambda d: (
            f"Of {d['points']} flows in {d['cells']} cells: 3 drifting, 0 finite limit allocated, "
            "4 finite limit superposed, 1 not resolved."
        ),
        "complexity": lambda d: f"law t* = {d['runs'][0]['tasks'][0]['law_time']:.3g}",
        "practical": lambda d: (
            f"{d['runs'][0]['ridge_ratio']:.3g} ± {d['runs'][0]['ridge_ratio_se']:.2g} × tuned"
        ),
    }[kind](data)
    assert expected in text, (expected, text)
    plots.plt.close(fig)


def test_verdict_caption_links_each_measured_claim_to_its_category(runs, tmp_path):
    plan = [{"kind": "winner", "path": "results/figures/exp/winner.svg"}]
    rows = verdicts.build_verdicts(runs, {}, {"allocation": "exp", "winner": "exp"}, None, plan)
    path = tmp_path / "verdicts.json"
    plots.write_summary(verdict_table.verdicts_json(rows), path)
    text = render_caption("verdicts", path)
    assert "C4: holds." in text and "C5: not measured." in text
    assert "Figures: C4 Winner prediction" in text


def test_stage_functions_write_figure_and_summary(runs, tmp_path):
    paths = {}
    for name, r in (("a", runs[0]), ("b", runs[1])):
        base = tmp_path / name
        base.mkdir()
        r.train.to_netcdf(base / "train.nc")
        r.spectral.to_netcdf(base / "spectral.nc")
        paths[name] = base
    numbers = stages.plot_figure(
        "winner",
        "exp",
        ["exp/s0", "exp/s1"],
        tmp_path / "w.svg",
        tmp_path / "w.json",
        train=[paths[n] / "train.nc" for n in "ab"],
        spectral=[paths[n] / "spectral.nc" for n in "ab"],
        thresholds={"winner_agreement": 0.9},
    )
    assert (tmp_path / "w.svg").exists() and json.loads((tmp_path / "w.json").read_text())[
        "total"
    ] == numbers["total"] == 4
    rows = stages.write_verdicts(
        ["exp/s0", "exp/s1"],
        [paths[n] / "train.nc" for n in "ab"],
        [paths[n] / "spectral.nc" for n in "ab"],
        tmp_path / "v.html",
        tmp_path / "v.json",
        settings={"allocation": "exp", "winner": "exp"},
    )
    assert len(rows) == 10 and "<table>" in (tmp_path / "v.html").read_text()


# ---------------------------------------------------------------------------------------------
# issue 16: readable, distinguishable figures and their file formats


def svg_texts(path: Path) -> list[str]:
    root = ET.parse(path).getroot()
    return ["".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text")]


def test_svg_text_is_text_and_pdf_is_a_format(runs, tmp_path):
    """Text kept as <text> (searchable, editable); figures.format pdf is allowed by the schema and
    written deterministically."""
    fig, _ = draw_kind("allocation", runs)
    plots.save_figure(fig, tmp_path / "a.svg")
    assert any("purity threshold" in text for text in svg_texts(tmp_path / "a.svg"))
    for k in range(2):
        fig, _ = draw_kind("allocation", runs)
        plots.save_figure(fig, tmp_path / f"a{k}.pdf")
    pdf = (tmp_path / "a0.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and pdf == (tmp_path / "a1.pdf").read_bytes()
    enum = yaml.safe_load(SCHEMA.read_text())["properties"]["figures"]["properties"]["format"]
    assert set(enum["enum"]) == set(plots.FIGURE_FORMATS)
    with pytest.raises(ValueError, match="figure format"):
        plots.save_figure(draw_kind("allocation", runs)[0], tmp_path / "a.eps")


def test_baselines_keep_equal_curves_apart_and_labels_readable(tmp_path):
    opt = make_optimality()
    opt["excess_ols_block"] = opt["excess_bayes"]  # equal values, as Bayes and OLS per block
    opt["excess_trained_fresh"] = opt["excess_trained"] * 1.01
    fig, summary = plots.baselines_figure(opt, "exp")
    bars = {c.get_label(): c.lines[0] for c in fig.axes[0].containers}
    bayes, ols = bars["Bayes optimal"], bars["OLS per block"]
    assert plots._is_marked(bayes) and plots._is_marked(ols)
    assert (bayes.get_marker(), bayes.get_linestyle()) != (ols.get_marker(), ols.get_linestyle())
    assert not np.allclose(bayes.get_xdata(), ols.get_xdata())  # spread sideways
    assert summary["labels"]["trained_fresh"] == plots.PREDICTOR_LABELS["trained_fresh"]
    plots.save_figure(fig, tmp_path / "b.svg")
    texts = svg_texts(tmp_path / "b.svg")
    assert not [t for t in texts if re.search(r"[a-z]_[a-z]", t)]  # no raw key like trained_fresh
    assert "reference predictors" in texts


def test_allocation_figure_has_a_share_heat_map(runs):
    fig, _ = draw_kind("allocation", runs)
    share = runs[0].spectral["share"]
    meshes = [
        c
        for ax in fig.axes
        if not str(ax.get_gid()).startswith("colorbar")
        for c in ax.collections
        if hasattr(c, "get_coordinates")
    ]
    assert len(meshes) == 1
    times = int((runs[0].spectral["time"].values > 0).sum())
    assert meshes[0].get_array().shape == (share.sizes["head"] * share.sizes["task"], times)
    assert fig.legends and not any(ax.get_legend() for ax in fig.axes)  # the legend is outside


def test_short_log_axes_get_several_ticks():
    fig, ax = plt_subplots()
    ax.set_yscale("log")
    ax.set_ylim(62, 190)
    plots._enough_log_ticks(ax, "y")
    lo, hi = ax.get_ylim()
    assert len([v for v in ax.yaxis.get_major_locator()() if lo <= v <= hi]) >= 3


def plt_subplots():
    import matplotlib.pyplot as plt

    return plt.subplots()


def test_config_keys_read_as_words():
    assert plots.axis_label("init_scale") == "init scale s"
    assert plots.axis_label("some_new_key") == "some new key"
    assert plots.group_label("model=reduced, lr=0.1") == "model: reduced, learning rate η: 0.1"
    assert plots.group_label("noise_std, lr") == "noise σ, learning rate η"  # what varies


def test_comparison_pools_the_seeds_of_a_setting(runs):
    """The fixture's runs differ only in the seed: one setting, drawn as one mean line and band."""
    fig, summary = draw_kind("linear", runs)
    left = fig.axes[0]
    assert len(summary["groups"]) == 1
    assert len([line for line in left.lines if plots._is_marked(line)]) == 1
    assert len([c for c in left.collections if plots._is_marked(c)]) == 1
    assert "mean of 3 seeds" in left.lines[0].get_label()


def test_limit_figure_pools_flows_that_differ_only_in_the_seed(runs):
    fig, summary = draw_kind("limit", runs)
    left = fig.axes[0]
    assert len(summary["flows"]) == 3  # every run's numbers stay in the summary (the caption)
    assert len([line for line in left.lines if plots._is_marked(line)]) == 3  # ω, μ, others
    assert "mean of 3 seeds" in left.lines[0].get_label()


def test_purity_pools_the_seeds_of_one_swept_value():
    sweep = [
        make_run(f"sweep/s{seed}-init{scale}", init_scale=scale, leak=0.1 + 0.05 * seed)
        for scale in (0.01, 0.1)
        for seed in range(2)
    ]
    fig, summary = plots.purity_figure(sweep, "sweep", 0.9)
    left = fig.axes[0]
    assert summary["x_name"] == "init_scale" and len(summary["runs"]) == 4
    points = [c for c in left.collections if plots._is_marked(c)]
    assert points and all(len(c.get_offsets()) == 2 for c in points)  # one point per value
    assert any("mean over seeds" in c.get_label() for c in points)
