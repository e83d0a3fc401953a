"""The verdict table: one row per claim C1-C9, decided from the netCDF files by stated thresholds.

This module holds (the report plan, claims and thresholds are in ``report``)

* the **measurements** (``measure_*``): the numbers a figure's caption quotes and a verdict uses,
  computed from train.nc / spectral.nc / optimality.nc, so the two never disagree;
* the **verdicts** (``verdict_c1`` ... ``verdict_c9``) and the HTML table.

A verdict is ``holds``, ``holds partly``, ``does not hold`` or ``not measured`` (its experiment is
absent or its data are missing). Thresholds come from the config's ``verdicts`` section; their
defaults are ``report.DEFAULT_THRESHOLDS`` (the schema carries the same values; a test checks that).
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np

from . import convergence
from .report import CLAIMS, DEFAULT_THRESHOLDS, FIGURE_KINDS, as_list, thresholds

if TYPE_CHECKING:
    import xarray as xr

HOLDS, PARTLY, FAILS, INCONCLUSIVE, UNMEASURED = "holds", "holds partly", "does not hold", "inconclusive", "not measured"
VERDICT_ORDER = (HOLDS, PARTLY, FAILS, INCONCLUSIVE, UNMEASURED)
FLOW, TRAINED, BOTH = "exact flow", "trained runs", "exact flow and trained runs"

AXIS_SHORT = {"context_length": "L", "heads": "H", "tasks": "I", "noise_std": "σ", "task_dim": "d_i"}
AXIS_LABELS = {
    "context_length": "training context length L (tokens)",
    "L": "context length L (tokens)",
    "heads": "number of heads H",
    "tasks": "number of tasks I",
    "noise_std": "noise σ (output units)",
    "task_dim": "task dimension d_i",
}
PREDICTOR_LABELS = {
    "trained": "trained (gradient flow)",
    "best": "best multi-head in class",
    "best_in_class": "best multi-head in class",
    "single_head": "best single head",
    "allocated": "one head per task",
    "linear_attention": "linear attention / one-step GD",
    "debiased_gd": "debiased GD",
    "bayes": "Bayes optimal",
    "ols_block": "OLS per block",
    "ols_full": "OLS on all covariates",
}


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


def _opt(value: Any) -> float | None:
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


def _verdict_from_fraction(passed: int, total: int, partly: float) -> str:
    if total == 0:
        return UNMEASURED
    if passed == total:
        return HOLDS
    if passed / total >= partly and passed > 0:
        return PARTLY
    return FAILS


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
    flow: xr.Dataset | None = None  # flow.nc: the exact spectral flow from the run's omega(0), mu(0)

    @property
    def experiment(self) -> str:
        return self.run.split("/")[0]


EVALUATION_ONLY_KEYS = ("eval_prompts", "eval_seed", "eval_lengths")


def training_key(run: RunData) -> str:
    """Runs whose parameters differ only in how they are evaluated follow one trajectory (same seed,
    same data stream), so claims that count runs count each trajectory once. Without parameters a run
    stands for itself."""
    if not run.params:
        return run.run
    return json.dumps({k: v for k, v in run.params.items() if k not in EVALUATION_ONLY_KEYS}, sort_keys=True, default=str)


def distinct_runs(runs: Sequence[RunData]) -> list[RunData]:
    """The first run of each training configuration (see ``training_key``), in the given order."""
    seen: set[str] = set()
    out = []
    for r in runs:
        key = training_key(r)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def load_run(run: str, train: str | Path | None, spectral: str | Path | None = None, lengths: str | Path | None = None,
             flow: str | Path | None = None) -> RunData:
    import xarray as xr

    def load(path):
        if path is None:
            return None
        with xr.open_dataset(path) as ds:
            return ds.load()

    train_ds = load(train)
    spectral_ds = load(spectral)
    source = train_ds if train_ds is not None else spectral_ds
    params = json.loads(source.attrs["config"]) if source is not None and "config" in source.attrs else {}
    return RunData(run, train_ds, spectral_ds, params, load(lengths), load(flow))


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
    return convergence.relative_change_last_tenth(train["time"].values, convergence.flat_parameters(train))


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


def measure_suite_convergence(runs: Sequence[RunData], rtol: float) -> dict[str, Any]:
    """Every run's convergence evidence (``runs``, for the figure); the counts are over distinct
    training configurations (``distinct_runs``)."""
    distinct = {r.run for r in distinct_runs(runs)}
    rows = []
    for r in runs:
        c = measure_convergence(r.train)
        optimizer = str(r.params.get("optimizer", "gd"))
        rows.append({
            "run": r.run, "experiment": r.experiment, "optimizer": optimizer,
            "relative_change": c["relative_change"], "grad_norm": c["grad_norm"], "status": c["status"],
            "converged": bool(c["status"] != "diverged" and c["relative_change"] < rtol),
            "distinct": r.run in distinct,
        })
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
        "threshold": rtol,
    }


# ---------------------------------------------------------------------------------------------
# C2 phases


def phase_fractions(spectral: xr.Dataset | None) -> tuple[float, float]:
    """The fractions of its rise at which spectral.nc ends a task's warm-up and emergence."""
    settings = json.loads(spectral.attrs.get("spectral_settings", "{}")) if spectral is not None else {}
    return float(settings.get("warmup_fraction", 0.1)), float(settings.get("emergence_fraction", 0.9))


