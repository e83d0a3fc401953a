"""The regime map: where the exact gradient flow ends in allocation, in superposition, or drifts.

A map is an experiment of ``kind: regime_map``: each grid point is the exact flow (``flow``) from
its own init alone, with no training run, to the long horizon of the ``flow`` section. Its end
state is classified by stated rules (docs/science.md §5.6):

- *finite limit, allocated*: (omega, mu) moved by less than ``limit_rtol`` over the last decade
  on both Monte-Carlo samples, H >= I, and the allocation of the flow on sample 0 is clean at the
  horizon (every purity >= the spectral section's ``clean_purity``, distinct winners): one head per
  task;
- *finite limit, superposed*: any other finite limit (heads sharing tasks, or H < I);
- *drifting*: ||omega|| or ||mu|| follows a steady power law t^a, |a| >= ``drift_exponent``, on
  both samples (the exponents are kept);
- *not resolved*: anything else at this horizon, or the two samples disagree.

The map file gathers every point with its excess at the horizon against the best attention of its
class (``optimality.BestInClass``, one search per distinct task suite and H, the paired ratio on
one fresh sample), and the times its allocation is clean.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
import xarray as xr

from . import io
from .config import MAP_INIT_KEYS, complete_run
from .flow import (
    DRIFTING,
    END_CLASSES,
    FINITE_LIMIT,
    EndState,
    ExactRisk,
    FlowSettings,
    classify_end,
    flow_allocation,
    flow_phases,
    flow_times,
    integrate_flow,
)
from .model import OfficialInit, initial_spectrum
from .optimality import BestInClass, SearchSettings, decomposable_W, normalisation_of, paired_ratio
from .spectral import winner_at
from .tasks import TaskSpec
from .theory import SpectralProblem, warmup_law_time

ALLOCATED, SUPERPOSED, DRIFT, UNRESOLVED = 0, 1, 2, 3
REGIMES = {
    ALLOCATED: "finite_limit_allocated",
    SUPERPOSED: "finite_limit_superposed",
    DRIFT: "drifting",
    UNRESOLVED: "not_resolved",
}


def classify_regime(end: EndState, check: EndState, clean_at_end: bool) -> int:
    """The regime of one flow from its end state on the two samples and its allocation at the
    horizon."""
    if end.end_class != check.end_class:
        return UNRESOLVED
    if end.end_class == FINITE_LIMIT:
        return ALLOCATED if clean_at_end else SUPERPOSED
    if end.end_class == DRIFTING:
        return DRIFT
    return UNRESOLVED


def initial_values(params: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """omega(0), mu(0) (H, I) exactly as a training run with these parameters draws them
    (``training.train``: the init seed of ``stream_seeds``, then ``model.initialise``)."""
    params = complete_run(params)
    from .training import stream_seeds

    spec = TaskSpec.from_params(params)
    heads, scheme = int(params["heads"]), str(params["init"])
    generator = torch.Generator().manual_seed(
        stream_seeds(int(params["seed"]), params["data_stream"])[0]
    )
    if scheme in ("official", "official_random"):
        return OfficialInit.draw(spec, heads, scheme, generator).spectrum(spec)
    if scheme != "decomposable":
        raise ValueError(f"a flow from the init alone needs a decomposable init, got {scheme!r}")
    omega, mu = params["init_omega"], params["init_mu"]
    if omega is None or mu is None:
        drawn_omega, drawn_mu = initial_spectrum(
            spec, heads, float(params["init_scale"]), generator, float(params["init_lead"])
        )
        omega = drawn_omega if omega is None else omega
        mu = drawn_mu if mu is None else mu
    return np.asarray(omega, dtype=float), np.asarray(mu, dtype=float)


def _clean_window(times: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    """First time the allocation is clean, and the first time after that it is not (NaN: never
    clean, or clean through the horizon)."""
    if not clean.any():
        return math.nan, math.nan
    onset = int(np.argmax(clean))
    lost = np.flatnonzero(~clean[onset:])
    return float(times[onset]), (float(times[onset + lost[0]]) if lost.size else math.nan)


def map_point(
    params: Mapping[str, Any],
    settings: FlowSettings,
    clean_purity: float,
    fractions: tuple[float, float],
    progress: Callable[[str], None] | None = None,
) -> xr.Dataset:
    """One point of a regime map: the exact flow from the init of ``params`` on two Monte-Carlo
    samples, its end state and regime, its allocation over time and its phases."""
    params = complete_run(params)
    say = progress or (lambda message: None)
    spec = TaskSpec.from_params(params)
    normalise = normalisation_of(str(params["model"]))
    omega0, mu0 = initial_values(params)
    times = flow_times(np.zeros(1), settings.horizon, settings.record_points)
    risks = [ExactRisk(spec, normalise, settings.samples, settings.seed + k) for k in range(2)]
    flows = []
    for k, risk in enumerate(risks):
        flows.append(integrate_flow(risk, omega0, mu0, times, settings.rtol, settings.atol))
        say(
            f"flow on sample {k}: {flows[-1].message} ({flows[-1].evaluations} gradients, "
            f"{flows[-1].seconds:.1f} s)"
        )
    flow, check = flows
    ends = [
        classify_end(times, f.omega, f.mu, settings.limit_rtol, settings.drift_exponent)
        for f in flows
    ]
    winners, purity, clean = flow_allocation(flow, clean_purity)
    if (
        omega0.shape[0] < spec.num_tasks
    ):  # fewer heads than tasks: some head serves several, never one head per task
        clean[:] = False
    regime = classify_regime(ends[0], ends[1], bool(clean[-1]))
    onset, lost = _clean_window(times, clean)
    phases = flow_phases(flow, fractions)
    law = warmup_law_time(SpectralProblem.from_params(params), omega0, mu0, fractions[0])
    excess = np.array(
        [
            risks[0].risk(w, m) - risks[0].noise_var if np.all(np.isfinite(w)) else math.nan
            for w, m in zip(flow.omega, flow.mu)
        ]
    )
    with np.errstate(invalid="ignore"):
        gap = float(np.nanmax(np.abs(flow.signal - check.signal)))

    unit, time_units = {"units": io.DIMENSIONLESS}, {"units": io.TIME_UNITS}
    thi, ti = ("time", "head", "task"), ("time", "task")
    flags = {
        "flag_values": np.array(list(REGIMES), dtype=np.int8),
        "flag_meanings": " ".join(REGIMES.values()),
    }
    data = {
        "omega": (
            thi,
            flow.omega,
            {"long_name": "omega_hi of the exact flow from the init (sample 0)", **unit},
        ),
        "mu": (
            thi,
            flow.mu,
            {"long_name": "mu_hi of the exact flow from the init (sample 0)", **unit},
        ),
        "signal": (ti, flow.signal, {"long_name": "task signal p_i of the exact flow", **unit}),
        "signal_check": (
            ti,
            check.signal,
            {
                "long_name": "task signal p_i of the flow on an independent sample (sample 1)",
                **unit,
            },
        ),
        "excess": (
            ("time",),
            excess,
            {
                "long_name": "excess risk of the flow (risk minus its floor, sample 0)",
                "units": "squared output units",
            },
        ),
        "purity": (
            ti,
            purity,
            {"long_name": "allocation purity: the winning head's share of p_i^2", **unit},
        ),
        "winner": (ti, winners, {"long_name": "winning head of each task along the flow"}),
        "clean": (
            ("time",),
            clean.astype(np.int8),
            {
                "long_name": f"allocation clean (every purity >= {clean_purity:g}, distinct "
                "winners when H >= I)",
                "flag_values": np.array([0, 1], dtype=np.int8),
                "flag_meanings": "not_clean clean",
            },
        ),
        "regime": (
            (),
            np.int8(regime),
            {"long_name": "end state of the flow at the horizon (regime_map module doc)", **flags},
        ),
        "end_class": (
            ("sample",),
            np.array([e.end_class for e in ends], dtype=np.int8),
            {
                "long_name": "flow.classify_end on each Monte-Carlo sample",
                "flag_values": np.array(list(END_CLASSES), dtype=np.int8),
                "flag_meanings": " ".join(END_CLASSES.values()),
            },
        ),
        "omega_exponent": (
            ("sample",),
            np.array([e.omega_exponent for e in ends]),
            {"long_name": "a in ||omega|| ~ t^a over the last decade", **unit},
        ),
        "mu_exponent": (
            ("sample",),
            np.array([e.mu_exponent for e in ends]),
            {"long_name": "a in ||mu|| ~ t^a over the last decade", **unit},
        ),
        "relative_change_last_decade": (
            ("sample",),
            np.array([e.relative_change for e in ends]),
            {"long_name": "||theta(T) - theta(T/10)|| / ||theta(T)||, theta = (omega, mu)", **unit},
        ),
        "mc_gap": (
            (),
            gap,
            {
                "long_name": "Monte-Carlo error bar: largest |p_i(sample 0) - p_i(sample 1)| over "
                "the flow",
                **unit,
            },
        ),
        "clean_onset": (
            (),
            onset,
            {"long_name": "first time the allocation is clean (NaN: never)", **time_units},
        ),
        "clean_lost": (
            (),
            lost,
            {
                "long_name": "first time after clean_onset that the allocation is not clean (NaN: "
                "never clean, or clean to the horizon)",
                **time_units,
            },
        ),
        "warmup_end": (
            ("task",),
            np.array([p.start for p in phases]),
            {
                "long_name": f"the flow's p_i covers {fractions[0]:g} of its logistic rise",
                **time_units,
            },
        ),
        "emergence_end": (
            ("task",),
            np.array([p.end for p in phases]),
            {
                "long_name": f"the flow's p_i covers {fractions[1]:g} of its logistic rise",
                **time_units,
            },
        ),
        "warmup_law_time": (
            ("task",),
            law,
            {
                "long_name": f"warm-up law: the logistic p_i from a(0) reaches {fractions[0]:g} "
                "(docs/science.md §4.3)",
                **time_units,
            },
        ),
        "winner_at_emergence": (
            ("task",),
            np.array(
                [winner_at(winners[:, i], times, p.end) for i, p in enumerate(phases)],
                dtype=np.int64,
            ),
            {"long_name": "winning head of each task at its emergence end (-1: no emergence)"},
        ),
    }
    coords = {
        "time": ("time", times, {"long_name": "gradient-flow time", **time_units}),
        "head": np.arange(omega0.shape[0]),
        "task": np.arange(spec.num_tasks),
        "sample": np.arange(2),
    }
    ds = xr.Dataset(data, coords)
    ds.attrs.update(io.provenance_attrs(params))
    ds.attrs.update(
        flow_settings=json.dumps(asdict(settings), sort_keys=True),
        flow_status=flow.message,
        check_status=check.message,
        description="One point of a regime map: the exact spectral flow from the init alone "
        "(docs/science.md §5.6)",
    )
    say(
        f"regime {REGIMES[regime]} (exponents omega {ends[0].omega_exponent:.3g}, mu "
        f"{ends[0].mu_exponent:.3g}; Monte-Carlo gap {gap:.3g})"
    )
    return ds


def cell_of(point: str, params: Mapping[str, Any], grid_keys: Sequence[str]) -> str:
    """The cell a point belongs to: its grid values without the init keys (``init_lead``,
    ``seed``)."""
    from .config import run_name

    return run_name({k: params[k] for k in grid_keys if k not in MAP_INIT_KEYS})


def gather_map(
    points: Mapping[str, xr.Dataset],
    grid_keys: Sequence[str],
    search: SearchSettings,
    confidence: float,
    progress: Callable[[str], None] | None = None,
) -> xr.Dataset:
    """The map file: every point's regime, exponents, purity, clean window and excess at the
    horizon against the best in class (paired on one fresh sample, with its ``confidence``
    interval: the optimality section's)."""
    say = progress or (lambda message: None)
    names = list(points)
    params = {n: io.read_config(points[n]) for n in names}
    searches: dict[str, BestInClass] = {}
    rows = []
    for name in names:
        ds, p = points[name], params[name]
        spec = TaskSpec.from_params(p)
        normalise = normalisation_of(str(p["model"]))
        key = json.dumps(
            [spec.task_dims, spec.signal, spec.noise_std, spec.context_length, normalise],
            default=str,
        )
        if key not in searches:
            searches[key] = BestInClass(spec, search, normalise)
        best_search = searches[key]
        heads = int(p["heads"])
        fit = best_search.classes(heads)["best_in_class"]
        omega, mu = ds["omega"].values[-1], ds["mu"].values[-1]
        ratio = (math.nan, math.nan, math.nan)
        if np.all(np.isfinite(omega)) and np.all(np.isfinite(mu)):
            end = (decomposable_W(omega, best_search.spec), np.apply_along_axis(np.diag, 1, mu))
            fresh = best_search.fresh_excess({"best": fit, "flow": end})
            ratio = paired_ratio(fresh["flow"], fresh["best"], confidence)
        say(
            f"{name}: regime {REGIMES[int(ds['regime'])]}, excess ratio to best in class "
            f"{ratio[0]:.3g}"
        )
        rows.append((name, p, ds, ratio))

    axes = [k for k in grid_keys if k not in MAP_INIT_KEYS]
    unit, time_units = {"units": io.DIMENSIONLESS}, {"units": io.TIME_UNITS}
    flags = {k: v for k, v in points[names[0]]["regime"].attrs.items() if k.startswith("flag_")}
    column = lambda f: np.array([f(name, p, ds, ratio) for name, p, ds, ratio in rows])  # noqa: E731
    data = {
        "regime": (
            ("point",),
            column(lambda n, p, ds, r: int(ds["regime"])).astype(np.int8),
            {"long_name": "end state of the flow at the horizon", **flags},
        ),
        "omega_exponent": (
            ("point",),
            column(lambda n, p, ds, r: float(ds["omega_exponent"][0])),
            {"long_name": "a in ||omega|| ~ t^a over the last decade (sample 0)", **unit},
        ),
        "mu_exponent": (
            ("point",),
            column(lambda n, p, ds, r: float(ds["mu_exponent"][0])),
            {"long_name": "a in ||mu|| ~ t^a over the last decade (sample 0)", **unit},
        ),
        "purity_end": (
            ("point",),
            column(lambda n, p, ds, r: float(np.nanmin(ds["purity"].values[-1]))),
            {"long_name": "lowest purity over tasks at the horizon", **unit},
        ),
        "clean_onset": (
            ("point",),
            column(lambda n, p, ds, r: float(ds["clean_onset"])),
            {"long_name": "first time the allocation is clean", **time_units},
        ),
        "clean_lost": (
            ("point",),
            column(lambda n, p, ds, r: float(ds["clean_lost"])),
            {
                "long_name": "first time after that it is not clean (NaN: never clean, or clean "
                "to the horizon)",
                **time_units,
            },
        ),
        "emergence_end": (
            ("point",),
            column(
                lambda n, p, ds, r: (
                    float(np.nanmax(ds["emergence_end"].values))
                    if np.isfinite(ds["emergence_end"].values).any()
                    else math.nan
                )
            ),
            {"long_name": "the last task's emergence end along the flow", **time_units},
        ),
        "excess_end": (
            ("point",),
            column(lambda n, p, ds, r: float(ds["excess"].values[-1])),
            {
                "long_name": "excess risk of the flow at the horizon (its own sample)",
                "units": "squared output units",
            },
        ),
        "excess_ratio": (
            ("point",),
            column(lambda n, p, ds, r: r[0]),
            {
                "long_name": "excess of the flow at the horizon / best in class (paired, one "
                "fresh sample)",
                **unit,
            },
        ),
        "excess_ratio_low": (
            ("point",),
            column(lambda n, p, ds, r: r[1]),
            {"long_name": "lower end of the 95% interval of excess_ratio", **unit},
        ),
        "excess_ratio_high": (
            ("point",),
            column(lambda n, p, ds, r: r[2]),
            {"long_name": "upper end of the 95% interval of excess_ratio", **unit},
        ),
        "mc_gap": (
            ("point",),
            column(lambda n, p, ds, r: float(ds["mc_gap"])),
            {"long_name": "largest |p_i(sample 0) - p_i(sample 1)| over the flow", **unit},
        ),
    }
    coords = {
        "point": (
            "point",
            np.array(names),
            {"long_name": "grid point (the run-id form of its grid values)"},
        ),
        "cell": (
            "point",
            np.array([cell_of(n, p, grid_keys) for n, p, _, _ in rows]),
            {"long_name": "cell: the grid values without the init keys"},
        ),
    }
    for key in [*axes, *[k for k in MAP_INIT_KEYS if k in grid_keys]]:
        coords[key] = (
            "point",
            np.array([p[key] for _, p, _, _ in rows]),
            {"long_name": f"run parameter {key}"},
        )
    ds = xr.Dataset(data, coords)
    ds.attrs.update(
        axes=json.dumps(axes),
        init_keys=json.dumps([k for k in MAP_INIT_KEYS if k in grid_keys]),
        search=json.dumps(asdict(search), sort_keys=True),
        description="Regime map: the end state of the exact flow over a grid of settings "
        "(docs/science.md §5.6)",
        horizon=float(points[names[0]]["time"].values[-1]),
    )
    return ds


def summarise(gathered: xr.Dataset) -> dict[str, Any]:
    """Where C1 (a finite limit) and C3 (one head per task at the end) hold on the map, in counts
    and cells: the numbers the figure's caption and the report quote."""
    regime = gathered["regime"].values
    cells = gathered["cell"].values
    by_cell: dict[str, list[int]] = {}
    for c, r in zip(cells, regime):
        by_cell.setdefault(str(c), []).append(int(r))
    finite = sorted(c for c, rs in by_cell.items() if all(r in (ALLOCATED, SUPERPOSED) for r in rs))
    allocated = sorted(c for c, rs in by_cell.items() if all(r == ALLOCATED for r in rs))
    drifting = sorted(c for c, rs in by_cell.items() if all(r == DRIFT for r in rs))
    mixed = sorted(c for c, rs in by_cell.items() if len(set(rs)) > 1)
    ratio = gathered["excess_ratio"].values
    drift_points = regime == DRIFT
    return {
        "points": int(len(regime)),
        "cells": len(by_cell),
        "counts": {REGIMES[k]: int(np.sum(regime == k)) for k in REGIMES},
        "finite_cells": finite,
        "allocated_cells": allocated,
        "drifting_cells": drifting,
        "mixed_cells": mixed,
        "drift_omega_exponent": float(np.median(gathered["omega_exponent"].values[drift_points]))
        if drift_points.any()
        else math.nan,
        "drift_mu_exponent": float(np.median(gathered["mu_exponent"].values[drift_points]))
        if drift_points.any()
        else math.nan,
        "excess_ratio_range": [float(np.nanmin(ratio)), float(np.nanmax(ratio))]
        if np.isfinite(ratio).any()
        else [math.nan, math.nan],
        "horizon": float(gathered.attrs.get("horizon", math.nan)),
    }
