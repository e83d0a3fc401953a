"""Measurements: the numbers a figure's caption quotes and a verdict decides on, computed from
train.nc, spectral.nc, flow.nc, lengths.nc and optimality.nc, so the two can never disagree.

One function per observable (``measure_*``); the decisions are in ``verdicts``, the table's
presentation in ``verdict_table``. Definitions: docs/science.md §3 (read-outs) and §5 (the exact
flow).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import convergence
from .allocation import allocation_is_clean
from .config import DATA_KEYS, complete_run, with_defaults
from .identity import training_identity
from .report import DEFAULT_THRESHOLDS
from .tasks import task_dims_of

if TYPE_CHECKING:
    import xarray as xr


# ---------------------------------------------------------------------------------------------
# helpers


def jsonable(value: Any) -> Any:
    """Plain JSON types: numpy scalars and arrays converted, NaN and infinities as None."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def num(value: Any) -> float:
    """A float, NaN for None or anything missing."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


def _finite(value: Any) -> bool:
    return math.isfinite(num(value))


def finite_or_none(value: Any) -> float | None:
    value = num(value)
    return value if math.isfinite(value) else None


def fmt(value: Any, digits: int = 3) -> str:
    """How every number is written in the report (the captions' Jinja macro ``n`` does the same):
    ``digits`` significant digits, whole numbers from 1000 on, "–" for a missing value."""
    value = num(value)
    if not math.isfinite(value):
        return "–"
    if 1000 <= abs(value) < 1e7:
        return f"{value:.0f}"
    return f"{value:.{digits}g}"


def _var(ds: xr.Dataset | None, *names: str) -> xr.DataArray | None:
    if ds is None:
        return None
    for name in names:
        if name in ds.variables:
            return ds[name]
    return None


def _nearest_index(times: np.ndarray, t: float | None) -> int:
    if t is None or not math.isfinite(t):
        return len(times) - 1
    return int(np.argmin(np.abs(np.asarray(times, dtype=float) - t)))


def _spearman(x: Sequence[float], y: Sequence[float]) -> float:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan

    def ranks(v):
        order = np.argsort(v, kind="stable")
        r = np.empty(v.size)
        r[order] = np.arange(v.size)
        for value in np.unique(v):  # average ties
            tie = v == value
            r[tie] = r[tie].mean()
        return r

    return float(np.corrcoef(ranks(x), ranks(y))[0, 1])


# ---------------------------------------------------------------------------------------------
# data of one run


@dataclass
class RunData:
    """One run's files, loaded: its id, experiment, resolved parameters and datasets."""

    run: str
    train: xr.Dataset
    spectral: xr.Dataset | None = None
    params: dict[str, Any] = field(default_factory=dict)
    lengths: xr.Dataset | None = None  # lengths.nc: the final model at other context lengths L'
    flow: xr.Dataset | None = (
        None  # flow.nc: the exact spectral flow from the run's omega(0), mu(0)
    )
    ablation: xr.Dataset | None = None  # ablation.nc: the head-ablation read-out (Q1)

    @property
    def experiment(self) -> str:
        return self.run.split("/")[0]

    @property
    def diverged(self) -> bool:
        """Training left its bound (training.divergence): the run's records stop there."""
        return self.train is not None and str(self.train.attrs.get("status")) == "diverged"


def divergence_note(run: RunData) -> str:
    """One line on where and why a run diverged (train.nc attributes)."""
    a = run.train.attrs
    where = (
        f"at step {a['diverged_at_step']} (t = {fmt(float(a['diverged_at_time']))})"
        if "diverged_at_step" in a
        else "(step not recorded)"
    )
    kept = len(run.train["time"])
    return f"{run.run} diverged {where}; {kept} record{'s' if kept != 1 else ''} kept"


def training_key(run: RunData) -> str:
    """Runs whose parameters differ only in how they are evaluated follow one trajectory (same seed,
    same data stream), so claims that count runs count each trajectory once. Without parameters a
    run stands for itself."""
    if not run.params:
        return run.run
    return training_identity(run.params)


def _first_of_each(runs: Sequence[RunData], key: Callable[[RunData], str]) -> list[RunData]:
    """The first run of each value of ``key``, in the given order."""
    seen: set[str] = set()
    out = []
    for r in runs:
        if key(r) not in seen:
            seen.add(key(r))
            out.append(r)
    return out


def distinct_runs(runs: Sequence[RunData]) -> list[RunData]:
    """The first run of each training configuration (see ``training_key``), in the given order."""
    return _first_of_each(runs, training_key)


def load_run(
    run: str,
    train: str | Path | None,
    spectral: str | Path | None = None,
    lengths: str | Path | None = None,
    flow: str | Path | None = None,
    ablation: str | Path | None = None,
) -> RunData:
    from .io import load_dataset

    def load(path):
        return None if path is None else load_dataset(path)

    train_ds = load(train)
    spectral_ds = load(spectral)
    source = train_ds if train_ds is not None else spectral_ds
    stored = source is not None and "config" in source.attrs
    params = complete_run(json.loads(source.attrs["config"])) if stored else {}
    return RunData(run, train_ds, spectral_ds, params, load(lengths), load(flow), load(ablation))


def varied_keys(runs: Sequence[RunData], ignore: Iterable[str] = ("seed",)) -> list[str]:
    """Run parameters that differ between the runs (the experiment's grid, minus ``ignore``)."""
    keys = sorted(set().union(*(r.params for r in runs))) if runs else []
    out = []
    for key in keys:
        if key in ignore:
            continue
        values = {json.dumps(r.params.get(key), sort_keys=True) for r in runs}
        if len(values) > 1:
            out.append(key)
    return out


# ---------------------------------------------------------------------------------------------
# C1 convergence


def relative_change_last_tenth(train: xr.Dataset) -> float:
    """||theta(T) - theta(0.9 T)|| / ||theta(T)|| over (W, U) of a train.nc (convergence module)."""
    return convergence.relative_change_last_tenth(
        train["time"].values, convergence.flat_parameters(train)
    )


def measure_convergence(train: xr.Dataset) -> dict[str, Any]:
    """Convergence evidence of one run (docs/science.md C1): relative change of (W, U) over the last
    tenth of the time axis, final gradient norm, the risk at the start and the end."""
    t = np.asarray(train["time"].values, dtype=float)
    risk = np.asarray(train["eval_risk"].values, dtype=float)
    se = np.asarray(train["eval_risk_se"].values, dtype=float)
    floor = num(train.attrs.get("noise_floor"))
    return {
        "status": str(train.attrs.get("status", "unknown")),
        "relative_change": relative_change_last_tenth(train),
        "grad_norm": num(train["grad_norm"].values[-1]) if t.size else math.nan,
        "initial_risk": num(risk[0]) if t.size else math.nan,
        "final_risk": num(risk[-1]) if t.size else math.nan,
        "final_risk_se": num(se[-1]) if t.size else math.nan,
        "noise_floor": floor,
        "final_excess": num(risk[-1]) - floor if t.size else math.nan,
        "final_time": num(t[-1]) if t.size else math.nan,
        "steps": int(train["step"].values[-1]) if t.size else 0,
    }


def measure_suite_convergence(runs: Sequence[RunData]) -> dict[str, Any]:
    """Every run's convergence evidence (``runs``, for the figure), judged with the run's own
    ``converged_rtol`` (the threshold its train.nc status used); the counts are over distinct
    training configurations (``distinct_runs``)."""
    distinct = {r.run for r in distinct_runs(runs)}
    rows = []
    for r in runs:
        c = measure_convergence(r.train)
        optimizer = str(r.params["optimizer"])
        rtol = float(r.params["converged_rtol"])
        rows.append(
            {
                "run": r.run,
                "experiment": r.experiment,
                "optimizer": optimizer,
                "relative_change": c["relative_change"],
                "grad_norm": c["grad_norm"],
                "status": c["status"],
                "converged": bool(c["status"] != "diverged" and c["relative_change"] < rtol),
                "threshold": rtol,
                "distinct": r.run in distinct,
            }
        )
    gd = [r for r in rows if r["optimizer"] == "gd" and r["distinct"]]
    changes = [r["relative_change"] for r in gd if math.isfinite(r["relative_change"])]
    worst = max(gd, key=lambda r: r["relative_change"]) if gd else None
    return {
        "runs": rows,
        "gd_runs": len(gd),
        "repeated_runs": len(rows) - len(distinct),
        "converged": sum(r["converged"] for r in gd),
        "diverged": sum(r["status"] == "diverged" for r in gd),
        "median_change": float(np.median(changes)) if changes else math.nan,
        "worst_change": worst["relative_change"] if worst else math.nan,
        "worst_run": worst["run"] if worst else None,
        "converged_rtols": sorted({r["threshold"] for r in rows}),
    }


# ---------------------------------------------------------------------------------------------
# C2 phases


def phase_fractions(spectral: xr.Dataset | None) -> tuple[float, float]:
    """The fractions of its rise at which spectral.nc ends a task's warm-up and emergence."""
    stored = (
        json.loads(spectral.attrs.get("spectral_settings", "{}")) if spectral is not None else {}
    )
    settings = with_defaults("spectral", stored)  # the schema's under what the file recorded
    return float(settings["warmup_fraction"]), float(settings["emergence_fraction"])


def measure_phases(
    spectral: xr.Dataset | None,
    speedup: float = DEFAULT_THRESHOLDS["emergence_speedup"],
) -> dict[str, Any]:
    """Per task (spectral.nc): warm-up end t_w, emergence end t_e (None = no emergence) and the
    emergence's speed-up, the mean rise rate of p_i during emergence over that during warm-up:
    ((f_e - f_w) / (t_e - t_w)) / (f_w / t_w) with the fractions f of spectral.nc (0.1, 0.9), so
    8 t_w / (t_e - t_w); sharp when at least ``speedup``. Plus the loss-based phase ends
    (spectral.nc ``loss_warmup_end`` / ``loss_emergence_end``, read at the same fractions)."""
    phases: dict[str, Any] = {
        "loss": {"warmup_end": None, "emergence_end": None, "source": "no spectral.nc"}
    }
    if spectral is not None and "loss_warmup_end" in spectral and "loss_emergence_end" in spectral:
        phases["loss"] = {
            "warmup_end": finite_or_none(spectral["loss_warmup_end"].values),
            "emergence_end": finite_or_none(spectral["loss_emergence_end"].values),
            "source": "spectral.nc loss_warmup_end / loss_emergence_end",
        }
    f_w, f_e = phase_fractions(spectral)
    tasks = []
    if spectral is not None and "warmup_end" in spectral and "emergence_end" in spectral:
        warm = np.asarray(spectral["warmup_end"].values, dtype=float).reshape(-1)
        emer = np.asarray(spectral["emergence_end"].values, dtype=float).reshape(-1)
        for i in range(warm.size):
            w, e = finite_or_none(warm[i]), finite_or_none(emer[i])
            ratio = _speedup(w, e, (f_w, f_e))
            tasks.append(
                {
                    "task": i,
                    "warmup_end": w,
                    "emergence_end": e,
                    "speedup": ratio,
                    "emerged": e is not None,
                    "sharp": ratio is not None and ratio >= speedup,
                }
            )
    phases["tasks"] = tasks
    phases["speedup_threshold"] = speedup
    phases["fractions"] = [f_w, f_e]
    return phases


def measure_warmup_law(runs: Sequence[RunData], slope_rtol: float) -> dict[str, Any]:
    """Warm-up end t*_i of every run and task against ln(1/s) with a least-squares fit (all tasks
    pooled), against the warm-up law: slope 2 / lambda_i with lambda_i the logistic rate in
    spectral.nc ``warmup_rate`` (t* ~ (1/lambda) ln(1/s^2)); ``warmup_law_time`` is the law's
    prediction from each run's own omega(0), mu(0), ``warmup_law_time_sgd`` the same with the
    discrete step and the sampling noise of the run's batches (when spectral.nc has it)."""
    points, law_slopes = [], []
    for r in runs:
        if r.spectral is None or "warmup_end" not in r.spectral:
            continue
        scale = num(r.params.get("init_scale"))
        if not (scale > 0):
            continue
        measured = np.asarray(r.spectral["warmup_end"].values, dtype=float).reshape(-1)
        predicted = (
            np.asarray(r.spectral["warmup_law_time"].values, dtype=float).reshape(-1)
            if "warmup_law_time" in r.spectral
            else np.full(measured.shape, np.nan)
        )
        rate = (
            np.asarray(r.spectral["warmup_rate"].values, dtype=float).reshape(-1)
            if "warmup_rate" in r.spectral
            else np.full(measured.shape, np.nan)
        )
        sgd = (
            np.asarray(r.spectral["warmup_law_time_sgd"].values, dtype=float).reshape(-1)
            if "warmup_law_time_sgd" in r.spectral
            else np.full(measured.shape, np.nan)
        )
        for i, value in enumerate(measured):
            law_slopes.append(2.0 / rate[i] if rate[i] > 0 else math.nan)
            points.append(
                {
                    "run": r.run,
                    "task": i,
                    "init_scale": scale,
                    "log_inv_scale": math.log(1.0 / scale),
                    "warmup_end": finite_or_none(value),
                    "predicted": finite_or_none(predicted[i]),
                    "predicted_sgd": finite_or_none(sgd[i]),
                }
            )
    good = [p for p in points if p["warmup_end"] is not None]
    x = np.array([p["log_inv_scale"] for p in good])
    y = np.array([p["warmup_end"] for p in good])
    scales = sorted({p["init_scale"] for p in good})
    finite_slopes = [s for s in law_slopes if math.isfinite(s)]
    law_slope = float(np.mean(finite_slopes)) if finite_slopes else math.nan
    out: dict[str, Any] = {
        "points": points,
        "scales": scales,
        "fit": None,
        "law_slope": law_slope,
        "law_slopes_differ": bool(
            finite_slopes and np.ptp(finite_slopes) > 1e-9 * max(abs(law_slope), 1)
        ),
        "law_intercept": math.nan,
        "relative_slope_error": math.nan,
        "agrees": None,
        "missing": len(points) - len(good),
        "threshold": slope_rtol,
        "warmup_fraction": phase_fractions(
            next((r.spectral for r in runs if r.spectral is not None), None)
        )[0],
    }
    if len(scales) >= 2 and len(good) >= 3:
        A = np.vstack([np.ones_like(x), x]).T
        coef, *_ = np.linalg.lstsq(A, y, rcond=None)
        resid = y - A @ coef
        dof = max(len(y) - 2, 1)
        cov = (resid @ resid / dof) * np.linalg.inv(A.T @ A)
        r2 = 1 - (resid @ resid) / max(((y - y.mean()) ** 2).sum(), 1e-300)
        out["fit"] = {
            "intercept": float(coef[0]),
            "slope": float(coef[1]),
            "slope_se": float(math.sqrt(max(cov[1, 1], 0))),
            "r2": float(r2),
        }
        if math.isfinite(law_slope):
            out["law_intercept"] = float(y.mean() - law_slope * x.mean())
            out["relative_slope_error"] = float(abs(coef[1] - law_slope) / law_slope)
            out["agrees"] = bool(out["relative_slope_error"] <= slope_rtol)
    return out


# ---------------------------------------------------------------------------------------------
# C3 allocation, C4 winner


def measure_allocation(spectral: xr.Dataset, purity_threshold: float) -> dict[str, Any]:
    """Winner and purity of every task at the end of its emergence (spectral.nc
    ``winner_at_emergence`` / ``purity_at_emergence``) and at the end of training (``winner`` /
    ``purity``). Clean (with this threshold, which may differ from spectral.nc's own ``clean``):
    every purity >= threshold and, for H >= I, distinct winners."""
    heads = spectral.sizes["head"]

    def values(name: str, fallback: float) -> np.ndarray:
        if name in spectral:
            return np.asarray(spectral[name].values, dtype=float).reshape(-1)
        return np.full(spectral.sizes["task"], fallback)

    winner, purity = values("winner", -1), values("purity", np.nan)
    winner_em, purity_em = values("winner_at_emergence", -1), values("purity_at_emergence", np.nan)
    warm, emer = values("warmup_end", np.nan), values("emergence_end", np.nan)
    tasks = []
    for i in range(spectral.sizes["task"]):
        tasks.append(
            {
                "task": i,
                "winner": int(winner[i]),
                "purity_end": finite_or_none(purity[i]),
                "winner_emergence": int(winner_em[i])
                if finite_or_none(purity_em[i]) is not None
                else None,
                "purity_emergence": finite_or_none(purity_em[i]),
                "warmup_end": finite_or_none(warm[i]),
                "emergence_end": finite_or_none(emer[i]),
            }
        )

    def clean(purity_key: str, winner_key: str) -> bool:
        got = [t[purity_key] for t in tasks]
        winners = [t[winner_key] for t in tasks]
        if any(v is None for v in got) or any(w is None or w < 0 for w in winners):
            return False
        distinct = len(set(winners)) == len(winners) if heads >= len(tasks) else True
        return bool(min(got) >= purity_threshold and distinct)

    def lowest(key: str) -> float | None:
        got = [t[key] for t in tasks]
        return None if any(v is None for v in got) else min(got)

    residual = (
        spectral["decomposability_residual"].values
        if "decomposability_residual" in spectral
        else None
    )
    return {
        "heads": heads,
        "tasks": tasks,
        "threshold": purity_threshold,
        "clean_end": clean("purity_end", "winner"),
        "clean_emergence": clean("purity_emergence", "winner_emergence"),
        "min_purity_end": lowest("purity_end"),
        "min_purity_emergence": lowest("purity_emergence"),
        "final_residual": finite_or_none(np.nanmax(residual[-1]))
        if residual is not None and np.isfinite(residual[-1]).any()
        else None,
    }


def drift_time(spectral: xr.Dataset, purity_threshold: float) -> float | None:
    """When a clean allocation starts to drift: the first time after the allocation was last clean
    (every task's purity >= ``purity_threshold``, distinct winners) at which it is no longer clean;
    None if it never was clean or stays clean to the end. Allocation often becomes clean only after
    emergence, so this is read from the clean window, not from the end of emergence."""
    window = clean_window(spectral, purity_threshold) if "share" in spectral else None
    if window is None:
        return None
    times = np.asarray(spectral["time"].values, dtype=float)
    after = times[times > window[1]]
    return float(after[0]) if after.size else None


def measure_purity(runs: Sequence[RunData], purity_threshold: float) -> dict[str, Any]:
    """Lowest purity over tasks at the end of emergence and at the end of training, and the drift
    time, of every run of a sweep, against the parameter the sweep varies."""
    varied = varied_keys(runs)
    key = varied[0] if varied else "seed"
    rows = []
    for r in runs:
        if r.spectral is None or "purity" not in r.spectral:
            continue
        alloc = measure_allocation(r.spectral, purity_threshold)
        window = clean_window(r.spectral, purity_threshold) if "share" in r.spectral else None
        rows.append(
            {
                "run": r.run,
                "x": r.params.get(key),
                "purity_emergence": alloc["min_purity_emergence"],
                "purity_end": alloc["min_purity_end"],
                "purity_cleanest": finite_or_none(r.spectral["cleanest_purity"].values)
                if "cleanest_purity" in r.spectral
                else None,
                "clean_emergence": alloc["clean_emergence"],
                "clean_end": alloc["clean_end"],
                "clean_from": window[0] if window else None,
                "clean_until": window[1] if window else None,
                "drift_time": drift_time(r.spectral, purity_threshold),
                "final_time": float(r.spectral["time"].values[-1]),
            }
        )
    numeric = all(
        isinstance(row["x"], (int, float)) and not isinstance(row["x"], bool) for row in rows
    )
    return {
        "x_name": key,
        "varied": varied,
        "numeric": numeric,
        "runs": rows,
        "threshold": purity_threshold,
        "clean_end": sum(r["clean_end"] for r in rows),
        "clean_emergence": sum(r["clean_emergence"] for r in rows),
        "total": len(rows),
    }


def snapshot_times(train: xr.Dataset, spectral: xr.Dataset | None) -> list[dict[str, Any]]:
    """Recorded times closest to the end of warm-up and of emergence (the latest task's) and the
    end of training; phases that were not detected are left out (and t = 0 shown instead)."""
    times = np.asarray(train["time"].values, dtype=float)
    snaps = []
    for key, label in (("warmup_end", "end of warm-up"), ("emergence_end", "end of emergence")):
        var = _var(spectral, key)
        if var is None:
            continue
        values = np.asarray(var.values, dtype=float).reshape(-1)
        if values.size and np.isfinite(values).all():
            index = _nearest_index(times, float(values.max()))
            snaps.append({"label": label, "index": index, "time": float(times[index])})
    if not snaps:
        snaps.append(
            {"label": "initialisation (no phase detected)", "index": 0, "time": float(times[0])}
        )
    snaps.append({"label": "end of training", "index": len(times) - 1, "time": float(times[-1])})
    return snaps


def observed_winner_name(spectral: xr.Dataset) -> str:
    """The observed winner C4 compares with: the winner when the allocation was cleanest
    (``winner_at_cleanest``), since allocation forms after emergence and may drift later; files
    without it fall back to the winner at the end of training."""
    return "winner_at_cleanest" if "winner_at_cleanest" in spectral else "winner"


def measure_winners(runs: Sequence[RunData]) -> dict[str, Any]:
    """Predicted (spectral.nc ``predicted_winner``) against observed winner over runs and tasks,
    and how clean the allocation was where the observed winner was read."""
    pairs, heads = [], 1
    for r in runs:
        if r.spectral is None or "winner" not in r.spectral or "predicted_winner" not in r.spectral:
            continue
        heads = max(heads, r.spectral.sizes.get("head", 1))
        observed = r.spectral[observed_winner_name(r.spectral)].values.reshape(-1)
        cleanest = (
            finite_or_none(r.spectral["cleanest_purity"].values)
            if "cleanest_purity" in r.spectral
            else None
        )
        for i, (obs, pred) in enumerate(
            zip(observed, r.spectral["predicted_winner"].values.reshape(-1))
        ):
            if _finite(obs) and _finite(pred):
                pairs.append(
                    {
                        "run": r.run,
                        "task": i,
                        "observed": int(obs),
                        "predicted": int(pred),
                        "cleanest_purity": cleanest,
                    }
                )
    confusion = np.zeros((heads, heads), dtype=int)
    for p in pairs:
        confusion[p["predicted"], p["observed"]] += 1
    agree = sum(p["observed"] == p["predicted"] for p in pairs)
    purities = [p["cleanest_purity"] for p in pairs if p["cleanest_purity"] is not None]
    return {
        "pairs": pairs,
        "heads": heads,
        "confusion": confusion.tolist(),
        "agree": int(agree),
        "total": len(pairs),
        "agreement": agree / len(pairs) if pairs else math.nan,
        "chance": 1.0 / heads,
        "runs": sorted({p["run"] for p in pairs}),
        "median_cleanest_purity": float(np.median(purities)) if purities else None,
    }


# ---------------------------------------------------------------------------------------------
# C7 ODE


def measure_ode(spectral: xr.Dataset | None) -> dict[str, Any]:
    """Agreement of the spectral ODE with training: the largest gap over time between the trained
    and the ODE task signal p_i (spectral.nc ``ode_signal_gap`` per task, ``ode_agreement`` over
    tasks). Not available when the file has no (finite) ODE overlay."""
    if spectral is None or "ode_signal_gap" not in spectral:
        return {"available": False, "max_signal_gap": None, "per_task": []}
    per_task = np.asarray(spectral["ode_signal_gap"].values, dtype=float).reshape(-1)
    if not np.isfinite(per_task).any():
        return {"available": False, "max_signal_gap": None, "per_task": []}
    signal = spectral["signal"].values if "signal" in spectral else None
    signal_ode = spectral["signal_ode"].values if "signal_ode" in spectral else None
    return {
        "available": True,
        "max_signal_gap": float(np.nanmax(per_task)),
        "gap_through_emergence": finite_or_none(spectral["ode_agreement_emergence"].values)
        if "ode_agreement_emergence" in spectral
        else None,
        "per_task": [finite_or_none(v) for v in per_task],
        "final_signal": [finite_or_none(v) for v in signal[-1]] if signal is not None else [],
        "final_signal_ode": [finite_or_none(v) for v in signal_ode[-1]]
        if signal_ode is not None
        else [],
        "status": str(spectral.attrs.get("ode_status", "")),
        "model": str(spectral.attrs.get("ode_model", "")),
        "describes_run": ode_applies(json.loads(spectral.attrs.get("config", "{}"))),
    }


def measure_surrogate(check: xr.Dataset | None) -> dict[str, Any]:
    """The Monte-Carlo check of the finite-L surrogate (results/theory/surrogate_check.nc): every
    grid point's relative gap and saturation index, and how many agree within its tolerance."""
    if check is None or "relative_gap" not in check:
        return {"available": False, "points": [], "agree": 0, "total": 0}
    flat = check.to_dataframe().reset_index()
    tolerance = finite_or_none(json.loads(check.attrs.get("config", "{}")).get("tolerance"))
    points = []
    for row in flat.itertuples(index=False):
        row = row._asdict()
        points.append(
            {
                "pattern": str(row.get("pattern", "")),
                "task_dim": finite_or_none(row.get("task_dim")),
                "context_length": finite_or_none(row.get("context_length")),
                "omega": finite_or_none(row.get("omega")),
                "relative_gap": finite_or_none(row.get("relative_gap")),
                "saturation_index": finite_or_none(row.get("saturation_index")),
                "agrees": bool(row.get("agrees")),
                "conclusive": bool(row.get("conclusive", True)),
            }
        )
    agree = [p for p in points if p["agrees"]]
    fail = [p for p in points if not p["agrees"]]
    return {
        "available": True,
        "points": points,
        "agree": len(agree),
        "total": len(points),
        "tolerance": tolerance,
        "conclusive": sum(p["conclusive"] for p in points),
        "summary": str(check.attrs.get("summary", "")),
        "max_saturation_agreeing": max(
            (p["saturation_index"] for p in agree if p["saturation_index"] is not None),
            default=None,
        ),
        "min_saturation_failing": min(
            (p["saturation_index"] for p in fail if p["saturation_index"] is not None), default=None
        ),
        "max_omega_agreeing": max(
            (p["omega"] for p in agree if p["omega"] is not None), default=None
        ),
        "min_omega_failing": min(
            (p["omega"] for p in fail if p["omega"] is not None), default=None
        ),
    }


# ---------------------------------------------------------------------------------------------
# C5 / C6 from optimality.nc


def _opt_dim(opt: xr.Dataset) -> str:
    for dim in ("config",):
        if dim in opt.dims:
            return dim
    return next(iter(opt.dims))


def _swept(opt: xr.Dataset, prefer: Sequence[str] = ()) -> tuple[str, np.ndarray]:
    """The parameter the optimality file varies along its configurations: the first of ``prefer``
    and the usual sweeps that varies; with a single configuration, the first of them present."""
    dim = _opt_dim(opt)
    candidates = [
        n
        for n in [*prefer, "context_length", "heads", "tasks", "noise_std", "task_dim"]
        if n in opt.variables and opt[n].dims == (dim,) and np.issubdtype(opt[n].dtype, np.number)
    ]
    for name in candidates:
        if np.unique(opt[name].values).size > 1:
            return name, np.asarray(opt[name].values)
    if candidates:
        return candidates[0], np.asarray(opt[candidates[0]].values)
    return dim, np.arange(opt.sizes[dim])


def _first(opt: xr.Dataset, *names: str) -> np.ndarray | None:
    var = _var(opt, *names)
    return None if var is None else np.asarray(var.values, dtype=float)


def _ratio_with_interval(
    opt: xr.Dataset, name: str, numerator: str, denominator: str, x: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A ratio of optimality.nc with its interval; for a file without it, numerator / denominator of
    the excess risks, with no interval (low = high = ratio)."""
    ratio, low, high = (_first(opt, f"{name}{suffix}") for suffix in ("", "_low", "_high"))
    if ratio is None:
        top, bottom = _first(opt, numerator), _first(opt, denominator)
        ratio = (
            top / bottom if top is not None and bottom is not None else np.full(x.shape, math.nan)
        )
    return ratio, (ratio if low is None else low), (ratio if high is None else high)


def measure_optimality(opt: xr.Dataset, max_ratio: float) -> dict[str, Any]:
    """excess(trained) / excess(best in class) per configuration with its interval."""
    x_name, x = _swept(opt)
    ratio, low, high = _ratio_with_interval(
        opt, "optimality_ratio", "excess_trained", "excess_best_in_class", x
    )
    order = np.argsort(x, kind="stable")
    # within the factor, and not significantly below 1 (that would mean the search missed the best)
    passed = [bool(1.0 <= h <= max_ratio) for h in high[order] if math.isfinite(h)]
    return {
        **_in_order(x_name, x, ratio, low, high, order),
        "passed": sum(passed),
        "total": len(passed),
        "max_ratio": float(np.nanmax(ratio)) if np.isfinite(ratio).any() else math.nan,
        "max_high": float(np.nanmax(high)) if np.isfinite(high).any() else math.nan,
        "threshold": max_ratio,
        "below_one": int(sum(h < 1.0 for h in high if math.isfinite(h))),
        "confidence": finite_or_none(opt.attrs.get("confidence")),
        "sanity_violations": str(opt.attrs.get("sanity_violations", "not recorded")),
        "keys": [_configuration_key(opt, k) for k in order],
    }


def _configuration_key(opt: xr.Dataset, index: int) -> str:
    """What identifies one configuration across optimality files: its class parameters (the
    non-index coordinates on ``config``) and its trained excess risk (equal only for the same
    runs)."""
    coords = {
        name: np.asarray(c.values)[index].item()
        for name, c in opt.coords.items()
        if c.dims == ("config",) and name != "config"
    }
    return json.dumps(
        {**coords, "excess_trained": float(opt["excess_trained"].values[index])},
        sort_keys=True,
        default=str,
    )


def measure_baselines(opt: xr.Dataset) -> dict[str, Any]:
    """Excess risk (and SE) of every predictor in the file, against the swept parameter."""
    x_name, x = _swept(opt, prefer=("context_length",))
    order = np.argsort(x, kind="stable")
    predictors = {}
    for name in opt.data_vars:
        if not name.startswith("excess_") or name.endswith("_se"):
            continue
        key = name[len("excess_") :]
        se = _first(opt, f"{name}_se")
        values = np.asarray(opt[name].values, dtype=float)
        if values.shape != x.shape:
            continue
        predictors[key] = {
            "excess": values[order].tolist(),
            "se": (se[order] if se is not None else np.zeros_like(values)).tolist(),
        }
    return {
        "x_name": x_name,
        "x": x[order].tolist(),
        "predictors": predictors,
        "sanity_violations": str(opt.attrs.get("sanity_violations", "not recorded")),
    }


def _in_order(x_name: str, x, ratio, low, high, order) -> dict[str, Any]:
    """A ratio with its interval against the swept parameter, in the order of ``order``."""
    return {
        "x_name": x_name,
        "x": x[order].tolist(),
        "ratio": ratio[order].tolist(),
        "low": low[order].tolist(),
        "high": high[order].tolist(),
    }


def measure_separation(opt: xr.Dataset, min_ratio: float) -> dict[str, Any]:
    """excess(best single head) / excess(best multi-head, the best in class) per number of tasks
    with its interval."""
    x_name, x = _swept(opt, prefer=("tasks",))
    ratio, low, high = _ratio_with_interval(
        opt, "separation_ratio", "excess_single_head", "excess_best_in_class", x
    )
    order = np.argsort(x, kind="stable")
    multi_task = [k for k in order if x_name != "tasks" or x[k] >= 2]
    passed = [bool(low[k] > min_ratio) for k in multi_task if math.isfinite(low[k])]
    return {
        **_in_order(x_name, x, ratio, low, high, order),
        "passed": sum(passed),
        "total": len(passed),
        "threshold": min_ratio,
        "increasing": bool(np.all(np.diff(ratio[order]) > 0)) if len(order) > 1 else None,
        "confidence": finite_or_none(opt.attrs.get("confidence")),
        "sanity_violations": str(opt.attrs.get("sanity_violations", "not recorded")),
        "keys": [_configuration_key(opt, k) for k in order],
    }


# ---------------------------------------------------------------------------------------------
# C8 regimes, C9 extensions


def measure_regimes(runs: Sequence[RunData], min_corr: float) -> dict[str, Any]:
    """n_eff / L (spectral.nc ``n_eff_ratio``) of each task's winning head at the end of training,
    and omega^2 d_i of that head, against the noise level; Spearman correlation of n_eff / L with
    sigma over all (run, task) points."""
    points = []
    for r in runs:
        s = r.spectral
        if s is None or "n_eff_ratio" not in s or "winner" not in s:
            continue
        final = np.asarray(s["n_eff_ratio"].transpose("time", "head").values[-1], dtype=float)
        omega = s["omega"].transpose("time", "head", "task").values[-1]
        dims = (
            task_dims_of(r.params)
            if "tasks" in r.params
            else [r.params["task_dim"]] * omega.shape[-1]
        )
        L = int(r.params["context_length"])
        for i, h in enumerate(np.asarray(s["winner"].values).reshape(-1)):
            h = int(h)
            if h < 0:
                continue
            d_i = float(dims[i])
            points.append(
                {
                    "run": r.run,
                    "task": i,
                    "head": h,
                    "noise_std": num(r.params.get("noise_std")),
                    "context_length": L,
                    "neff_over_L": finite_or_none(final[h]),
                    "omega2d": float(omega[h, i] ** 2 * d_i),
                }
            )
    rho = _spearman([p["noise_std"] for p in points], [num(p["neff_over_L"]) for p in points])
    levels = sorted({p["noise_std"] for p in points})
    by_noise = []
    for level in levels:
        mine = [p for p in points if p["noise_std"] == level]
        neff = [p["neff_over_L"] for p in mine if p["neff_over_L"] is not None]
        by_noise.append(
            {
                "noise_std": level,
                "mean_neff_over_L": float(np.mean(neff)) if neff else math.nan,
                "mean_omega2d": float(np.mean([p["omega2d"] for p in mine])),
                "points": len(mine),
            }
        )
    return {
        "points": points,
        "spearman": rho,
        "noise_levels": levels,
        "by_noise": by_noise,
        "threshold": min_corr,
    }


def measure_length(runs: Sequence[RunData], max_ratio: float) -> dict[str, Any]:
    """Excess risk of the final model at each evaluation length L' (lengths.nc ``excess_risk``,
    ``risk_se``) against the excess at the training L; a run passes when
    excess(L') <= ratio x excess(L) for every L' >= L."""
    out_runs = []
    for r in runs:
        ds = r.lengths
        if ds is None or "excess_risk" not in ds:
            continue
        lengths = np.asarray(ds["length"].values, dtype=float)
        excess = np.asarray(ds["excess_risk"].values, dtype=float)
        se = (
            np.asarray(ds["risk_se"].values, dtype=float)
            if "risk_se" in ds
            else np.zeros_like(excess)
        )
        L = int(ds.attrs.get("train_context_length", r.params["context_length"]))
        k = int(np.argmin(np.abs(lengths - L))) if lengths.size else 0
        at_train = excess[k] if lengths.size and lengths[k] == L else math.nan
        longer = excess[lengths > L]
        worst = float(np.max(longer / at_train)) if longer.size and at_train > 0 else math.nan
        out_runs.append(
            {
                "run": r.run,
                "lengths": lengths.tolist(),
                "excess": excess.tolist(),
                "se": se.tolist(),
                "train_length": L,
                "excess_at_train": finite_or_none(at_train),
                "worst_ratio_longer": finite_or_none(worst),
                "passed": bool(math.isfinite(worst) and worst <= max_ratio),
            }
        )
    return {
        "runs": out_runs,
        "passed": sum(r["passed"] for r in out_runs),
        "total": len(out_runs),
        "threshold": max_ratio,
    }


def measure_comparison(runs: Sequence[RunData], purity_threshold: float) -> dict[str, Any]:
    """Final risk, excess and purity of every run of an experiment, grouped by what it varies."""
    varied = varied_keys(runs)
    rows = []
    for r in runs:
        group = ", ".join(f"{k}={r.params.get(k)}" for k in varied) or str(r.params["model"])
        c = measure_convergence(r.train)
        purity = (
            np.asarray(r.spectral["purity"].values, dtype=float).reshape(-1).tolist()
            if r.spectral is not None and "purity" in r.spectral
            else []
        )
        rows.append(
            {
                "run": r.run,
                "group": group,
                "model": r.params["model"],
                "target": r.params["target"],
                "final_risk": c["final_risk"],
                "final_risk_se": c["final_risk_se"],
                "noise_floor": c["noise_floor"],
                "final_excess": c["final_excess"],
                "initial_risk": c["initial_risk"],
                "purity": purity,
                "clean": bool(purity) and min(purity) >= purity_threshold,
            }
        )
    groups = list(dict.fromkeys(r["group"] for r in rows))
    return {
        "runs": rows,
        "groups": groups,
        "varied": ", ".join(varied),
        "clean": sum(r["clean"] for r in rows),
        "total": len(rows),
        "threshold": purity_threshold,
    }


# ---------------------------------------------------------------------------------------------
# the exact flow (flow.nc): C1, C2, C5, C7, C8 on the object the claims are about

END_CLASS_NAMES = {0: "finite limit", 1: "drifting", 2: "not resolved"}
# with omega(0), mu(0) these fix a flow: the law of the data in the task basis (not the bases of
# a rotated run, nor the evaluation set), the model and its heads
FLOW_KEYS = (
    *(
        k
        for k in DATA_KEYS
        if k not in ("rotate", "basis_seed", "target", "eval_prompts", "eval_seed")
    ),
    "model",
    "heads",
)


def flow_key(run: RunData) -> str:
    """Flows of runs that start from the same omega(0), mu(0) in the same problem are one flow
    (e.g. allocation/s0 and heads/H3): count it once."""
    f = run.flow
    start = np.round(
        np.concatenate([f["omega"].values[0].ravel(), f["mu"].values[0].ravel()]), 12
    ).tolist()
    return json.dumps(
        {**{k: run.params.get(k) for k in FLOW_KEYS}, "start": start}, sort_keys=True, default=str
    )


def distinct_flows(runs: Sequence[RunData]) -> list[RunData]:
    """The runs with a flow, one per distinct flow (see ``flow_key``)."""
    return _first_of_each([r for r in runs if r.flow is not None], flow_key)


def _speedup(
    warm: float | None, emer: float | None, fractions: tuple[float, float]
) -> float | None:
    """Mean rise rate of p_i during emergence over that during warm-up (see measure_phases)."""
    f_w, f_e = fractions
    if warm is None or emer is None or warm <= 0 or emer <= warm:
        return None
    return ((f_e - f_w) / (emer - warm)) / (f_w / warm)


def _relative_change_last_tenth(times: np.ndarray, omega: np.ndarray, mu: np.ndarray) -> float:
    theta = np.concatenate([omega.reshape(len(times), -1), mu.reshape(len(times), -1)], axis=1)
    return convergence.relative_change_last_tenth(times, theta)


def measure_complexity(run: RunData) -> dict[str, Any]:
    """Tasks of different complexity in one model: per task its d_i and kappa_i, the warm-up law's
    t*_i (gradient flow, from the run's a(0)), the observed warm-up and emergence ends of the exact
    flow and of the trained run, the emergence order each gives, and which head won the task at its
    emergence end (predicted from a(0), along the flow, in training)."""
    from .tasks import TaskSpec

    spec = TaskSpec.from_params(run.params)
    s, f = run.spectral, run.flow
    law = np.asarray(s["warmup_law_time"].values, dtype=float)
    trained_warm, trained_emer = (
        np.asarray(s[k].values, dtype=float) for k in ("warmup_end", "emergence_end")
    )
    flow_warm = (
        np.asarray(f["warmup_end"].values, dtype=float)
        if f is not None
        else np.full(len(law), np.nan)
    )
    flow_emer = (
        np.asarray(f["emergence_end"].values, dtype=float)
        if f is not None
        else np.full(len(law), np.nan)
    )
    flow_winner = np.full(
        len(law), -1
    )  # the winner of each task at its own emergence end along the flow
    if f is not None:
        from .spectral import winner_at

        times = np.asarray(f["time"].values, dtype=float)
        flow_winner = np.array(
            [winner_at(f["winner"].values[:, i], times, end) for i, end in enumerate(flow_emer)]
        )

    def order(times: np.ndarray) -> list[int] | None:
        return [int(i) for i in np.argsort(times)] if np.all(np.isfinite(times)) else None

    tasks = [
        {
            "task": i,
            "d": int(spec.task_dims[i]),
            "kappa": float(spec.signal[i]),
            "law_time": finite_or_none(law[i]),
            "flow_warmup_end": finite_or_none(flow_warm[i]),
            "flow_emergence_end": finite_or_none(flow_emer[i]),
            "trained_warmup_end": finite_or_none(trained_warm[i]),
            "trained_emergence_end": finite_or_none(trained_emer[i]),
            "flow_over_law": finite_or_none(flow_warm[i] / law[i]) if law[i] > 0 else None,
            "predicted_winner": int(s["predicted_winner"].values[i]),
            "trained_winner": int(s["winner_at_emergence"].values[i]),
            "flow_winner": int(flow_winner[i]),
        }
        for i in range(len(law))
    ]
    law_order, flow_order, trained_order = order(law), order(flow_warm), order(trained_warm)
    return {
        "run": run.run,
        "tasks": tasks,
        "law_order": law_order,
        "flow_order": flow_order,
        "trained_order": trained_order,
        "flow_order_matches": flow_order == law_order if flow_order and law_order else None,
        "trained_order_matches": trained_order == law_order
        if trained_order and law_order
        else None,
    }


def measure_flow(run: RunData) -> dict[str, Any]:
    """What the exact flow of one run does (flow.nc), and the run's trained evidence next to it."""
    f, s = run.flow, run.spectral
    times = np.asarray(f["time"].values, dtype=float)
    run_end = num(f.attrs.get("run_end_time"))
    at_run_end = int(np.searchsorted(times, run_end)) if math.isfinite(run_end) else len(times) - 1
    at_run_end = min(at_run_end, len(times) - 1)
    winners = np.asarray(f["winner"].values)
    neff = np.asarray(f["n_eff_ratio"].values, dtype=float)

    def winners_neff(k: int) -> list[float | None]:
        return [finite_or_none(neff[k, h]) if h >= 0 else None for h in winners[k]]

    fractions = phase_fractions(s)
    warm, emer = f["warmup_end"].values.astype(float), f["emergence_end"].values.astype(float)
    trained_change = None
    if s is not None:
        trained_change = finite_or_none(
            _relative_change_last_tenth(
                s["time"].values.astype(float),
                s["omega"].transpose("time", "head", "task").values,
                s["mu"].transpose("time", "head", "task").values,
            )
        )
    trained_grad = np.asarray(f["trained_grad_norm"].values, dtype=float)
    flow_grad = np.asarray(f["grad_norm"].values, dtype=float)
    return {
        "run": run.run,
        "horizon": float(times[-1]),
        "run_end": finite_or_none(run_end),
        "end_class": END_CLASS_NAMES[int(f["end_class"].values)],
        "end_class_check": END_CLASS_NAMES[int(f["end_class_check"].values)],
        "relative_change_last_decade": finite_or_none(f["relative_change_last_decade"].values),
        "omega_exponent": finite_or_none(f["omega_exponent"].values),
        "mu_exponent": finite_or_none(f["mu_exponent"].values),
        "omega_exponent_check": finite_or_none(f["omega_exponent_check"].values),
        "mu_exponent_check": finite_or_none(f["mu_exponent_check"].values),
        "grad_norm_end": finite_or_none(flow_grad[-1]),
        "grad_norm_run_end": finite_or_none(flow_grad[at_run_end]),
        "excess_end": finite_or_none(f["excess"].values[-1]),
        "excess_run_end": finite_or_none(f["excess"].values[at_run_end]),
        "mc_gap": finite_or_none(f["mc_gap"].values),
        "mc_gap_long": finite_or_none(f["mc_gap_long"].values),
        "clean_onset": finite_or_none(f["clean_onset"].values),
        "clean_end": finite_or_none(f["clean_end"].values),
        "tasks": [
            {
                "task": i,
                "warmup_end": finite_or_none(warm[i]),
                "emergence_end": finite_or_none(emer[i]),
                "speedup": _speedup(finite_or_none(warm[i]), finite_or_none(emer[i]), fractions),
            }
            for i in range(len(warm))
        ],
        "n_eff_run_end": winners_neff(at_run_end),
        "n_eff_end": winners_neff(len(times) - 1),
        "flow_gd_gap": finite_or_none(f["flow_gd_gap"].values),
        "train_gd_gap": finite_or_none(f["train_gd_gap"].values),
        "train_flow_gap": finite_or_none(f["train_flow_gap"].values),
        "train_flow_gap_run": finite_or_none(f["train_flow_gap_run"].values),
        "trained_grad_norm_end": finite_or_none(trained_grad[-1]) if trained_grad.size else None,
        "trained_relative_change": trained_change,
        "gd_status": str(f.attrs.get("gd_status", "")),
        "surrogate_valid_until": finite_or_none(f["surrogate_valid_until"].values)
        if "surrogate_valid_until" in f
        else None,
        "limit_rtol": finite_or_none(
            json.loads(f.attrs.get("flow_settings", "{}")).get("limit_rtol")
        ),
        "drift_exponent": finite_or_none(
            json.loads(f.attrs.get("flow_settings", "{}")).get("drift_exponent")
        ),
        "surrogate_tolerance": finite_or_none(f.attrs.get("surrogate_tolerance")),
    }


def measure_stream_spread(runs: Sequence[RunData]) -> dict[str, Any]:
    """Seed-to-seed spread of training at one init: runs that differ only in their data stream
    (``data_stream``), compared pairwise at the first run's record times (the second interpolated)
    up to the earlier emergence end of the two: the largest |p_i(a) - p_i(b)| of each pair."""
    usable = [r for r in runs if r.spectral is not None and "signal" in r.spectral]
    pairs = []
    for a in range(len(usable)):
        for b in range(a + 1, len(usable)):
            sa, sb = usable[a].spectral, usable[b].spectral
            ta, tb = sa["time"].values.astype(float), sb["time"].values.astype(float)
            ends = [
                np.nanmax(x["emergence_end"].values)
                for x in (sa, sb)
                if np.isfinite(x["emergence_end"].values).any()
            ]
            limit = min(ends) if ends else min(ta[-1], tb[-1])
            common = ta[(ta <= limit) & (ta <= tb[-1])]
            if common.size == 0:
                continue
            pa = sa["signal"].transpose("time", "task").values[: common.size]
            signal_b = sb["signal"].transpose("time", "task").values
            pb = np.stack(
                [np.interp(common, tb, signal_b[:, i]) for i in range(signal_b.shape[1])], axis=1
            )
            pairs.append(
                {"runs": [usable[a].run, usable[b].run], "gap": float(np.nanmax(np.abs(pa - pb)))}
            )
    gaps = [p["gap"] for p in pairs]
    return {
        "runs": [r.run for r in usable],
        "pairs": pairs,
        "median_gap": float(np.median(gaps)) if gaps else None,
        "max_gap": float(np.max(gaps)) if gaps else None,
    }


def measure_flow_regimes(runs: Sequence[RunData]) -> dict[str, Any]:
    """n_eff / L of each task's winning head along the noiseless flow, at the run's own last record
    and at the flow's horizon, against the noise level; Spearman correlations with sigma."""
    points = []
    for r in distinct_flows(runs):
        m = measure_flow(r)
        for i, (at_run, at_end) in enumerate(zip(m["n_eff_run_end"], m["n_eff_end"])):
            points.append(
                {
                    "run": r.run,
                    "task": i,
                    "noise_std": num(r.params.get("noise_std")),
                    "neff_run_end": at_run,
                    "neff_end": at_end,
                    "time": m["run_end"],
                    "horizon": m["horizon"],
                    "mc_gap": m["mc_gap"],
                }
            )
    levels = sorted({p["noise_std"] for p in points})
    by_noise = []
    for level in levels:
        mine = [p for p in points if p["noise_std"] == level]
        by_noise.append(
            {
                "noise_std": level,
                "mean_neff_run_end": float(np.nanmean([num(p["neff_run_end"]) for p in mine])),
                "mean_neff_end": float(np.nanmean([num(p["neff_end"]) for p in mine])),
                "points": len(mine),
            }
        )
    sigma = [p["noise_std"] for p in points]
    return {
        "points": points,
        "noise_levels": levels,
        "by_noise": by_noise,
        "spearman_run_end": _spearman(sigma, [num(p["neff_run_end"]) for p in points]),
        "spearman_end": _spearman(sigma, [num(p["neff_end"]) for p in points]),
    }


def clean_window(spectral: xr.Dataset, purity_threshold: float) -> tuple[float, float] | None:
    """First and last recorded time at which every task's purity is >= the threshold (with distinct
    winners for H >= I): the window in which the allocation is clean (None if it never is)."""
    share = spectral["share"].transpose("time", "head", "task").values
    heads, tasks = share.shape[1], share.shape[2]
    purity = np.nanmax(share, axis=1)
    winners = np.nanargmax(np.where(np.isfinite(share), share, -np.inf), axis=1)
    distinct = (
        np.array([len(set(w)) == tasks for w in winners])
        if heads >= tasks
        else np.ones(len(share), dtype=bool)
    )
    clean = (np.nan_to_num(purity, nan=-1.0) >= purity_threshold).all(axis=1) & distinct
    if not clean.any():
        return None
    times = np.asarray(spectral["time"].values, dtype=float)
    index = np.flatnonzero(clean)
    return float(times[index[0]]), float(times[index[-1]])


def flow_ratios(opt: xr.Dataset) -> list[dict[str, Any]]:
    """Per configuration with an exact flow: excess(flow at its horizon) / excess(best in class)
    and its interval."""
    if "optimality_ratio_flow" not in opt:
        return []
    x_name, x = _swept(opt)
    out = []
    for k in np.argsort(x, kind="stable"):
        ratio, low, high = (
            float(opt[f"optimality_ratio_flow{suffix}"].values[k])
            for suffix in ("", "_low", "_high")
        )
        if math.isfinite(ratio):
            out.append(
                {
                    "x_name": x_name,
                    "x": x[k].item(),
                    "ratio": ratio,
                    "low": low,
                    "high": high,
                    "trained": float(opt["optimality_ratio"].values[k]),
                    "key": _configuration_key(opt, int(k)),
                }
            )
    return out


def ode_applies(params: Mapping[str, Any]) -> bool:
    """Runs the spectral ODE describes: decomposable init, gradient descent (gradient flow), linear
    target, and the reduced or linear model (``full`` has another metric; see spectral.nc
    ode_model)."""
    params = complete_run(params)
    return (
        str(params["init"]) == "decomposable"
        and str(params["optimizer"]) == "gd"
        and str(params["target"]) == "linear"
        and str(params["model"]) in ("reduced", "linear")
    )


# ---------------------------------------------------------------------------------------------
# Q1 beyond the one-layer model: head ablation on a transformer and on real-data prompts


def _purity_bounds(increase: np.ndarray, se: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per task (I,), the purity with every risk increase moved two standard errors: the highest
    any head can reach (its increase up, the others down) and the lowest the winner can fall to
    (its increase down, the others up); 0 where nothing is left positive."""
    up, down = np.clip(increase + 2 * se, 0.0, None), np.clip(increase - 2 * se, 0.0, None)
    heads, tasks = increase.shape
    best, worst = np.zeros(tasks), np.zeros(tasks)
    winner = np.argmax(increase, axis=0)
    for i in range(tasks):
        for h in range(heads):
            total = up[h, i] + down[:, i].sum() - down[h, i]
            best[i] = max(best[i], up[h, i] / total if total > 0 else 0.0)
        w = winner[i]
        total = down[w, i] + up[:, i].sum() - up[w, i]
        worst[i] = down[w, i] / total if total > 0 else 0.0
    return best, worst


def _ablation_layer(
    increase: np.ndarray,
    se: np.ndarray,
    winner: np.ndarray,
    purity: np.ndarray,
    layer: int,
    purity_threshold: float,
) -> dict:
    """One layer's allocation by ablation: winners, purity, clean or not, and whether the noise
    decides that (``_purity_bounds``): a clean layer when every winner's purity stays above the
    threshold with the increases moved two standard errors against it; an unclean one when some
    task's purity stays below it with them moved in any head's favour, or when one head keeps the
    majority of two tasks either way (H >= I)."""
    heads = increase.shape[0]
    winner, purity = np.asarray(winner, dtype=np.int64), np.asarray(purity, dtype=float)
    clean = allocation_is_clean(winner, purity, heads, purity_threshold)
    best, worst = _purity_bounds(increase, se)
    if clean:
        decided = bool(np.all(worst >= purity_threshold))
    else:
        robust = [int(h) for h, w in zip(winner, worst) if h >= 0 and w > 0.5]
        shared = heads >= len(winner) and len(set(robust)) < len(robust)
        decided = bool(np.any(best < purity_threshold)) or shared
    return {
        "layer": layer,
        "winner": winner.tolist(),
        "purity": purity.tolist(),
        "purity_low": worst.tolist(),
        "purity_high": best.tolist(),
        "clean": clean,
        "decided": decided,
    }


def _layer_states(ab: xr.Dataset, purity_threshold: float, over_time: bool = False) -> list:
    """``_ablation_layer`` of every layer of ablation.nc, at the end or (``over_time``) at every
    snapshot (a list per snapshot)."""
    suffix = "_over_time" if over_time else ""
    lead = ("snapshot",) if over_time else ()
    increase, se = (
        ab[f"{name}{suffix}"].transpose(*lead, "layer", "head", "task").values
        for name in ("risk_increase", "risk_increase_se")
    )
    winner, purity = (
        ab[f"{name}{suffix}"].transpose(*lead, "layer", "task").values
        for name in ("winner", "purity")
    )

    def states(k=None):
        pick = (lambda a: a[k]) if over_time else (lambda a: a)
        inc, err, win, pur = pick(increase), pick(se), pick(winner), pick(purity)
        return [
            _ablation_layer(inc[n], err[n], win[n], pur[n], n, purity_threshold)
            for n in range(inc.shape[0])
        ]

    return [states(k) for k in range(increase.shape[0])] if over_time else states()


def measure_practical(runs: Sequence[RunData], purity_threshold: float) -> dict[str, Any]:
    """Per run of the practical experiments (ablation.nc): the risk against ridge and OLS on the
    same evaluation set (the ratio's error from the paired per-prompt gap), and the allocation by
    ablation in every layer, at the end and at the snapshots over training. A run splits the tasks
    when it has learned (risk two standard errors below predicting zero) and some layer is clean
    and decided (``_ablation_layer``); it does not when it has learned and every layer is decided
    unclean; otherwise it is undecided. On the one-layer models: the largest gap between ablation
    and spectral shares."""
    out = []
    for r in runs:
        ab = r.ablation
        if ab is None:
            continue
        layers = _layer_states(ab, purity_threshold)
        risk = np.asarray(ab["risk"].values, dtype=float)
        base = {
            str(name): float(np.mean(ab["baseline_risk"].sel(baseline=name).values))
            for name in ab["baseline"].values
        }
        ridge, zero = base.get("ridge_tuned", math.nan), base.get("zero", math.nan)
        mean_risk = float(np.mean(risk))
        mean_se = (
            float(ab["risk_mean_se"])
            if "risk_mean_se" in ab
            else float(np.sqrt(np.sum(ab["risk_se"].values ** 2)) / len(risk))
        )
        gap_se = (
            float(ab["baseline_gap_se"].sel(baseline="ridge_tuned"))
            if "baseline_gap_se" in ab
            else math.nan
        )
        learned = bool(mean_risk < zero - 2 * mean_se) if math.isfinite(zero) else True
        share_gap = (
            float(np.nanmax(np.abs(ab["share"].values[0] - ab["spectral_share"].values)))
            if "spectral_share" in ab
            else None
        )
        splits = [s for s in layers if s["clean"] and s["decided"]] if learned else []
        decided = learned and (bool(splits) or all(s["decided"] for s in layers))
        # snapshots over training once the run has learned (past half of its drop in risk from
        # predicting zero to the end): with a clean, decided layer, or a clean undecided one
        clean_times, clean_undecided = [], []
        if "purity_over_time" in ab:
            reached = np.mean(ab["risk_over_time"].values, axis=1) <= (zero + mean_risk) / 2
            times = np.asarray(ab["snapshot_time"].values, dtype=float)
            for k, states in enumerate(_layer_states(ab, purity_threshold, over_time=True)):
                if not reached[k]:
                    continue
                if any(s["clean"] and s["decided"] for s in states):
                    clean_times.append(float(times[k]))
                elif any(s["clean"] for s in states):
                    clean_undecided.append(float(times[k]))
        out.append(
            {
                "run": r.run,
                "experiment": r.experiment,
                "model": str(r.params["model"]),
                "layers": len(layers),
                "data": str(r.params.get("data", "synthetic")),
                "context_length": int(r.params["context_length"]),
                "risk": mean_risk,
                "risk_se": mean_se,
                "risk_task": risk.tolist(),
                "baselines": base,
                "ridge_ratio": mean_risk / ridge if ridge > 0 else math.nan,
                "ridge_ratio_se": gap_se / ridge if ridge > 0 else math.nan,
                "learned": learned,
                "allocation": layers,
                "splits": bool(splits),
                "split_layer": splits[0]["layer"] if splits else None,
                "decided": decided,
                "clean_times": clean_times,
                "clean_undecided_times": clean_undecided,
                "snapshots": int(ab.sizes.get("snapshot", 0)),
                "spectral_gap": finite_or_none(share_gap),
                "status": str(ab.attrs.get("status", "unknown")),
            }
        )
    return {
        "runs": out,
        "split": sum(r["splits"] for r in out),
        "transient": sum(bool(r["clean_times"]) and not r["splits"] for r in out),
        "total": len(out),
        "threshold": purity_threshold,
    }