def measure_phases(spectral: xr.Dataset | None, train: xr.Dataset | None, speedup: float = DEFAULT_THRESHOLDS["emergence_speedup"]) -> dict[str, Any]:
    """Per task (spectral.nc): warm-up end t_w, emergence end t_e (None = no emergence) and the
    emergence's speed-up, the mean rise rate of p_i during emergence over that during warm-up:
    ((f_e - f_w) / (t_e - t_w)) / (f_w / t_w) with the fractions f of spectral.nc (0.1, 0.9), so
    8 t_w / (t_e - t_w); sharp when at least ``speedup``. Plus the loss-based phase ends
    (spectral.nc ``loss_warmup_end`` / ``loss_emergence_end``, read at the same fractions)."""
    phases: dict[str, Any] = {"loss": {"warmup_end": None, "emergence_end": None, "source": "no spectral.nc"}}
    if spectral is not None and "loss_warmup_end" in spectral and "loss_emergence_end" in spectral:
        phases["loss"] = {
            "warmup_end": _opt(spectral["loss_warmup_end"].values),
            "emergence_end": _opt(spectral["loss_emergence_end"].values),
            "source": "spectral.nc loss_warmup_end / loss_emergence_end",
        }
    f_w, f_e = phase_fractions(spectral)
    tasks = []
    if spectral is not None and "warmup_end" in spectral and "emergence_end" in spectral:
        warm = np.asarray(spectral["warmup_end"].values, dtype=float).reshape(-1)
        emer = np.asarray(spectral["emergence_end"].values, dtype=float).reshape(-1)
        for i in range(warm.size):
            w, e = _opt(warm[i]), _opt(emer[i])
            ratio = ((f_e - f_w) / (e - w)) / (f_w / w) if (w is not None and e is not None and w > 0 and e > w) else None
            tasks.append({
                "task": i, "warmup_end": w, "emergence_end": e, "speedup": ratio,
                "emerged": e is not None, "sharp": ratio is not None and ratio >= speedup,
            })
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
        predicted = np.asarray(r.spectral["warmup_law_time"].values, dtype=float).reshape(-1) if "warmup_law_time" in r.spectral else np.full(measured.shape, np.nan)
        rate = np.asarray(r.spectral["warmup_rate"].values, dtype=float).reshape(-1) if "warmup_rate" in r.spectral else np.full(measured.shape, np.nan)
        sgd = np.asarray(r.spectral["warmup_law_time_sgd"].values, dtype=float).reshape(-1) if "warmup_law_time_sgd" in r.spectral else np.full(measured.shape, np.nan)
        for i, value in enumerate(measured):
            law_slopes.append(2.0 / rate[i] if rate[i] > 0 else math.nan)
            points.append({
                "run": r.run, "task": i, "init_scale": scale, "log_inv_scale": math.log(1.0 / scale),
                "warmup_end": _opt(value), "predicted": _opt(predicted[i]), "predicted_sgd": _opt(sgd[i]),
            })
    good = [p for p in points if p["warmup_end"] is not None]
    x = np.array([p["log_inv_scale"] for p in good])
    y = np.array([p["warmup_end"] for p in good])
    scales = sorted({p["init_scale"] for p in good})
    finite_slopes = [s for s in law_slopes if math.isfinite(s)]
    law_slope = float(np.mean(finite_slopes)) if finite_slopes else math.nan
    out: dict[str, Any] = {
        "points": points, "scales": scales, "fit": None, "law_slope": law_slope,
        "law_slopes_differ": bool(finite_slopes and np.ptp(finite_slopes) > 1e-9 * max(abs(law_slope), 1)),
        "law_intercept": math.nan, "relative_slope_error": math.nan, "agrees": None,
        "missing": len(points) - len(good), "threshold": slope_rtol,
        "warmup_fraction": phase_fractions(next((r.spectral for r in runs if r.spectral is not None), None))[0],
    }
    if len(scales) >= 2 and len(good) >= 3:
        A = np.vstack([np.ones_like(x), x]).T
        coef, *_ = np.linalg.lstsq(A, y, rcond=None)
        resid = y - A @ coef
        dof = max(len(y) - 2, 1)
        cov = (resid @ resid / dof) * np.linalg.inv(A.T @ A)
        r2 = 1 - (resid @ resid) / max(((y - y.mean()) ** 2).sum(), 1e-300)
        out["fit"] = {"intercept": float(coef[0]), "slope": float(coef[1]), "slope_se": float(math.sqrt(max(cov[1, 1], 0))), "r2": float(r2)}
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
        tasks.append({
            "task": i, "winner": int(winner[i]), "purity_end": _opt(purity[i]),
            "winner_emergence": int(winner_em[i]) if _opt(purity_em[i]) is not None else None,
            "purity_emergence": _opt(purity_em[i]), "warmup_end": _opt(warm[i]), "emergence_end": _opt(emer[i]),
        })

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

    residual = spectral["decomposability_residual"].values if "decomposability_residual" in spectral else None
    return {
        "heads": heads, "tasks": tasks, "threshold": purity_threshold,
        "clean_end": clean("purity_end", "winner"), "clean_emergence": clean("purity_emergence", "winner_emergence"),
        "min_purity_end": lowest("purity_end"), "min_purity_emergence": lowest("purity_emergence"),
        "final_residual": _opt(np.nanmax(residual[-1])) if residual is not None and np.isfinite(residual[-1]).any() else None,
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
        rows.append({
            "run": r.run, "x": r.params.get(key), "purity_emergence": alloc["min_purity_emergence"], "purity_end": alloc["min_purity_end"],
            "purity_cleanest": _opt(r.spectral["cleanest_purity"].values) if "cleanest_purity" in r.spectral else None,
            "clean_emergence": alloc["clean_emergence"], "clean_end": alloc["clean_end"],
            "clean_from": window[0] if window else None, "clean_until": window[1] if window else None,
            "drift_time": drift_time(r.spectral, purity_threshold), "final_time": float(r.spectral["time"].values[-1]),
        })
    numeric = all(isinstance(row["x"], (int, float)) and not isinstance(row["x"], bool) for row in rows)
    return {"x_name": key, "varied": varied, "numeric": numeric, "runs": rows, "threshold": purity_threshold,
            "clean_end": sum(r["clean_end"] for r in rows), "clean_emergence": sum(r["clean_emergence"] for r in rows), "total": len(rows)}


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
        snaps.append({"label": "initialisation (no phase detected)", "index": 0, "time": float(times[0])})
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
        cleanest = _opt(r.spectral["cleanest_purity"].values) if "cleanest_purity" in r.spectral else None
        for i, (obs, pred) in enumerate(zip(observed, r.spectral["predicted_winner"].values.reshape(-1))):
            if _finite(obs) and _finite(pred):
                pairs.append({"run": r.run, "task": i, "observed": int(obs), "predicted": int(pred), "cleanest_purity": cleanest})
    confusion = np.zeros((heads, heads), dtype=int)
    for p in pairs:
        confusion[p["predicted"], p["observed"]] += 1
    agree = sum(p["observed"] == p["predicted"] for p in pairs)
    purities = [p["cleanest_purity"] for p in pairs if p["cleanest_purity"] is not None]
    return {
        "pairs": pairs, "heads": heads, "confusion": confusion.tolist(), "agree": int(agree), "total": len(pairs),
        "agreement": agree / len(pairs) if pairs else math.nan, "chance": 1.0 / heads, "runs": sorted({p["run"] for p in pairs}),
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
        "gap_through_emergence": _opt(spectral["ode_agreement_emergence"].values) if "ode_agreement_emergence" in spectral else None,
        "per_task": [_opt(v) for v in per_task],
        "final_signal": [_opt(v) for v in signal[-1]] if signal is not None else [],
        "final_signal_ode": [_opt(v) for v in signal_ode[-1]] if signal_ode is not None else [],
        "status": str(spectral.attrs.get("ode_status", "")),
        "model": str(spectral.attrs.get("ode_model", "")),
        "judged_for_c7": ode_applies(json.loads(spectral.attrs.get("config", "{}"))),
    }


def measure_surrogate(check: xr.Dataset | None) -> dict[str, Any]:
    """The Monte-Carlo check of the finite-L surrogate (results/theory/surrogate_check.nc): every
    grid point's relative gap and saturation index, and how many agree within its tolerance."""
    if check is None or "relative_gap" not in check:
        return {"available": False, "points": [], "agree": 0, "total": 0}
    flat = check.to_dataframe().reset_index()
    tolerance = _opt(json.loads(check.attrs.get("config", "{}")).get("tolerance"))
    points = []
    for row in flat.itertuples(index=False):
        row = row._asdict()
        points.append({
            "pattern": str(row.get("pattern", "")), "task_dim": _opt(row.get("task_dim")), "context_length": _opt(row.get("context_length")),
            "omega": _opt(row.get("omega")), "relative_gap": _opt(row.get("relative_gap")), "saturation_index": _opt(row.get("saturation_index")),
            "agrees": bool(row.get("agrees")), "conclusive": bool(row.get("conclusive", True)),
        })
    agree = [p for p in points if p["agrees"]]
    fail = [p for p in points if not p["agrees"]]
    return {
        "available": True, "points": points, "agree": len(agree), "total": len(points), "tolerance": tolerance,
        "conclusive": sum(p["conclusive"] for p in points), "summary": str(check.attrs.get("summary", "")),
        "max_saturation_agreeing": max((p["saturation_index"] for p in agree if p["saturation_index"] is not None), default=None),
        "min_saturation_failing": min((p["saturation_index"] for p in fail if p["saturation_index"] is not None), default=None),
        "max_omega_agreeing": max((p["omega"] for p in agree if p["omega"] is not None), default=None),
        "min_omega_failing": min((p["omega"] for p in fail if p["omega"] is not None), default=None),
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
    candidates = [n for n in [*prefer, "context_length", "heads", "tasks", "noise_std", "task_dim"]
                  if n in opt.variables and opt[n].dims == (dim,) and np.issubdtype(opt[n].dtype, np.number)]
    for name in candidates:
        if np.unique(opt[name].values).size > 1:
            return name, np.asarray(opt[name].values)
    if candidates:
        return candidates[0], np.asarray(opt[candidates[0]].values)
    return dim, np.arange(opt.sizes[dim])


def _first(opt: xr.Dataset, *names: str) -> np.ndarray | None:
    var = _var(opt, *names)
    return None if var is None else np.asarray(var.values, dtype=float)


def _ratio_with_interval(opt: xr.Dataset, name: str, numerator: str, denominator: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A ratio of optimality.nc with its interval; for a file without it, numerator / denominator of
    the excess risks, with no interval (low = high = ratio)."""
    ratio, low, high = (_first(opt, f"{name}{suffix}") for suffix in ("", "_low", "_high"))
    if ratio is None:
        top, bottom = _first(opt, numerator), _first(opt, denominator)
        ratio = top / bottom if top is not None and bottom is not None else np.full(x.shape, math.nan)
    return ratio, (ratio if low is None else low), (ratio if high is None else high)


def measure_optimality(opt: xr.Dataset, max_ratio: float) -> dict[str, Any]:
    """excess(trained) / excess(best in class) per configuration with its interval."""
    x_name, x = _swept(opt)
    ratio, low, high = _ratio_with_interval(opt, "optimality_ratio", "excess_trained", "excess_best_in_class", x)
    order = np.argsort(x, kind="stable")
    # within the factor, and not significantly below 1 (that would mean the search missed the best)
    passed = [bool(1.0 <= h <= max_ratio) for h in high[order] if math.isfinite(h)]
    return {
        "x_name": x_name, "x": x[order].tolist(), "ratio": ratio[order].tolist(), "low": low[order].tolist(), "high": high[order].tolist(),
        "passed": sum(passed), "total": len(passed), "max_ratio": float(np.nanmax(ratio)) if np.isfinite(ratio).any() else math.nan,
        "max_high": float(np.nanmax(high)) if np.isfinite(high).any() else math.nan, "threshold": max_ratio,
        "below_one": int(sum(h < 1.0 for h in high if math.isfinite(h))),
        "confidence": _opt(opt.attrs.get("confidence")), "sanity_violations": str(opt.attrs.get("sanity_violations", "not recorded")),
        "keys": [_configuration_key(opt, k) for k in order],
    }


def _configuration_key(opt: xr.Dataset, index: int) -> str:
    """What identifies one configuration across optimality files: its class parameters (the
    non-index coordinates on ``config``) and its trained excess risk (equal only for the same runs)."""
    coords = {name: np.asarray(c.values)[index].item() for name, c in opt.coords.items() if c.dims == ("config",) and name != "config"}
    return json.dumps({**coords, "excess_trained": float(opt["excess_trained"].values[index])}, sort_keys=True, default=str)


def measure_baselines(opt: xr.Dataset) -> dict[str, Any]:
    """Excess risk (and SE) of every predictor in the file, against the swept parameter."""
    x_name, x = _swept(opt, prefer=("context_length",))
    order = np.argsort(x, kind="stable")
    predictors = {}
    for name in opt.data_vars:
        if not name.startswith("excess_") or name.endswith("_se"):
            continue
        key = name[len("excess_"):]
        se = _first(opt, f"{name}_se")
        values = np.asarray(opt[name].values, dtype=float)
        if values.shape != x.shape:
            continue
        predictors[key] = {"excess": values[order].tolist(), "se": (se[order] if se is not None else np.zeros_like(values)).tolist()}
    return {"x_name": x_name, "x": x[order].tolist(), "predictors": predictors,
            "sanity_violations": str(opt.attrs.get("sanity_violations", "not recorded"))}


def measure_separation(opt: xr.Dataset, min_ratio: float) -> dict[str, Any]:
    """excess(best single head) / excess(best multi-head, the best in class) per number of tasks with its interval."""
    x_name, x = _swept(opt, prefer=("tasks",))
    ratio, low, high = _ratio_with_interval(opt, "separation_ratio", "excess_single_head", "excess_best_in_class", x)
    order = np.argsort(x, kind="stable")
    multi_task = [k for k in order if x_name != "tasks" or x[k] >= 2]
    passed = [bool(low[k] > min_ratio) for k in multi_task if math.isfinite(low[k])]
    return {
        "x_name": x_name, "x": x[order].tolist(), "ratio": ratio[order].tolist(), "low": low[order].tolist(), "high": high[order].tolist(),
        "passed": sum(passed), "total": len(passed), "threshold": min_ratio,
        "increasing": bool(np.all(np.diff(ratio[order]) > 0)) if len(order) > 1 else None,
        "confidence": _opt(opt.attrs.get("confidence")), "sanity_violations": str(opt.attrs.get("sanity_violations", "not recorded")),
        "keys": [_configuration_key(opt, k) for k in order],
    }


def _configuration_key(opt: xr.Dataset, index: int) -> str:
    """What identifies one configuration across optimality files: its class parameters (the
    non-index coordinates on ``config``) and its trained excess risk (equal only for the same runs)."""
    coords = {name: np.asarray(c.values)[index].item() for name, c in opt.coords.items() if c.dims == ("config",) and name != "config"}
    return json.dumps({**coords, "excess_trained": float(opt["excess_trained"].values[index])}, sort_keys=True, default=str)


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
        dims = r.params.get("task_dim", 1)
        L = int(r.params.get("context_length", 0))
        for i, h in enumerate(np.asarray(s["winner"].values).reshape(-1)):
            h = int(h)
            if h < 0:
                continue
            d_i = float(dims[i] if isinstance(dims, list) else dims)
            points.append({
                "run": r.run, "task": i, "head": h, "noise_std": num(r.params.get("noise_std")), "context_length": L,
                "neff_over_L": _opt(final[h]), "omega2d": float(omega[h, i] ** 2 * d_i),
            })
    rho = _spearman([p["noise_std"] for p in points], [num(p["neff_over_L"]) for p in points])
    levels = sorted({p["noise_std"] for p in points})
    by_noise = []
    for level in levels:
        mine = [p for p in points if p["noise_std"] == level]
        neff = [p["neff_over_L"] for p in mine if p["neff_over_L"] is not None]
        by_noise.append({"noise_std": level, "mean_neff_over_L": float(np.mean(neff)) if neff else math.nan,
                         "mean_omega2d": float(np.mean([p["omega2d"] for p in mine])), "points": len(mine)})
    return {"points": points, "spearman": rho, "noise_levels": levels, "by_noise": by_noise, "threshold": min_corr}


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
        se = np.asarray(ds["risk_se"].values, dtype=float) if "risk_se" in ds else np.zeros_like(excess)
        L = int(ds.attrs.get("train_context_length", r.params.get("context_length", 0)))
        k = int(np.argmin(np.abs(lengths - L))) if lengths.size else 0
        at_train = excess[k] if lengths.size and lengths[k] == L else math.nan
        longer = excess[lengths > L]
        worst = float(np.max(longer / at_train)) if longer.size and at_train > 0 else math.nan
        out_runs.append({
            "run": r.run, "lengths": lengths.tolist(), "excess": excess.tolist(), "se": se.tolist(), "train_length": L,
            "excess_at_train": _opt(at_train), "worst_ratio_longer": _opt(worst),
            "passed": bool(math.isfinite(worst) and worst <= max_ratio),
        })
    return {"runs": out_runs, "passed": sum(r["passed"] for r in out_runs), "total": len(out_runs), "threshold": max_ratio}


def measure_comparison(runs: Sequence[RunData], purity_threshold: float) -> dict[str, Any]:
    """Final risk, excess and purity of every run of an experiment, grouped by what it varies."""
    varied = varied_keys(runs)
    rows = []
    for r in runs:
        group = ", ".join(f"{k}={r.params.get(k)}" for k in varied) or str(r.params.get("model", "run"))
        c = measure_convergence(r.train)
        purity = np.asarray(r.spectral["purity"].values, dtype=float).reshape(-1).tolist() if r.spectral is not None and "purity" in r.spectral else []
        rows.append({
            "run": r.run, "group": group, "model": r.params.get("model"), "target": r.params.get("target"),
            "final_risk": c["final_risk"], "final_risk_se": c["final_risk_se"], "noise_floor": c["noise_floor"],
            "final_excess": c["final_excess"], "initial_risk": c["initial_risk"], "purity": purity,
            "clean": bool(purity) and min(purity) >= purity_threshold,
        })
    groups = list(dict.fromkeys(r["group"] for r in rows))
    return {"runs": rows, "groups": groups, "varied": ", ".join(varied), "clean": sum(r["clean"] for r in rows), "total": len(rows), "threshold": purity_threshold}


# ---------------------------------------------------------------------------------------------
# the exact flow (flow.nc): C1, C2, C5, C7, C8 on the object the claims are about

END_CLASS_NAMES = {0: "finite limit", 1: "drifting", 2: "not resolved"}
FLOW_KEYS = ("tasks", "task_dim", "noise_std", "signal", "context_length", "model", "heads")


def flow_key(run: RunData) -> str:
    """Flows of runs that start from the same omega(0), mu(0) in the same problem are one flow
    (e.g. allocation/s0 and heads/H3): count it once."""
    f = run.flow
    start = np.round(np.concatenate([f["omega"].values[0].ravel(), f["mu"].values[0].ravel()]), 12).tolist()
    return json.dumps({**{k: run.params.get(k) for k in FLOW_KEYS}, "start": start}, sort_keys=True, default=str)


def distinct_flows(runs: Sequence[RunData]) -> list[RunData]:
    seen: set[str] = set()
    out = []
    for r in runs:
        if r.flow is None:
            continue
        key = flow_key(r)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def _speedup(warm: float | None, emer: float | None, fractions: tuple[float, float]) -> float | None:
    """Mean rise rate of p_i during emergence over that during warm-up (see measure_phases)."""
    f_w, f_e = fractions
    if warm is None or emer is None or warm <= 0 or emer <= warm:
        return None
    return ((f_e - f_w) / (emer - warm)) / (f_w / warm)


def _relative_change_last_tenth(times: np.ndarray, omega: np.ndarray, mu: np.ndarray) -> float:
    theta = np.concatenate([omega.reshape(len(times), -1), mu.reshape(len(times), -1)], axis=1)
    return convergence.relative_change_last_tenth(times, theta)


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
        return [_opt(neff[k, h]) if h >= 0 else None for h in winners[k]]

    settings = json.loads(s.attrs.get("spectral_settings", "{}")) if s is not None else {}
    fractions = (float(settings.get("warmup_fraction", 0.1)), float(settings.get("emergence_fraction", 0.9)))
    warm, emer = f["warmup_end"].values.astype(float), f["emergence_end"].values.astype(float)
    trained_change = None
    if s is not None:
        trained_change = _opt(_relative_change_last_tenth(s["time"].values.astype(float), s["omega"].transpose("time", "head", "task").values,
                                                          s["mu"].transpose("time", "head", "task").values))
    trained_grad = np.asarray(f["trained_grad_norm"].values, dtype=float)
    flow_grad = np.asarray(f["grad_norm"].values, dtype=float)
    return {
        "run": run.run, "horizon": float(times[-1]), "run_end": _opt(run_end),
        "end_class": END_CLASS_NAMES[int(f["end_class"].values)], "end_class_check": END_CLASS_NAMES[int(f["end_class_check"].values)],
        "relative_change_last_decade": _opt(f["relative_change_last_decade"].values),
        "omega_exponent": _opt(f["omega_exponent"].values), "mu_exponent": _opt(f["mu_exponent"].values),
        "omega_exponent_check": _opt(f["omega_exponent_check"].values), "mu_exponent_check": _opt(f["mu_exponent_check"].values),
        "grad_norm_end": _opt(flow_grad[-1]), "grad_norm_run_end": _opt(flow_grad[at_run_end]),
        "excess_end": _opt(f["excess"].values[-1]), "excess_run_end": _opt(f["excess"].values[at_run_end]),
        "mc_gap": _opt(f["mc_gap"].values), "mc_gap_long": _opt(f["mc_gap_long"].values),
        "clean_onset": _opt(f["clean_onset"].values), "clean_end": _opt(f["clean_end"].values),
        "tasks": [{"task": i, "warmup_end": _opt(warm[i]), "emergence_end": _opt(emer[i]),
                   "speedup": _speedup(_opt(warm[i]), _opt(emer[i]), fractions)} for i in range(len(warm))],
        "n_eff_run_end": winners_neff(at_run_end), "n_eff_end": winners_neff(len(times) - 1),
        "flow_gd_gap": _opt(f["flow_gd_gap"].values), "train_gd_gap": _opt(f["train_gd_gap"].values),
        "train_flow_gap": _opt(f["train_flow_gap"].values), "train_flow_gap_run": _opt(f["train_flow_gap_run"].values),
        "trained_grad_norm_end": _opt(trained_grad[-1]) if trained_grad.size else None,
        "trained_relative_change": trained_change,
        "gd_status": str(f.attrs.get("gd_status", "")),
        "surrogate_valid_until": _opt(f["surrogate_valid_until"].values) if "surrogate_valid_until" in f else None,
        "surrogate_tolerance": _opt(f.attrs.get("surrogate_tolerance")),
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
            ends = [np.nanmax(x["emergence_end"].values) for x in (sa, sb) if np.isfinite(x["emergence_end"].values).any()]
            limit = min(ends) if ends else min(ta[-1], tb[-1])
            common = ta[(ta <= limit) & (ta <= tb[-1])]
            if common.size == 0:
                continue
            pa = sa["signal"].transpose("time", "task").values[: common.size]
            signal_b = sb["signal"].transpose("time", "task").values
            pb = np.stack([np.interp(common, tb, signal_b[:, i]) for i in range(signal_b.shape[1])], axis=1)
            pairs.append({"runs": [usable[a].run, usable[b].run], "gap": float(np.nanmax(np.abs(pa - pb)))})
    gaps = [p["gap"] for p in pairs]
    return {"runs": [r.run for r in usable], "pairs": pairs, "median_gap": float(np.median(gaps)) if gaps else None,
            "max_gap": float(np.max(gaps)) if gaps else None}


def measure_flow_regimes(runs: Sequence[RunData]) -> dict[str, Any]:
    """n_eff / L of each task's winning head along the noiseless flow, at the run's own last record
    and at the flow's horizon, against the noise level; Spearman correlations with sigma."""
    points = []
    for r in distinct_flows(runs):
        m = measure_flow(r)
        for i, (at_run, at_end) in enumerate(zip(m["n_eff_run_end"], m["n_eff_end"])):
            points.append({"run": r.run, "task": i, "noise_std": num(r.params.get("noise_std")), "neff_run_end": at_run, "neff_end": at_end,
                           "time": m["run_end"], "horizon": m["horizon"], "mc_gap": m["mc_gap"]})
    levels = sorted({p["noise_std"] for p in points})
    by_noise = []
    for level in levels:
        mine = [p for p in points if p["noise_std"] == level]
        by_noise.append({"noise_std": level,
                         "mean_neff_run_end": float(np.nanmean([num(p["neff_run_end"]) for p in mine])),
                         "mean_neff_end": float(np.nanmean([num(p["neff_end"]) for p in mine])), "points": len(mine)})
    sigma = [p["noise_std"] for p in points]
    return {"points": points, "noise_levels": levels, "by_noise": by_noise,
            "spearman_run_end": _spearman(sigma, [num(p["neff_run_end"]) for p in points]),
            "spearman_end": _spearman(sigma, [num(p["neff_end"]) for p in points])}


# ---------------------------------------------------------------------------------------------
# the report plan


# ---------------------------------------------------------------------------------------------
# verdicts


@dataclass
class Verdict:
    claim: str
    statement: str
    measurement: str
    threshold: str
    verdict: str
    figures: list[str]
    category: str
    numbers: dict[str, Any] = field(default_factory=dict)
    judged_on: str = TRAINED  # FLOW, TRAINED or BOTH: the object the verdict was decided on
    noise_floor: str = ""  # the Monte-Carlo error, seed-to-seed spread or time step the comparison carries


def _figures_for(plan: Sequence[Mapping[str, Any]] | None, claim: str) -> list[str]:
    return [p["path"] for p in (plan or []) if FIGURE_KINDS[p["kind"]].claim == claim]


def _row(claim: str, measurement: str, threshold: str, verdict: str, plan, numbers=None, judged_on: str = TRAINED, noise_floor: str = "") -> Verdict:
    return Verdict(claim, CLAIMS[claim]["claim"], measurement, threshold, verdict, _figures_for(plan, claim), CLAIMS[claim]["category"],
                   jsonable(numbers or {}), judged_on, noise_floor)


def verdict_c1(runs: Sequence[RunData], th: Mapping[str, float], plan=None, trained: Sequence[RunData] = ()) -> Verdict:
    """On the exact flow: a finite limit (holds), a steady power-law drift (does not hold), or not
    resolved at the horizon (inconclusive), each flow counted once and only where both Monte-Carlo
    samples agree. ``trained`` runs (the allocation experiment, sized to its horizon) are reported
    by their decomposable part on the exact risk, never by the batch gradient."""
    thr = (f"the flow's (omega, mu) move by < {th['converged_rtol']:g} (relative) over its last decade of t = finite limit; "
           "||omega|| or ||mu|| ∝ t^a with a steady |a| ≥ the flow section's drift_exponent = drifting; otherwise, or when the two "
           "Monte-Carlo samples disagree, inconclusive. All flows finite = holds, all drifting = does not hold")
    flows = [measure_flow(r) for r in distinct_flows(runs)]
    if not flows:
        return _row("C1", "no exact flow in the suite (config section flow)", thr, UNMEASURED, plan, judged_on=FLOW)
    agree = [f for f in flows if f["end_class"] == f["end_class_check"]]
    finite = [f for f in agree if f["end_class"] == "finite limit"]
    drift = [f for f in agree if f["end_class"] == "drifting"]
    n = len(flows)
    if finite and len(finite) == n:
        verdict = HOLDS
    elif drift and len(drift) == n:
        verdict = FAILS
    elif finite:
        verdict = PARTLY
    elif drift:
        verdict = FAILS
    else:
        verdict = INCONCLUSIVE
    horizon = max(f["horizon"] for f in flows)
    parts = [f"{len(finite)}/{n} exact flows reach a finite limit, {len(drift)}/{n} drift, {n - len(finite) - len(drift)}/{n} not resolved or "
             f"the two samples disagree (to t = {fmt(horizon)})"]
    if drift:
        w = [f["omega_exponent"] for f in drift]
        m = [f["mu_exponent"] for f in drift]
        parts.append(f"drifting flows: ||omega|| ∝ t^{fmt(float(np.median(w)), 2)}, ||mu|| ∝ t^{fmt(float(np.median(m)), 2)} (median; ranges "
                     f"{fmt(min(w), 2)}…{fmt(max(w), 2)} and {fmt(min(m), 2)}…{fmt(max(m), 2)}), relative change over the last decade "
                     f"{fmt(float(np.median([f['relative_change_last_decade'] for f in drift])), 2)}, gradient norm at the horizon "
                     f"{fmt(float(np.median([num(f['grad_norm_end']) for f in drift])), 2)}: gradient flow has no finite limit there")
    evidence = [measure_flow(r) for r in trained if r.flow is not None]
    if evidence:
        parts.append("trained runs (decomposable part on the exact risk): population gradient norm at the last record "
                     + ", ".join(f"{fmt(e['trained_grad_norm_end'], 2)} ({e['run']}; the flow's {fmt(e['grad_norm_run_end'], 2)})" for e in evidence)
                     + "; relative change of (omega, mu) over the last tenth " + ", ".join(fmt(e["trained_relative_change"], 2) for e in evidence))
    floor = f"Monte-Carlo gap between the two samples ≤ {fmt(max(num(f['mc_gap_long']) for f in flows), 2)} in p_i; solver rtol far below it"
    numbers = {"flows": len(flows), "finite": len(finite), "drifting": len(drift), "horizon": horizon,
               "per_flow": flows, "trained": [{k: e[k] for k in ("run", "trained_grad_norm_end", "grad_norm_run_end", "trained_relative_change")} for e in evidence]}
    return _row("C1", "; ".join(parts), thr, verdict, plan, numbers, FLOW, floor)


def verdict_c2(phase_runs: Sequence[RunData], warmup_runs: Sequence[RunData], th: Mapping[str, float], plan=None,
               flow_runs: Sequence[RunData] = ()) -> Verdict:
    """Sharp emergence on the exact flow where the suite has flows (else on the trained runs), with
    phase ends from the logistic phase itself; the warm-up law's slope on the trained init-scale sweep."""
    thr = (f"every task's signal p_i rises on average ≥ {th['emergence_speedup']:g}× faster during emergence than during warm-up "
           f"(phase ends from a logistic fit of the fast rise), and the fitted slope of t* against ln(1/s) is within "
           f"{th['warmup_slope_rtol']:.0%} of the warm-up law's")
    flows = [measure_flow(r) for r in distinct_flows(flow_runs)]
    flow_pairs = [t for f in flows for t in f["tasks"]]
    trained_pairs = []
    for r in phase_runs:
        if r.spectral is not None and "warmup_end" in r.spectral:
            trained_pairs.extend(measure_phases(r.spectral, None, th["emergence_speedup"])["tasks"])
    for p in flow_pairs:
        p["sharp"] = p["speedup"] is not None and p["speedup"] >= th["emergence_speedup"]
    pairs = flow_pairs or trained_pairs
    law = measure_warmup_law(warmup_runs, th["warmup_slope_rtol"]) if warmup_runs else None
    if not pairs and (law is None or law["fit"] is None):
        return _row("C2", "no run with detected phases and no init-scale sweep", thr, UNMEASURED, plan)
    sharp = sum(bool(p["sharp"]) for p in pairs)
    speedups = [p["speedup"] for p in pairs if p["speedup"] is not None]
    source = "exact flows" if flow_pairs else "trained runs"
    parts = [f"{sharp}/{len(pairs)} (flow or run, task) pairs of the {source} emerge sharply (median speed-up "
             f"{fmt(np.median(speedups) if speedups else math.nan)}, lowest {fmt(min(speedups) if speedups else math.nan)})"]
    if flow_pairs and trained_pairs:
        trained_speed = [p["speedup"] for p in trained_pairs if p["speedup"] is not None]
        parts.append(f"trained runs: {sum(p['sharp'] for p in trained_pairs)}/{len(trained_pairs)} sharp (median speed-up "
                     f"{fmt(np.median(trained_speed) if trained_speed else math.nan)})")
    checks = [sharp == len(pairs) and len(pairs) > 0]
    partial = [sharp > 0]
    if law is not None and law["fit"] is not None:
        fit = law["fit"]
        parts.append(f"warm-up slope {fmt(fit['slope'])} ± {fmt(fit['slope_se'], 2)} against law {fmt(law['law_slope'])} (relative error {fmt(law['relative_slope_error'], 2)}, R² {fmt(fit['r2'], 3)}, {len(law['scales'])} scales, trained runs)")
        checks.append(bool(law["agrees"]))
        partial.append(bool(law["agrees"]) or fit["slope"] > 0)
    else:
        parts.append("warm-up law not measured (no init-scale sweep with ≥ 2 scales)")
        checks.append(False)
        partial.append(False)
    verdict = HOLDS if all(checks) else (PARTLY if any(partial) else FAILS)
    numbers = {"pairs": len(pairs), "sharp": sharp, "source": source, "law": {k: v for k, v in (law or {}).items() if k != "points"}}
    floor = (f"flow Monte-Carlo gap ≤ {fmt(max(num(f['mc_gap']) for f in flows), 2)} in p_i" if flows else "trained runs: batch noise")
    return _row("C2", "; ".join(parts), thr, verdict, plan, numbers, BOTH if flow_pairs else TRAINED, floor)


def verdict_c3(runs: Sequence[RunData], th: Mapping[str, float], plan=None) -> Verdict:
    thr = (f"every task's purity ≥ {th['purity']:g} with distinct winners (H ≥ I): clean at the end of training in all runs = holds; "
           f"clean at the end of emergence or during part of training (in all runs, or in ≥ {th['partly_fraction']:.0%} of runs) = holds partly")
    allocs = [(r.run, measure_allocation(r.spectral, th["purity"])) for r in runs if r.spectral is not None and "share" in r.spectral]
    if not allocs:
        return _row("C3", "no allocation experiment", thr, UNMEASURED, plan)
    n = len(allocs)
    end = sum(bool(a["clean_end"]) for _, a in allocs)
    emer = sum(bool(a["clean_emergence"]) for _, a in allocs)
    min_end = min(a["min_purity_end"] for _, a in allocs)
    em_values = [a["min_purity_emergence"] for _, a in allocs if a["min_purity_emergence"] is not None]
    windows = [clean_window(r.spectral, th["purity"]) for r in runs if r.spectral is not None and "share" in r.spectral]
    ever = sum(w is not None for w in windows)
    spans = ", ".join(f"t = {fmt(w[0])}–{fmt(w[1])}" for w in windows if w is not None)
    text = (f"clean at the end of training in {end}/{n} runs (lowest purity {fmt(min_end)}), "
            f"at the end of emergence in {emer}/{n} (lowest purity {fmt(min(em_values) if em_values else math.nan)}), "
            f"clean during part of training in {ever}/{n}" + (f" ({spans}; final t = {fmt(float(runs[0].spectral['time'].values[-1]))})" if spans else ""))
    if end == n:
        verdict = HOLDS
    elif emer == n or ever == n or max(end, emer, ever) / n >= th["partly_fraction"]:
        verdict = PARTLY
    else:
        verdict = FAILS
    return _row("C3", text, thr, verdict, plan, {"runs": n, "clean_end": end, "clean_emergence": emer, "clean_ever": ever, "min_purity_end": min_end})


def clean_window(spectral: xr.Dataset, purity_threshold: float) -> tuple[float, float] | None:
    """First and last recorded time at which every task's purity is >= the threshold (with distinct
    winners for H >= I): the window in which the allocation is clean (None if it never is)."""
    share = spectral["share"].transpose("time", "head", "task").values
    heads, tasks = share.shape[1], share.shape[2]
    purity = np.nanmax(share, axis=1)
    winners = np.nanargmax(np.where(np.isfinite(share), share, -np.inf), axis=1)
    distinct = np.array([len(set(w)) == tasks for w in winners]) if heads >= tasks else np.ones(len(share), dtype=bool)
    clean = (np.nan_to_num(purity, nan=-1.0) >= purity_threshold).all(axis=1) & distinct
    if not clean.any():
        return None
    times = np.asarray(spectral["time"].values, dtype=float)
    index = np.flatnonzero(clean)
    return float(times[index[0]]), float(times[index[-1]])


def verdict_c4(runs: Sequence[RunData], th: Mapping[str, float], plan=None) -> Verdict:
    win = measure_winners(runs)
    thr = f"agreement ≥ {th['winner_agreement']:g} = holds; above chance (1/H) = holds partly"
    if win["total"] == 0:
        return _row("C4", "no run with predicted and observed winners", thr, UNMEASURED, plan)
    a = win["agreement"]
    verdict = HOLDS if a >= th["winner_agreement"] else (PARTLY if a > win["chance"] else FAILS)
    text = (f"predicted winner = observed winner (read where the allocation was cleanest, median lowest purity there "
            f"{fmt(win['median_cleanest_purity'])}) for {win['agree']}/{win['total']} (run, task) pairs ({a:.0%}; chance {win['chance']:.0%}) "
            f"over {len(win['runs'])} runs")
    return _row("C4", text, thr, verdict, plan, {k: v for k, v in win.items() if k != "pairs"})


def _flow_ratios(opt: xr.Dataset) -> list[dict[str, Any]]:
    """Per configuration with an exact flow: excess(flow at its horizon) / excess(best in class) and its interval."""
    if "optimality_ratio_flow" not in opt:
        return []
    x_name, x = _swept(opt)
    out = []
    for k in np.argsort(x, kind="stable"):
        ratio, low, high = (float(opt[f"optimality_ratio_flow{suffix}"].values[k]) for suffix in ("", "_low", "_high"))
        if math.isfinite(ratio):
            out.append({"x_name": x_name, "x": x[k].item(), "ratio": ratio, "low": low, "high": high,
                        "trained": float(opt["optimality_ratio"].values[k]), "key": _configuration_key(opt, int(k))})
    return out


def verdict_c5(optimality: Mapping[str, xr.Dataset], th: Mapping[str, float], plan=None) -> Verdict:
    """On the exact flow's end state where the optimality files have one (a configuration passes when
    its interval's upper end is within the factor, fails when its lower end is above it, and is
    inconclusive when the interval straddles it or lies below 1); else on the trained runs."""
    flows = {name: _flow_ratios(ds) for name, ds in optimality.items()}
    if not any(flows.values()):
        return _verdict_c5_trained(optimality, th, plan)
    factor = th["optimality_ratio"]
    thr = (f"excess(exact flow at its horizon) / excess(best in class): interval within [1, {factor:g}] = passes, entirely above {factor:g} "
           f"= fails, otherwise inconclusive; all decisive configurations pass = holds, ≥ {th['partly_fraction']:.0%} = holds partly")
    seen, rows = set(), []
    for name, ratios in flows.items():
        for row in ratios:
            if row["key"] in seen:
                continue
            seen.add(row["key"])
            row["experiment"] = name
            row["state"] = "pass" if 1.0 <= row["high"] <= factor else ("fail" if row["low"] > factor else "inconclusive")
            rows.append(row)
    decisive = [r for r in rows if r["state"] != "inconclusive"]
    passed = sum(r["state"] == "pass" for r in decisive)
    verdict = _verdict_from_fraction(passed, len(decisive), th["partly_fraction"]) if decisive else INCONCLUSIVE
    text = (f"{passed}/{len(rows)} configurations with an exact flow within the factor, {len(rows) - len(decisive)} inconclusive; "
            + "; ".join(f"{r['experiment']} {AXIS_SHORT.get(r['x_name'], r['x_name'])} = {fmt(r['x'])}: flow {fmt(r['ratio'])} "
                        f"[{fmt(r['low'])}, {fmt(r['high'])}], trained at its last record {fmt(r['trained'])}" for r in rows))
    others = [n for n, ratios in flows.items() if not ratios]
    if others:
        text += "; without an exact flow (trained ratios in the figures): " + ", ".join(others)
    confidence = next((_opt(ds.attrs.get("confidence")) for ds in optimality.values()), None)
    floor = f"{fmt(confidence or math.nan, 2)} intervals from the fresh-sample standard errors of both excess risks"
    return _row("C5", text, thr, verdict, plan, {"flow_configurations": rows}, FLOW, floor)


def _verdict_c5_trained(optimality: Mapping[str, xr.Dataset], th: Mapping[str, float], plan=None) -> Verdict:
    thr = (f"upper end of the interval of excess(trained) / excess(best in class) ≤ {th['optimality_ratio']:g} in every configuration "
           f"(an interval entirely below 1 means the best-in-class search missed, and fails); holds partly when ≥ {th['partly_fraction']:.0%} pass")
    if not optimality:
        return _row("C5", "no optimality experiment", thr, UNMEASURED, plan)
    passed = total = repeated = 0
    parts, numbers, seen = [], {}, set()
    for name, ds in optimality.items():
        gap = measure_optimality(ds, th["optimality_ratio"])
        for key, high in zip(gap["keys"], gap["high"]):  # a configuration in two sweeps counts once
            if not math.isfinite(high):
                continue
            if key in seen:
                repeated += 1
                continue
            seen.add(key)
            total += 1
            passed += 1.0 <= high <= th["optimality_ratio"]
        numbers[name] = {k: gap[k] for k in ("x_name", "x", "ratio", "low", "high")}
        parts.append(f"{name}: ratio {fmt(min(gap['ratio']) if gap['ratio'] else math.nan)}–{fmt(gap['max_ratio'])} over {gap['x_name']} = "
                     f"{', '.join(fmt(v) for v in gap['x'])} (largest upper end {fmt(gap['max_high'])}; {gap['below_one']} interval(s) below 1; "
                     f"sanity checks: {gap['sanity_violations']})")
    text = (f"{passed}/{total} configurations within the factor" + (f" ({repeated} configuration(s) in two sweeps counted once)" if repeated else "")
            + "; " + "; ".join(parts))
    return _row("C5", text, thr, _verdict_from_fraction(passed, total, th["partly_fraction"]), plan, numbers)


def verdict_c6(optimality: xr.Dataset | None, th: Mapping[str, float], plan=None) -> Verdict:
    thr = f"lower end of the interval of excess(best single head) / excess(best multi-head) > {th['separation_ratio']:g} for every number of tasks ≥ 2"
    if optimality is None:
        return _row("C6", "no task-count sweep", thr, UNMEASURED, plan)
    sep = measure_separation(optimality, th["separation_ratio"])
    if sep["total"] == 0:
        return _row("C6", "no configuration with ≥ 2 tasks", thr, UNMEASURED, plan)
    text = (f"{sep['passed']}/{sep['total']} configurations separated; ratio " + ", ".join(f"{fmt(r)} at {sep['x_name']} = {fmt(x)}" for x, r in zip(sep["x"], sep["ratio"]))
            + ("; increasing with tasks" if sep["increasing"] else ""))
    return _row("C6", text, thr, _verdict_from_fraction(sep["passed"], sep["total"], th["partly_fraction"]), plan, {k: sep[k] for k in ("x_name", "x", "ratio", "low", "high")})


def ode_applies(params: Mapping[str, Any]) -> bool:
    """Runs the spectral ODE describes: decomposable init, gradient descent (gradient flow), linear
    target, and the reduced or linear model (``full`` has another metric; see spectral.nc ode_model)."""
    return (str(params.get("init", "decomposable")) == "decomposable" and str(params.get("optimizer", "gd")) == "gd"
            and str(params.get("target", "linear")) == "linear" and str(params.get("model", "reduced")) in ("reduced", "linear"))


def verdict_c7(runs: Sequence[RunData], th: Mapping[str, float], plan=None, surrogate: xr.Dataset | None = None,
               streams: Sequence[RunData] = ()) -> Verdict:
    """Like with like: each trained run against gradient descent on the exact risk at its own lr
    (flow.nc ``train_gd_gap``, up to the trained emergence end), judged against the seed-to-seed
    spread of training at one init (``streams``: the median pairwise gap) plus the reference's
    Monte-Carlo gap; the flow's own time-step effect and the surrogate ODE are reported beside it."""
    flows = [(r, measure_flow(r)) for r in runs if r.flow is not None]
    flows = [(r, f) for r, f in flows if f["train_gd_gap"] is not None]
    spread = measure_stream_spread(streams)
    sur = measure_surrogate(surrogate)
    if spread["median_gap"] is not None:
        thr = ("largest |p_i(trained) − p_i(GD on the exact risk at the run's lr)| up to the trained emergence end ≤ the seed-to-seed "
               "spread of training (median largest gap between runs from one init with other data streams) + the reference's Monte-Carlo "
               f"gap, in every run; holds partly when ≥ {th['partly_fraction']:.0%} do")
    else:
        thr = (f"largest |p_i(trained) − p_i(GD on the exact risk at the run's lr)| up to the trained emergence end ≤ {th['ode_gap']:g} "
               "(no seed-to-seed spread measured: no runs differing only in their data stream)")
    if not flows:
        return _row("C7", "no trained gradient-descent run with an exact flow", thr, UNMEASURED, plan, judged_on=BOTH)
    rows = []
    for r, f in flows:
        floor = (spread["median_gap"] + num(f["mc_gap"])) if spread["median_gap"] is not None else th["ode_gap"]
        rows.append({"run": r.run, "gap": f["train_gd_gap"], "floor": floor, "passed": f["train_gd_gap"] <= floor,
                     "flow_gd_gap": f["flow_gd_gap"], "train_flow_gap": f["train_flow_gap"], "mc_gap": f["mc_gap"]})
    passed = sum(row["passed"] for row in rows)
    if spread["median_gap"] is None and passed < len(rows):
        # without a measured noise floor a gap above the fixed threshold may be batch noise alone
        return _row("C7", f"{passed}/{len(rows)} trained runs within {th['ode_gap']:g} of gradient descent on the exact risk at their lr "
                    f"(gaps {', '.join(fmt(row['gap'], 2) for row in rows)}); the seed-to-seed spread of training was not measured, so "
                    "a larger gap cannot be told from batch noise", thr, INCONCLUSIVE, plan, {"runs": rows}, BOTH, "no seed-to-seed spread measured")
    text = (f"{passed}/{len(rows)} trained runs agree with gradient descent on the exact risk at their lr: gaps "
            + ", ".join(f"{fmt(row['gap'], 2)} ({row['run']})" for row in rows)
            + f" against a floor of {fmt(rows[0]['floor'], 2)}"
            + (f" (seed-to-seed spread: median {fmt(spread['median_gap'], 2)}, largest {fmt(spread['max_gap'], 2)} over {len(spread['pairs'])} "
               f"pairs of {len(spread['runs'])} data streams)" if spread["median_gap"] is not None else "")
            + f"; the time step alone (exact flow against GD at the same lr) moves p_i by up to {fmt(max(num(row['flow_gd_gap']) for row in rows), 2)}, "
            f"so the trained runs differ from the exact flow by {', '.join(fmt(row['train_flow_gap'], 2) for row in rows)} through emergence")
    until = [f["surrogate_valid_until"] for _, f in flows if f["surrogate_valid_until"] is not None]
    if until:
        text += (f"; the delta-method surrogate ODE (an approximation) follows the exact flow within {fmt(flows[0][1]['surrogate_tolerance'], 2)} "
                 f"in p_i up to t = {', '.join(fmt(u) for u in until)}")
    if sur["available"]:
        text += (f"; its risk is within {fmt(sur['tolerance'])} of Monte Carlo at {sur['agree']}/{sur['total']} grid points")
    floor_text = (f"seed-to-seed spread {fmt(spread['median_gap'], 2)} (median over {len(spread['pairs'])} pairs) + the reference's "
                  f"Monte-Carlo gap ≤ {fmt(max(num(row['mc_gap']) for row in rows), 2)}; time step: {fmt(max(num(row['flow_gd_gap']) for row in rows), 2)}"
                  if spread["median_gap"] is not None else "no seed-to-seed spread measured")
    verdict = _verdict_from_fraction(passed, len(rows), th["partly_fraction"])
    return _row("C7", text, thr, verdict, plan, {"runs": rows, "spread": spread, "surrogate_agree": sur["agree"], "surrogate_total": sur["total"]},
                BOTH, floor_text)


def verdict_c8(runs: Sequence[RunData], th: Mapping[str, float], plan=None) -> Verdict:
    """On the noiseless dynamics: n_eff / L of the winning heads along the exact flow from each
    noise run's init, at the run's own last record (decides) and at the flow's horizon (reported);
    the trained runs' values beside it. Without flows, on the trained runs."""
    thr = (f"Spearman ρ(σ, n_eff/L of the winning heads) ≥ {th['regime_correlation']:g} = holds; > 0 = holds partly; "
           "≥ 3 noise levels; on the exact flow at the runs' last record time")
    if not runs:
        return _row("C8", "no noise sweep", thr, UNMEASURED, plan)
    flow = measure_flow_regimes(runs)
    trained = measure_regimes(runs, th["regime_correlation"])
    if len(flow["noise_levels"]) < 3 or not math.isfinite(flow["spearman_run_end"]):
        return _verdict_c8_trained(trained, th, plan)
    rho = flow["spearman_run_end"]
    text = (f"exact flow: ρ = {fmt(rho)} at the runs' last record; mean n_eff/L of the winning heads "
            + ", ".join(f"{fmt(b['mean_neff_run_end'])} at σ = {fmt(b['noise_std'])}" for b in flow["by_noise"])
            + f"; at the flow's horizon ρ = {fmt(flow['spearman_end'])} ("
            + ", ".join(fmt(b["mean_neff_end"]) for b in flow["by_noise"]) + ")"
            + f"; trained runs (batch noise in W included): ρ = {fmt(trained['spearman'])} ("
            + ", ".join(fmt(b["mean_neff_over_L"]) for b in trained["by_noise"]) + ")")
    verdict = HOLDS if rho >= th["regime_correlation"] else (PARTLY if rho > 0 else FAILS)
    floor = f"flow Monte-Carlo gap ≤ {fmt(max(num(p['mc_gap']) for p in flow['points']), 2)} in p_i; n_eff/L averages over the sample"
    return _row("C8", text, thr, verdict, plan, {"spearman": rho, "spearman_end": flow["spearman_end"], "spearman_trained": trained["spearman"],
                                                 "noise_levels": flow["noise_levels"]}, FLOW, floor)


def _verdict_c8_trained(reg: Mapping[str, Any], th: Mapping[str, float], plan=None) -> Verdict:
    thr = f"Spearman ρ(σ, n_eff/L of the winning heads) ≥ {th['regime_correlation']:g} = holds; > 0 = holds partly (≥ 3 noise levels)"
    if len(reg["noise_levels"]) < 3 or not math.isfinite(reg["spearman"]):
        return _row("C8", f"n_eff / L available at {len(reg['noise_levels'])} noise levels (need ≥ 3)", thr, UNMEASURED, plan)
    text = f"ρ = {fmt(reg['spearman'])}; mean n_eff/L of the winning heads " + ", ".join(
        f"{fmt(b['mean_neff_over_L'])} at σ = {fmt(b['noise_std'])}" for b in reg["by_noise"])
    rho = reg["spearman"]
    verdict = HOLDS if rho >= th["regime_correlation"] else (PARTLY if rho > 0 else FAILS)
    return _row("C8", text, thr, verdict, plan, {"spearman": rho, "noise_levels": reg["noise_levels"]})


def verdict_c9(linear: Sequence[RunData], length: Sequence[RunData], nonlinear: Sequence[RunData], th: Mapping[str, float], plan=None) -> Verdict:
    thr = (f"each measured extension passes its check — linear attention and nonlinear target: allocation clean (purity ≥ {th['purity']:g}) in every run; "
           f"length: excess at every L' ≥ L ≤ {th['length_ratio']:g} × excess at the training L; all three measured and passing = holds")
    checks, parts = [], []
    if linear:
        comp = measure_comparison([r for r in linear if str(r.params.get("model")) == "linear"] or linear, th["purity"])
        ok = comp["total"] > 0 and comp["clean"] == comp["total"]
        checks.append(ok)
        parts.append(f"linear attention: allocation clean in {comp['clean']}/{comp['total']} linear-attention runs")
    if length:
        gen = measure_length(length, th["length_ratio"])
        if gen["total"]:
            checks.append(gen["passed"] == gen["total"])
            worst = [r["worst_ratio_longer"] for r in gen["runs"] if r["worst_ratio_longer"] is not None]
            parts.append(f"length: {gen['passed']}/{gen['total']} runs pass (largest excess ratio at L' > L {fmt(max(worst) if worst else math.nan)})")
        else:
            parts.append("length: no evaluation at L' ≠ L in the files")
    if nonlinear:
        comp = measure_comparison([r for r in nonlinear if str(r.params.get("target")) != "linear"] or nonlinear, th["purity"])
        checks.append(comp["total"] > 0 and comp["clean"] == comp["total"])
        parts.append(f"nonlinear target: allocation clean in {comp['clean']}/{comp['total']} runs")
    missing = [name for name, runs in (("linear attention", linear), ("length generalisation", length), ("nonlinear target", nonlinear)) if not runs]
    if missing:
        parts.append("not measured: " + ", ".join(missing))
    if not checks:
        return _row("C9", "; ".join(parts), thr, UNMEASURED, plan)
    verdict = HOLDS if all(checks) and len(checks) == 3 else (PARTLY if any(checks) else FAILS)
    return _row("C9", "; ".join(parts), thr, verdict, plan, {"checks": checks})


def streams_with_reference(streams: Sequence[RunData], allocation: Sequence[RunData]) -> list[RunData]:
    """The stream runs and the allocation run they share their init with (same parameters but the
    data stream, the number of steps and the evaluation keys), whose record times they share up to
    its own emergence."""
    ignore = {"data_stream", "steps", "record_points", *EVALUATION_ONLY_KEYS}

    def key(r: RunData) -> str:
        return json.dumps({k: v for k, v in r.params.items() if k not in ignore}, sort_keys=True, default=str)

    keys = {key(r) for r in streams}
    return list(streams) + [r for r in allocation if key(r) in keys]


def build_verdicts(
    runs: Sequence[RunData],
    optimality: Mapping[str, xr.Dataset],
    settings: Mapping[str, Any],
    given_thresholds: Mapping[str, Any] | None,
    plan: Sequence[Mapping[str, Any]] | None = None,
    surrogate: xr.Dataset | None = None,
) -> list[Verdict]:
    """All nine verdicts from the loaded files. ``settings`` is the ``figures`` config section
    (which experiment measures which claim)."""
    th = thresholds(given_thresholds)
    by_exp: dict[str, list[RunData]] = {}
    for r in runs:
        by_exp.setdefault(r.experiment, []).append(r)

    def exp(key: str) -> list[RunData]:
        names = as_list(settings.get(key))
        return [r for n in names for r in by_exp.get(n, [])]

    allocation, warmup = exp("allocation"), exp("warmup")
    phase_runs = distinct_runs(allocation + warmup)
    gd_runs = distinct_runs([r for r in allocation if str(r.params.get("optimizer", "gd")) == "gd"])
    opt_names = [n for n in as_list(settings.get("optimality")) if n in optimality]
    sep_name = settings.get("separation")
    return [
        verdict_c1(runs, th, plan, trained=distinct_runs(allocation)),
        verdict_c2(phase_runs, warmup, th, plan, flow_runs=runs),
        verdict_c3(allocation, th, plan),
        verdict_c4(exp("winner"), th, plan),
        verdict_c5({n: optimality[n] for n in opt_names}, th, plan),
        verdict_c6(optimality.get(sep_name) if sep_name else None, th, plan),
        verdict_c7(gd_runs, th, plan, surrogate, streams=streams_with_reference(exp("streams"), allocation)),
        verdict_c8(exp("regimes"), th, plan),
        verdict_c9(exp("linear"), exp("length"), exp("nonlinear"), th, plan),
    ]


VERDICT_COLORS = {HOLDS: "#1a7f37", PARTLY: "#9a6700", FAILS: "#cf222e", INCONCLUSIVE: "#6639ba", UNMEASURED: "#57606a"}


def verdicts_html(verdicts: Sequence[Verdict], title: str = "Verdict table") -> str:
    """A self-contained HTML page (the report shows it in an iframe)."""
    counts = {v: sum(x.verdict == v for x in verdicts) for v in VERDICT_ORDER}
    rows = []
    for v in verdicts:
        color = VERDICT_COLORS[v.verdict]
        figs = "<br>".join(html.escape(f) for f in v.figures) or "—"
        rows.append(
            f"<tr><td class='c'>{html.escape(v.claim)}</td><td class='s'>{html.escape(v.statement)}</td>"
            f"<td><span class='v' style='background:{color}'>{html.escape(v.verdict)}</span></td>"
            f"<td class='o'>{html.escape(v.judged_on)}</td>"
            f"<td>{html.escape(v.measurement)}</td><td class='t'>{html.escape(v.threshold)}</td><td class='t'>{html.escape(v.noise_floor or '—')}</td>"
            f"<td class='f'>{html.escape(v.category)}<br><span class='p'>{figs}</span></td></tr>"
        )
    summary = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; font-size: 13px; margin: 12px; color: #1f2328; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ border: 1px solid #d0d7de; padding: 6px 8px; vertical-align: top; text-align: left; }}
th {{ background: #f6f8fa; }}
td.c {{ font-weight: 600; white-space: nowrap; }}
td.s {{ font-size: 12px; width: 16%; }}
td.t {{ color: #57606a; font-size: 12px; width: 22%; }}
td.f {{ font-size: 12px; width: 12%; }}
td.o {{ font-size: 12px; white-space: nowrap; }}
span.p {{ color: #57606a; font-family: monospace; font-size: 10.5px; word-break: break-all; }}
span.v {{ color: white; border-radius: 10px; padding: 2px 8px; white-space: nowrap; font-weight: 600; }}
</style></head><body>
<h3>{html.escape(title)}</h3>
<p>{len(verdicts)} claims: {html.escape(summary)}. Every number below is computed from the pipeline's netCDF files by
<code>multihead_icl.verdicts</code>; thresholds are the config's <code>verdicts</code> section.</p>
<table><thead><tr><th>claim</th><th>statement (paper's abstract)</th><th>verdict</th><th>judged on</th><th>measurement</th><th>threshold</th><th>noise floor</th><th>figures (report category, file)</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table></body></html>
"""


def verdicts_json(verdicts: Sequence[Verdict]) -> dict[str, Any]:
    return jsonable({
        "verdicts": [asdict(v) for v in verdicts],
        "counts": {k: sum(v.verdict == k for v in verdicts) for k in VERDICT_ORDER},
        "by_claim": {v.claim: v.verdict for v in verdicts},
    })
