"""Figures for the report: one function per figure kind, one style, deterministic files.

Every ``*_figure`` function takes loaded datasets (train.nc, spectral.nc, optimality.nc, see
docs/science.md §8) and returns ``(figure, summary)``: the matplotlib figure and a JSON-able dict
with the numbers that the figure's caption quotes. The numbers come from ``measurements.measure_*``
(the same functions the verdict table uses), so a caption and a verdict can never disagree.

Conventions: gradient-flow time t = lr x steps on a log axis (t = 0 is left out of it); risks are
the per-task MSE with noise included, in squared output units, with the noise floor sigma^2 drawn;
heads keep one colour across all figures (``HEAD_COLORS``), tasks one colour in task-coloured
figures (``TASK_COLORS``). Files are deterministic: a fixed ``svg.hashsalt`` and no date metadata.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from . import measurements as M  # noqa: E402
from .report import FIGURE_KINDS, thresholds  # noqa: E402

HEAD_COLORS = sns.color_palette("colorblind", 10)
TASK_COLORS = sns.color_palette("dark", 10)
PHASE_COLORS = {"warm-up": "#dbe9f6", "emergence": "#fde0c5", "convergence": "#e3f1dc"}
TIME_LABEL = "gradient-flow time t = lr × steps (log scale)"
RISK_UNITS = "squared output units"
SVG_SALT = "multihead-icl"
# the formats of the config's figures.format, each with the metadata that keeps its files free of
# dates (deterministic)
FIGURE_FORMATS = {
    "svg": {"Date": None},
    "png": {"Software": None},
    "pdf": {"CreationDate": None, "ModDate": None, "Producer": None},
}
FIG_WIDTH = 10.0  # inches: about the report's content width at 100 dpi
AXIS_LABELS = {
    "context_length": "training context length L (tokens)",
    "init_scale": "init scale s",
    "lr": "learning rate η",
    "steps": "optimizer steps",
    "batch_size": "batch size B",
    "seed": "seed",
    "model": "model",
    "optimizer": "optimizer",
    "init": "initialisation",
    "target": "target",
    "data_stream": "data stream",
    "L": "context length L (tokens)",
    "heads": "number of heads H",
    "tasks": "number of tasks I",
    "noise_std": "noise σ (output units)",
    "task_dim": "task dimension d_i",
    "signal": "task signal κ_i",
}
PREDICTOR_LABELS = {
    "trained": "trained (at its last record)",
    "trained_fresh": "trained, re-measured on the fresh sample",
    "flow": "exact gradient flow (its end)",
    "best_in_class": "best multi-head in class",
    "single_head": "best single head",
    "allocated": "one head per task",
    "linear_attention": "linear attention / one-step GD",
    "debiased_gd": "debiased GD",
    "bayes": "Bayes optimal",
    "ols_block": "OLS per block",
    "ols_full": "OLS on all covariates",
}

# baselines, in three groups with one colour family each; within a group marker, fill and line style
# differ, so that curves with equal values (Bayes and OLS per block; linear attention and debiased
# GD) stay visible: the hollow, larger marker is drawn below the filled one, slightly offset in L
PREDICTOR_GROUPS = {
    "trained model and its exact flow": ("trained", "trained_fresh", "flow"),
    "best in the model class": ("best_in_class", "single_head", "allocated"),
    "reference predictors": ("bayes", "ols_block", "ols_full", "linear_attention", "debiased_gd"),
}
PREDICTOR_STYLES = {  # colour, marker, filled, line style
    "trained": ("#08519c", "o", True, "-"),
    "trained_fresh": ("#6baed6", "o", False, "--"),
    "flow": ("#08306b", "v", True, ":"),
    "best_in_class": ("#d94801", "s", True, "-"),
    "single_head": ("#fd8d3c", "D", False, "--"),
    "allocated": ("#8c2d04", "^", True, "-."),
    "bayes": ("#000000", "*", True, "-"),
    "ols_block": ("#41ab5d", "s", False, "--"),
    "ols_full": ("#006d2c", "P", True, "-."),
    "linear_attention": ("#7a0177", "o", True, "-"),
    "debiased_gd": ("#dd3497", "D", False, "--"),
}


def axis_label(key: str | None) -> str:
    """A readable axis label (with its symbol and units) for a config key; unknown keys with
    spaces for underscores, so that no raw key reaches a figure."""
    if not key:
        return ""
    return AXIS_LABELS.get(key, key.replace("_", " "))


def param_name(key: str | None) -> str:
    """The short name of a swept config key, for titles: its axis label without the units."""
    return axis_label(key).split(" (")[0]


def group_label(group: str) -> str:
    """``model=reduced, lr=0.1`` (how measurements name a group of runs) as ``model: reduced,
    learning rate η: 0.1``; a list of keys (``model, lr``: what varies) as their names."""
    parts = []
    for part in str(group).split(", "):
        key, sep, value = part.partition("=")
        parts.append(f"{param_name(key)}: {value}" if sep else param_name(part))
    return ", ".join(parts)


def _enough_log_ticks(ax, axis: str = "y", least: int = 3) -> None:
    """A log axis spanning less than about a decade gets one or no labelled major tick; label
    1-2-5 steps then (or 1, 2, ..., 9, or failing that a few evenly spaced values), so that it
    always shows several."""
    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    if not (lo > 0 and hi > lo):
        return
    target = ax.yaxis if axis == "y" else ax.xaxis

    def visible(ticks):
        return [v for v in ticks if lo <= v <= hi]

    if len(visible(target.get_major_locator().tick_values(lo, hi))) >= least:
        return
    for subs in ((1.0, 2.0, 5.0), tuple(range(1, 10))):
        ticks = visible(matplotlib.ticker.LogLocator(base=10, subs=subs).tick_values(lo, hi))
        if len(ticks) >= least:
            break
    if len(ticks) < least:
        ticks = [float(f"{v:.2g}") for v in np.geomspace(lo, hi, least + 2)[1:-1]]
    target.set_major_locator(matplotlib.ticker.FixedLocator(ticks))
    target.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(matplotlib.ticker.NullFormatter())


def _pooled(ax, t, series, color, label, **line) -> None:
    """Runs of one group (seeds) on a shared time axis: their mean as a line and the min-max range
    as a band; a single run as its own line."""
    values = np.asarray(series, dtype=float)
    if values.ndim == 1 or len(values) == 1:
        mark(ax.plot(t, values.reshape(-1, len(t))[0], color=color, label=label, **line))
        return
    with np.errstate(invalid="ignore"):
        mark(
            ax.fill_between(
                t,
                np.nanmin(values, axis=0),
                np.nanmax(values, axis=0),
                color=color,
                alpha=0.2,
                lw=0,
            )
        )
        pooled = None if label is None else f"{label} (mean of {len(values)} seeds, band: min-max)"
        mark(ax.plot(t, np.nanmean(values, axis=0), color=color, label=pooled, **line))


def setup_style() -> None:
    """One theme for every figure (call before drawing; idempotent)."""
    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.9)
    matplotlib.rcParams.update(
        {
            "svg.hashsalt": SVG_SALT,
            "svg.fonttype": "none",  # text stays text: searchable and editable in the SVG
            "pdf.fonttype": 42,  # TrueType in PDFs, editable too
            "figure.dpi": 100,
            "savefig.dpi": 150,
            "axes.titlesize": 10.5,
            "axes.labelsize": 9.5,
            "legend.fontsize": 8,
            "legend.title_fontsize": 8.5,
            "xtick.labelsize": 8.5,
            "ytick.labelsize": 8.5,
            "figure.constrained_layout.use": True,
            "lines.linewidth": 1.6,
            "image.cmap": "vlag",
        }
    )


def head_color(h: int):
    return HEAD_COLORS[int(h) % len(HEAD_COLORS)]


def task_color(i: int):
    return TASK_COLORS[int(i) % len(TASK_COLORS)]


def save_figure(fig: Figure, path: str | os.PathLike) -> None:
    """Write ``fig`` (svg, png or pdf by suffix) deterministically and atomically, then close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FIGURE_FORMATS:
        raise ValueError(f"figure format {fmt!r} of {path}; known: {', '.join(FIGURE_FORMATS)}")
    tmp = path.with_name(f".{path.name}.tmp")
    metadata = FIGURE_FORMATS[fmt]
    fig.savefig(tmp, format=fmt, metadata=metadata, bbox_inches="tight", pad_inches=0.06)
    plt.close(fig)
    os.replace(tmp, path)


def write_summary(summary: Mapping[str, Any], path: str | os.PathLike) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(
        json.dumps(M.jsonable(summary), indent=1, sort_keys=True, allow_nan=False) + "\n"
    )
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# data marks and the empty-axes check

DATA_GID = "data"


def mark(*artists: Any) -> None:
    """Tag artists that show measured data (``gid`` "data-<n>", which becomes their SVG id), as
    opposed to reference lines, thresholds and phase bands. ``empty_axes`` and the report test
    count only these."""
    for artist in artists:
        if artist is None:
            continue
        if isinstance(artist, (list, tuple)):
            mark(*artist)
            continue
        if hasattr(artist, "lines") and hasattr(artist, "has_xerr"):  # an errorbar container
            mark(artist.lines[0], *artist.lines[2])
            continue
        fig = artist.get_figure(root=True) if hasattr(artist, "get_figure") else None
        count = getattr(fig, "_data_marks", 0) if fig is not None else 0
        artist.set_gid(f"{DATA_GID}-{count}")
        if fig is not None:
            fig._data_marks = count + 1


def _is_marked(artist) -> bool:
    return str(artist.get_gid() or "").startswith(DATA_GID)


def _finite_data(artist) -> bool:
    if hasattr(artist, "get_xydata"):
        xy = np.asarray(artist.get_xydata(), dtype=float)
        return bool(xy.size and np.isfinite(xy).all(axis=-1).any())
    arr = artist.get_array() if hasattr(artist, "get_array") else None
    if arr is not None and np.size(arr):
        return bool(np.isfinite(np.ma.filled(np.ma.asarray(arr, dtype=float), np.nan)).any())
    if hasattr(artist, "get_offsets"):
        offsets = np.asarray(artist.get_offsets(), dtype=float)
        if offsets.size and np.isfinite(offsets).all(axis=-1).any():
            return True
    if hasattr(artist, "get_paths"):
        return any(
            len(path.vertices) and np.isfinite(path.vertices).all() for path in artist.get_paths()
        )
    if hasattr(artist, "get_height"):
        return bool(np.isfinite(artist.get_height()) and artist.get_height() != 0)
    return False


def empty_axes(fig: Figure) -> list[str]:
    """Visible axes (title or index) with no marked data artist holding a finite value; colour
    bars (gid "colorbar-*") are not data axes. A figure is publishable when this is empty."""
    empty = []
    for index, ax in enumerate(fig.axes):
        if not ax.get_visible() or str(ax.get_gid() or "").startswith("colorbar"):
            continue
        artists = [*ax.lines, *ax.collections, *ax.images, *ax.patches]
        if any(_is_marked(a) and _finite_data(a) for a in artists):
            continue
        empty.append(ax.get_title() or ax.get_label() or f"axes {index}")
    return empty


def _check(fig: Figure) -> Figure:
    empty = empty_axes(fig)
    if empty:
        raise ValueError(f"figure has axes without data: {empty}")
    return fig


def _log_time(ax) -> None:
    ax.set_xscale("log")
    ax.set_xlabel(TIME_LABEL)


def _log_span(ax, values: Sequence[float], axis: str = "x") -> None:
    """Log scale over at least one decade around the finite positive ``values``, major labels
    only."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x) and x > 0], dtype=float)
    lo, hi = (v.min(), v.max()) if v.size else (1e-3, 1.0)
    lo, hi = min(lo, hi / 10**1.2), hi
    if axis == "x":
        ax.set_xscale("log")
        ax.set_xlim(lo / 1.5, hi * 1.5)
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    else:
        ax.set_yscale("log")
        ax.set_ylim(lo / 1.5, hi * 1.5)
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())


# ---------------------------------------------------------------------------------------------
# per-run figures


def _phase_band(ax, t0: float, bounds: Sequence[float | None], t_end: float) -> None:
    edges = [t0, *bounds, t_end]
    for name, a, b in zip(PHASE_COLORS, edges[:-1], edges[1:]):
        if a is not None and b is not None and math.isfinite(a) and math.isfinite(b) and b > a:
            ax.axvspan(max(a, t0), b, color=PHASE_COLORS[name], zorder=0, label=name)


def risk_figure(
    train: xr.Dataset, spectral: xr.Dataset | None, run: str, speedup: float
) -> tuple[Figure, dict]:
    """Risk against gradient-flow time with the phases: left the total evaluation risk (± 2 SE) and
    the training-batch risk with the loss-based phase bands; right the risk of each task with its
    own warm-up and emergence ends (from the task signal)."""
    setup_style()
    conv = M.measure_convergence(train)
    phases = M.measure_phases(spectral, speedup)
    t = np.asarray(train["time"].values, dtype=float)
    keep = t > 0
    floor = float(train.attrs.get("noise_floor", np.nan))
    fig, (left, right) = plt.subplots(1, 2, figsize=(FIG_WIDTH, 3.8), sharex=True)
    loss = phases.get("loss", {})
    _phase_band(left, t[keep][0], [loss.get("warmup_end"), loss.get("emergence_end")], t[-1])
    risk, se = train["eval_risk"].values, train["eval_risk_se"].values
    mark(
        left.plot(
            t[keep], train["train_risk"].values[keep], color="0.6", lw=0.9, label="training batch"
        )
    )
    mark(
        left.fill_between(
            t[keep],
            (risk - 2 * se)[keep],
            (risk + 2 * se)[keep],
            color=head_color(0),
            alpha=0.25,
            lw=0,
        )
    )
    mark(left.plot(t[keep], risk[keep], color=head_color(0), label="evaluation set (± 2 SE)"))
    if np.isfinite(floor):
        left.axhline(floor, color="k", ls=":", lw=1, label=f"noise floor σ² = {floor:.3g}")
    left.set_yscale("log")
    _log_time(left)
    left.set_ylabel(f"risk, per-task MSE ({RISK_UNITS})")
    detected = loss.get("warmup_end") is not None and loss.get("emergence_end") is not None
    left.set_title(
        f"{run}: risk ({conv['status']}; loss phases {'shaded' if detected else 'not detected'})"
    )
    left.legend(loc="lower left", frameon=True)

    per_task = train["eval_risk_task"].values
    tasks = phases.get("tasks", [])
    for i in range(per_task.shape[1]):
        mark(right.plot(t[keep], per_task[keep, i], color=task_color(i), label=f"task {i}"))
        task = tasks[i] if i < len(tasks) else {}
        for key, style in (("warmup_end", "--"), ("emergence_end", "-.")):
            value = task.get(key)
            if value is not None and math.isfinite(value):
                right.axvline(value, color=task_color(i), ls=style, lw=1)
    if np.isfinite(floor):
        right.axhline(floor, color="k", ls=":", lw=1)
    right.set_yscale("log")
    _log_time(right)
    right.set_ylabel(f"risk of each task ({RISK_UNITS})")
    right.set_title("per task: warm-up end (--), emergence end (-.)")
    right.legend(loc="lower left", ncol=2)
    summary = {"run": run, "convergence": conv, "phases": phases, "noise_floor": floor}
    return _check(fig), summary


def trajectories_figure(spectral: xr.Dataset, run: str) -> tuple[Figure, dict]:
    """omega_{h,i}(t) and mu_{h,i}(t): trained (solid, one colour per head) and the spectral ODE
    from the same initial values (dashed), one column per task."""
    setup_style()
    ode = M.measure_ode(spectral)
    omega = spectral["omega"].transpose("time", "head", "task").values
    mu = spectral["mu"].transpose("time", "head", "task").values
    heads, tasks = omega.shape[1:]
    t = np.asarray(spectral["time"].values, dtype=float)
    keep = t > 0
    fig, axes = plt.subplots(2, tasks, figsize=(FIG_WIDTH, 5.6), sharex=True, squeeze=False)
    has_ode = "omega_ode" in spectral and "mu_ode" in spectral
    for row, (name, values, symbol) in enumerate((("omega", omega, "ω"), ("mu", mu, "μ"))):
        ode_values = (
            spectral[f"{name}_ode"].transpose("time", "head", "task").values if has_ode else None
        )
        for i in range(tasks):
            ax = axes[row, i]
            for h in range(heads):
                mark(ax.plot(t[keep], values[keep, h, i], color=head_color(h), label=f"head {h}"))
                if ode_values is not None and np.isfinite(ode_values[keep, h, i]).any():
                    ax.plot(
                        t[keep],
                        ode_values[keep, h, i],
                        color=head_color(h),
                        ls="--",
                        lw=1.1,
                        alpha=0.9,
                    )
            ax.axhline(0, color="0.5", lw=0.6)
            _log_time(ax)
            if row == 0:
                ax.set_title(f"task {i}")
                ax.set_xlabel("")
            ax.set_ylabel(f"{symbol}_h,i (dimensionless)" if i == 0 else "")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if has_ode:
        handles.append(plt.Line2D([], [], color="0.3", ls="--"))
        labels.append("spectral ODE (same colour: same head)")
    fig.legend(handles, labels, loc="outside lower center", ncol=heads + 1)
    fig.suptitle(
        f"{run}: semi-singular values ω (top) and μ (bottom), trained (solid) and ODE (dashed)",
        fontsize=10.5,
    )
    return _check(fig), {"run": run, "ode": ode}


def allocation_figure(
    spectral: xr.Dataset, run: str, purity_threshold: float
) -> tuple[Figure, dict]:
    """Allocation shares a_{h,i}(t) (each task's share of head h), one panel per task, with the
    task's warm-up and emergence ends and the purity threshold; below, all shares at once as a
    (task, head) x time heat map, where a clean allocation is one bright row per task."""
    setup_style()
    alloc = M.measure_allocation(spectral, purity_threshold)
    share = spectral["share"].transpose("time", "head", "task").values
    heads, tasks = share.shape[1:]
    t = np.asarray(spectral["time"].values, dtype=float)
    keep = t > 0
    rows = heads * tasks
    fig = plt.figure(figsize=(FIG_WIDTH, 3.3 + min(0.2 * rows, 4.0) + 0.9))
    grid = fig.add_gridspec(2, tasks, height_ratios=[3.0, 0.6 + min(0.2 * rows, 4.0)])
    axes = [fig.add_subplot(grid[0, 0])]
    axes += [fig.add_subplot(grid[0, i], sharey=axes[0], sharex=axes[0]) for i in range(1, tasks)]
    for i, ax in enumerate(axes):
        for h in range(heads):
            mark(ax.plot(t[keep], share[keep, h, i], color=head_color(h), label=f"head {h}"))
        ax.axhline(
            purity_threshold,
            color="k",
            ls=":",
            lw=1,
            label=f"purity threshold {purity_threshold:g}",
        )
        task = alloc["tasks"][i]
        for key, style in (("warmup_end", "--"), ("emergence_end", "-.")):
            value = task.get(key)
            if value is not None and math.isfinite(value):
                ax.axvline(value, color=task_color(i), ls=style, lw=1)
        _log_time(ax)
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(f"task {i}: winner head {task['winner']}, purity {M.fmt(task['purity_end'])}")
        if i != (tasks - 1) // 2:
            ax.set_xlabel("")
        if i == 0:
            ax.set_ylabel("allocation share a_h,i (fraction)")
        else:
            ax.tick_params(labelleft=False)
    handles, labels = axes[0].get_legend_handles_labels()
    handles += [
        plt.Line2D([], [], color="0.3", ls="--", lw=1),
        plt.Line2D([], [], color="0.3", ls="-.", lw=1),
    ]
    labels += ["warm-up end of the task", "emergence end of the task"]
    fig.legend(handles, labels, loc="outside upper center", ncol=len(labels), fontsize=7.5)

    # every share at once: rows (task i, head h), time along x on the same log axis
    heat = fig.add_subplot(grid[1, :])
    tk = t[keep]
    mid = np.sqrt(tk[1:] * tk[:-1])
    edges = np.concatenate(
        [[tk[0] ** 2 / mid[0] if mid.size else tk[0] / 1.5], mid, [tk[-1] ** 2 / mid[-1]]]
        if mid.size
        else [[tk[0] / 1.5], [tk[0] * 1.5]]
    )
    values = share[keep].transpose(2, 1, 0).reshape(rows, -1)  # row i * heads + h
    image = heat.pcolormesh(
        edges,
        np.arange(rows + 1) - 0.5,
        values,
        cmap="viridis",
        vmin=0,
        vmax=1,
        shading="flat",
        edgecolors="face",
        linewidth=0.4,  # cells overlap a little: no seams between them in SVG viewers
    )
    mark(image)
    for i in range(1, tasks):
        heat.axhline(i * heads - 0.5, color="white", lw=1.5)
    heat.set_yticks(
        range(rows), [f"task {r // heads}, head {r % heads}" for r in range(rows)], fontsize=7
    )
    heat.set_ylim(rows - 0.5, -0.5)
    heat.grid(False)
    _log_time(heat)
    heat.set_xlim(axes[0].get_xlim())
    heat.set_title("all shares a_h,i: one row per (task, head), tasks separated by white lines")
    bar = fig.colorbar(image, ax=heat, pad=0.01, aspect=12, label="share a_h,i")
    bar.ax.set_gid("colorbar-share")  # a colour scale, not an axes of data (see empty_axes)
    return _check(fig), {"run": run, "allocation": alloc}


def heatmaps_figure(
    train: xr.Dataset, spectral: xr.Dataset | None, run: str
) -> tuple[Figure, dict]:
    """W_h in the task basis (Phi^T W_h Phi) at the end of warm-up, the end of emergence and the end
    of training (the latest task's phase ends), one row per head; boxes mark the task blocks."""
    setup_style()
    snaps = M.snapshot_times(train, spectral)
    basis = train["basis_x"].values if "basis_x" in train else np.eye(train.sizes["x_row"])
    mask = train["block_mask"].values if "block_mask" in train else None
    heads = train.sizes["head"]
    size = min(2.0, 6.5 / max(heads, 1))
    fig, axes = plt.subplots(
        heads,
        len(snaps),
        figsize=(1.25 * size * len(snaps) + 1.2, size * heads + 0.8),
        squeeze=False,
    )
    for col, snap in enumerate(snaps):
        W = basis.T @ train["W"].isel(time=snap["index"]).values @ basis
        vmax = float(np.abs(W).max()) or 1.0
        snap["max_abs_entry"] = vmax
        for h in range(heads):
            ax = axes[h, col]
            image = ax.imshow(W[h], cmap="vlag", vmin=-vmax, vmax=vmax, interpolation="nearest")
            mark(image)
            if mask is not None:
                for i, row in enumerate(mask):
                    idx = np.flatnonzero(row)
                    if idx.size:
                        ax.add_patch(
                            plt.Rectangle(
                                (idx[0] - 0.5, idx[0] - 0.5),
                                idx.size,
                                idx.size,
                                fill=False,
                                ec=task_color(i),
                                lw=1.5,
                            )
                        )
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(f"head {h}", color=head_color(h))
            if h == 0:
                ax.set_title(f"{snap['label']}\nt = {M.fmt(snap['time'])}")
        bar = fig.colorbar(
            image,
            ax=axes[:, col],
            shrink=0.6,
            aspect=30,
            label="W entry (dimensionless)" if col == len(snaps) - 1 else None,
        )
        bar.ax.set_gid(f"colorbar-{col}")  # a colour scale, not an axes of data (see empty_axes)
    fig.suptitle(
        f"{run}: key-query matrices W_h in the task basis (task blocks boxed)", fontsize=10.5
    )
    return _check(fig), {"run": run, "snapshots": snaps}


# ---------------------------------------------------------------------------------------------
# per-experiment figures


def surrogate_figure(check: xr.Dataset) -> tuple[Figure, dict]:
    """C7: relative gap between the finite-L surrogate risk and Monte Carlo at every grid point,
    against the grid's omega (which orders agreement on our grid; the saturation index does not)."""
    setup_style()
    sur = M.measure_surrogate(check)
    fig, ax = plt.subplots(figsize=(FIG_WIDTH * 0.65, 3.9))
    patterns = list(dict.fromkeys(p["pattern"] for p in sur["points"]))
    lengths = sorted(
        {p["context_length"] for p in sur["points"] if p["context_length"] is not None}
    )
    slots = max(len(lengths), 1) * max(len(patterns), 1)
    step = 0.5 * min(np.diff(sorted({p["omega"] for p in sur["points"]})), default=0.1) / slots

    def spread(p):  # points of one omega side by side: by L (shortest left), then by pattern
        slot = (lengths.index(p["context_length"]) if p["context_length"] in lengths else 0) * len(
            patterns
        ) + patterns.index(p["pattern"])
        return p["omega"] + step * (slot - (slots - 1) / 2)

    for k, pattern in enumerate(patterns):
        color = HEAD_COLORS[k % len(HEAD_COLORS)]
        for agrees, marker in ((True, "o"), (False, "x")):  # hollow: overlaps stay readable
            mine = [
                p
                for p in sur["points"]
                if p["pattern"] == pattern
                and p["agrees"] == agrees
                and p["relative_gap"] is not None
            ]
            if mine:
                mark(
                    ax.scatter(
                        [spread(p) for p in mine],
                        [abs(p["relative_gap"]) for p in mine],
                        **({"facecolor": "none", "edgecolor": color} if agrees else {"c": [color]}),
                        marker=marker,
                        s=34,
                        linewidths=1.2,
                        alpha=0.85,
                        zorder=3,
                        label=f"{pattern}, {'agrees' if agrees else 'fails'}",
                    )
                )
    if sur.get("tolerance") is not None:
        ax.axhline(
            sur["tolerance"],
            color="crimson",
            ls=":",
            lw=1.2,
            label=f"tolerance {sur['tolerance']:g}",
        )
    ax.set_yscale("log")
    ax.set_xlabel(
        "grid ω of the weights (dimensionless; at each ω, L = "
        + ", ".join(f"{v:g}" for v in lengths)
        + " left to right, patterns side by side)"
    )
    ax.set_ylabel("|surrogate / Monte Carlo − 1| (fraction)")
    ax.set_title(
        f"finite-L surrogate: {sur['agree']}/{sur['total']} grid points within the tolerance"
    )
    ax.legend(fontsize=7.5)
    return _check(fig), sur


def convergence_figure(runs: Sequence[M.RunData]) -> tuple[Figure, dict]:
    """C1 over the whole suite: relative parameter change over the last tenth of training and the
    final gradient norm of every run, with the runs' convergence thresholds (``converged_rtol``)."""
    setup_style()
    conv = M.measure_suite_convergence(runs)
    rows = conv["runs"]
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(FIG_WIDTH, 1.4 + 0.2 * max(len(rows), 5)), sharey=True
    )
    experiments = list(dict.fromkeys(r["experiment"] for r in rows))
    colors = {e: HEAD_COLORS[k % len(HEAD_COLORS)] for k, e in enumerate(experiments)}
    for k, r in enumerate(rows):
        style = {"color": colors[r["experiment"]], "marker": "o" if r["optimizer"] == "gd" else "s"}
        for ax, value in ((left, r["relative_change"]), (right, r["grad_norm"])):
            mark(ax.scatter(max(value, 1e-12), k, zorder=3, **style))
    for value in conv["converged_rtols"]:
        left.axvline(value, color="k", ls=":", lw=1, label=f"threshold {value:g}")
    _log_span(left, [r["relative_change"] for r in rows] + conv["converged_rtols"])
    _log_span(right, [r["grad_norm"] for r in rows])
    left.set_yticks(np.arange(len(rows)), [r["run"] for r in rows], fontsize=7)
    left.set_ylim(len(rows) - 0.5, -0.5)
    left.set_xlabel("relative change of (W, U) over the last 10% of t (dimensionless)")
    right.set_xlabel("final batch gradient norm (risk units per parameter unit)")
    left.set_title(
        f"{conv['converged']}/{conv['gd_runs']} gradient-descent runs below the threshold"
    )
    right.set_title("final gradient norm (fresh batches keep it > 0)")
    left.legend(loc="best")
    return _check(fig), conv


def warmup_figure(
    runs: Sequence[M.RunData], experiment: str, slope_rtol: float
) -> tuple[Figure, dict]:
    """C2: warm-up end of every task against ln(1/s), the least-squares fit and the warm-up law's
    slope 2/lambda through the measured mean, and the law's per-run predictions."""
    setup_style()
    law = M.measure_warmup_law(runs, slope_rtol)
    fig, ax = plt.subplots(figsize=(FIG_WIDTH * 0.65, 4.0))
    pts = [p for p in law["points"] if p["warmup_end"] is not None]
    for i in sorted({p["task"] for p in law["points"]}):
        mine = [p for p in pts if p["task"] == i]
        if mine:
            mark(
                ax.scatter(
                    [p["log_inv_scale"] for p in mine],
                    [p["warmup_end"] for p in mine],
                    color=task_color(i),
                    label=f"task {i}, measured",
                    zorder=3,
                )
            )
        for key, marker, text in (
            ("predicted", "D", "law from ω(0), μ(0)"),
            ("predicted_sgd", "^", "law with step and batch noise"),
        ):
            pred = [p for p in law["points"] if p["task"] == i and p.get(key) is not None]
            if pred:
                ax.scatter(
                    [p["log_inv_scale"] for p in pred],
                    [p[key] for p in pred],
                    facecolor="none",
                    edgecolor=task_color(i),
                    marker=marker,
                    label=f"task {i}, {text}",
                )
    if law["fit"] is not None:
        xs = np.linspace(
            min(p["log_inv_scale"] for p in pts), max(p["log_inv_scale"] for p in pts), 50
        )
        fit = law["fit"]
        ax.plot(
            xs,
            fit["intercept"] + fit["slope"] * xs,
            color="0.2",
            label=f"fit: slope {M.fmt(fit['slope'])} ± {M.fmt(fit['slope_se'], 2)}",
        )
        if math.isfinite(law["law_intercept"]):
            ax.plot(
                xs,
                law["law_intercept"] + law["law_slope"] * xs,
                color="0.2",
                ls="--",
                label=f"warm-up law: slope 2/λ = {M.fmt(law['law_slope'])}",
            )
    ax.set_xlabel("ln(1 / init scale s) (dimensionless)")
    ax.set_ylabel("warm-up end t* (gradient-flow time)")
    ax.set_title(f"{experiment}: warm-up time against init scale")
    ax.legend(fontsize=7.5)
    return _check(fig), {"experiment": experiment, **law}


def purity_figure(
    runs: Sequence[M.RunData], experiment: str, purity_threshold: float
) -> tuple[Figure, dict]:
    """C3 across a sweep: the lowest purity over tasks at the end of emergence, at the cleanest
    record and at the end of training against the swept parameter; and when the allocation became
    clean and when it started to drift (never: drawn at the end of training, hollow). Several seeds
    at one value are drawn as their mean with whiskers over their range (left); the times stay per
    run (right)."""
    setup_style()
    pur = M.measure_purity(runs, purity_threshold)
    rows = pur["runs"]
    labels = list(dict.fromkeys(str(r["x"]) for r in rows))
    xs = [float(r["x"]) if pur["numeric"] else labels.index(str(r["x"])) for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(FIG_WIDTH, 3.8))
    for key, color, text, style in (  # hollow and larger below filled: equal values both show
        ("purity_emergence", head_color(1), "end of emergence", {"marker": "v"}),
        ("purity_cleanest", head_color(2), "cleanest record", {"s": 90, "facecolor": "none"}),
        ("purity_end", head_color(0), "end of training", {"s": 22}),
    ):
        ys = [M.num(r[key]) for r in rows]
        if style.get("facecolor") == "none":
            style = {**style, "edgecolor": color, "linewidths": 1.4}
        else:
            style = {**style, "color": color}
        if len(set(xs)) < len(xs):  # seeds at one x: their mean, whiskers over their range
            ux = sorted(set(xs))
            at = [np.asarray([y for x, y in zip(xs, ys) if x == u], dtype=float) for u in ux]
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN x: no point there
                mean = np.array([np.nanmean(a) for a in at])
                lo = np.array([np.nanmin(a) for a in at])
                hi = np.array([np.nanmax(a) for a in at])
            left.errorbar(
                ux,
                mean,
                yerr=np.nan_to_num(np.clip([mean - lo, hi - mean], 0, None)),
                fmt="none",
                ecolor=color,
                capsize=3,
                lw=1,
                zorder=2,
            )
            mark(left.scatter(ux, mean, label=f"{text} (mean over seeds)", zorder=3, **style))
        else:
            mark(left.scatter(xs, ys, label=text, zorder=3, **style))
    left.axhline(
        purity_threshold, color="k", ls=":", lw=1, label=f"purity threshold {purity_threshold:g}"
    )
    onsets = [(x, r["clean_from"]) for x, r in zip(xs, rows) if r.get("clean_from") is not None]
    if onsets:
        mark(
            right.scatter(
                *zip(*onsets),
                color=head_color(2),
                marker="^",
                label="allocation becomes clean",
                zorder=3,
            )
        )
    drifted = [(x, r["drift_time"]) for x, r in zip(xs, rows) if r["drift_time"] is not None]
    kept = [(x, r["final_time"]) for x, r in zip(xs, rows) if r["drift_time"] is None]
    if drifted:
        mark(right.scatter(*zip(*drifted), color=head_color(3), label="drift starts", zorder=3))
    if kept:
        mark(
            right.scatter(
                *zip(*kept),
                facecolor="none",
                edgecolor=head_color(3),
                label="no drift until the end (or never clean)",
                zorder=3,
            )
        )
    right.set_yscale("log")
    for ax in (left, right):
        if pur["numeric"]:
            values = sorted({x for x in xs})
            if values and min(values) > 0 and max(values) / min(values) >= 8:
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xticks(values, [f"{v:g}" for v in values])
        else:
            ax.set_xticks(range(len(labels)), labels)
        ax.set_xlabel(axis_label(pur["x_name"]))
    _enough_log_ticks(right, "y")
    left.set_ylim(0, 1.05)
    left.set_ylabel("lowest purity over tasks (fraction)")
    left.set_title(f"clean at the end: {pur['clean_end']}/{pur['total']} runs")
    right.set_ylabel("gradient-flow time t = lr × steps (log scale)")
    right.set_title("when allocation becomes clean, and when it drifts")
    left.legend(fontsize=7.5)
    right.legend(fontsize=7.5)
    fig.suptitle(f"{experiment}: allocation purity across the sweep", fontsize=10.5)
    return _check(fig), {"experiment": experiment, **pur}


def winner_figure(runs: Sequence[M.RunData], experiment: str) -> tuple[Figure, dict]:
    """C4: predicted (from the initial semi-singular values) against observed winner head, counted
    over runs and tasks; the diagonal is agreement."""
    setup_style()
    win = M.measure_winners(runs)
    heads = win["heads"]
    counts = np.asarray(win["confusion"], dtype=float)
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(FIG_WIDTH, 3.7), gridspec_kw={"width_ratios": [1, 1.7]}
    )
    image = left.imshow(counts, cmap="Blues", vmin=0, vmax=max(counts.max(), 1))
    mark(image)
    for (r, c), value in np.ndenumerate(counts):
        left.text(
            c,
            r,
            f"{value:.0f}",
            ha="center",
            va="center",
            color="white" if value > counts.max() / 2 else "black",
        )
    left.set_xticks(range(heads))
    left.set_yticks(range(heads))
    left.grid(False)
    left.set_xlabel("observed winner head (cleanest allocation)")
    left.set_ylabel("predicted winner head (t = 0)")
    left.set_title(f"{win['agree']}/{win['total']} (run, task) pairs agree")
    for k, r in enumerate(win["pairs"]):
        ok = r["predicted"] == r["observed"]
        mark(
            right.scatter(k, r["observed"], color=task_color(r["task"]), marker="o", s=40, zorder=3)
        )
        right.scatter(
            k,
            r["predicted"],
            facecolor="none",
            edgecolor="k" if ok else "crimson",
            marker="s",
            s=90,
            zorder=2,
        )
    right.set_xticks(
        range(len(win["pairs"])),
        [f"{p['run'].split('/')[-1]}\ntask {p['task']}" for p in win["pairs"]],
        fontsize=6.5,
        rotation=90,
    )
    right.set_yticks(range(heads))
    right.set_ylim(-0.5, heads - 0.5)
    right.set_ylabel("head")
    right.set_title("observed (dot, task colour), predicted (square; red: wrong)")
    fig.suptitle(f"{experiment}: which head takes which task", fontsize=10.5)
    return _check(fig), {"experiment": experiment, **win}


def _ratio_figure(
    gap: Mapping[str, Any],
    experiment: str,
    threshold: float,
    ylabel: str,
    title: str,
    label: str,
    color,
) -> Figure:
    fig, ax = plt.subplots(figsize=(FIG_WIDTH * 0.65, 3.8))
    x = np.asarray(gap["x"], dtype=float)
    ratio, lo, hi = (np.asarray(gap[k], dtype=float) for k in ("ratio", "low", "high"))
    mark(
        ax.errorbar(
            x,
            ratio,
            yerr=[np.clip(ratio - lo, 0, None), np.clip(hi - ratio, 0, None)],
            fmt="o-",
            color=color,
            capsize=3,
            label=label,
        )
    )
    ax.axhline(1, color="0.4", lw=1)
    ax.axhline(threshold, color="crimson", ls=":", lw=1.2, label=f"threshold {threshold:g}")
    if gap["x_name"] in ("context_length", "L") and x.size and x.min() > 0:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xticks(x, [f"{v:g}" for v in x])
    elif x.size:
        ax.set_xticks(x, [f"{v:g}" for v in x])
    ax.set_xlabel(axis_label(gap["x_name"]))
    ax.set_ylabel(ylabel)
    ax.set_title(f"{experiment}: {title}")
    ax.legend(fontsize=7.5, loc="best")
    return fig


def optimality_figure(opt: xr.Dataset, experiment: str, max_ratio: float) -> tuple[Figure, dict]:
    """C5: excess(trained) / excess(best in class) against the swept parameter, with its interval,
    the line 1 and the constant-factor threshold."""
    setup_style()
    gap = M.measure_optimality(opt, max_ratio)
    if not np.isfinite(np.asarray(gap["ratio"], dtype=float)).any():
        return no_trained_limit_figure(opt, experiment, "optimality ratio")
    fig = _ratio_figure(
        gap,
        experiment,
        max_ratio,
        "excess(trained) / excess(best in class)",
        f"optimality ratio against {param_name(gap['x_name'])}",
        "ratio with its interval",
        head_color(0),
    )
    return _check(fig), {"experiment": experiment, **gap}


def separation_figure(opt: xr.Dataset, experiment: str, min_ratio: float) -> tuple[Figure, dict]:
    """C6: excess(best single head) / excess(best multi-head) against the number of tasks (both
    from the best-in-class search)."""
    setup_style()
    sep = M.measure_separation(opt, min_ratio)
    fig = _ratio_figure(
        sep,
        experiment,
        min_ratio,
        "excess(best single head) / excess(best multi-head)",
        "single- versus multi-head",
        "ratio with its interval",
        head_color(1),
    )
    return _check(fig), {"experiment": experiment, **sep}


def baselines_figure(opt: xr.Dataset, experiment: str) -> tuple[Figure, dict]:
    """C5: excess risk of every predictor against L, log-log, with ± 2 SE bars; predictors in
    three groups (trained, model class, reference), each with its own colour family."""
    setup_style()
    base = M.measure_baselines(opt)
    fig, ax = plt.subplots(figsize=(FIG_WIDTH * 0.8, 4.3))
    x = np.asarray(base["x"], dtype=float)
    names = list(base["predictors"])
    grouped = [n for members in PREDICTOR_GROUPS.values() for n in members if n in names]
    order = grouped + [n for n in names if n not in grouped]
    spread = 0.02 * math.log(x.max() / x.min()) if x.size > 1 and x.min() > 0 else 0.0
    handles: dict[str, list] = {g: [] for g in [*PREDICTOR_GROUPS, "other"]}
    for k, name in enumerate(order):
        values = base["predictors"][name]
        y = np.asarray(values["excess"], dtype=float)
        se = np.nan_to_num(np.asarray(values["se"], dtype=float))
        ok = np.isfinite(y) & (y > 0)
        if not ok.any():
            continue
        color, marker, filled, ls = PREDICTOR_STYLES.get(
            name, (HEAD_COLORS[k % len(HEAD_COLORS)], "o", True, "-")
        )
        shift = math.exp(spread * (k - (len(order) - 1) / 2) / max(len(order) - 1, 1) * 2)
        bars = ax.errorbar(
            x[ok] * shift,
            y[ok],
            yerr=2 * se[ok],
            fmt=marker,
            ls=ls,
            color=color,
            mfc=color if filled else "white",
            mec=color,
            ms=(7 if marker == "*" else 5) if filled else 8,
            mew=1.3,
            lw=1.3,
            capsize=2,
            zorder=4 if filled else 3,  # hollow, larger markers below: equal curves both show
            label=PREDICTOR_LABELS.get(name, name.replace("_", " ")),
        )
        mark(bars)
        group = next((g for g, m in PREDICTOR_GROUPS.items() if name in m), "other")
        handles[group].append(bars)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    if x.size:
        ax.set_xticks(x, [f"{v:g}" for v in x])
    _enough_log_ticks(ax, "y")
    ax.set_xlabel(
        axis_label(base["x_name"]) + f"; points of one {param_name(base['x_name'])} slightly spread"
    )
    ax.set_ylabel(f"excess risk R − σ² ({RISK_UNITS})")
    ax.set_title(f"{experiment}: every predictor against {param_name(base['x_name'])}")
    y0 = 1.0
    for group, members in handles.items():
        if not members:
            continue
        legend = ax.legend(
            members,
            [h.get_label() for h in members],
            title=group,
            fontsize=7.5,
            loc="upper left",
            bbox_to_anchor=(1.01, y0),
            frameon=False,
            alignment="left",
        )
        ax.add_artist(legend)
        y0 -= 0.062 * (len(members) + 1.6)
    return _check(fig), {
        "experiment": experiment,
        **base,
        "labels": {n: PREDICTOR_LABELS.get(n, n.replace("_", " ")) for n in base["predictors"]},
    }


def regimes_figure(
    runs: Sequence[M.RunData], experiment: str, min_corr: float
) -> tuple[Figure, dict]:
    """C8: n_eff / L of each task's winning head at the end of training against the noise level,
    and omega^2 d_i of it against ln L (saturation above)."""
    setup_style()
    reg = M.measure_regimes(runs, min_corr)
    flow = M.measure_flow_regimes(runs)
    fig, (left, right) = plt.subplots(1, 2, figsize=(FIG_WIDTH, 3.8))
    pts = reg["points"]
    for i in sorted({p["task"] for p in flow["points"]}):
        mine = [p for p in flow["points"] if p["task"] == i]
        mark(
            left.scatter(
                [p["noise_std"] for p in mine],
                [M.num(p["neff_run_end"]) for p in mine],
                facecolor="none",
                edgecolor=task_color(i),
                marker="D",
                s=46,
                label="exact flow (◇, task colours)" if i == 0 else None,
                zorder=4,
            )
        )
    for i in sorted({p["task"] for p in pts}):
        mine = [p for p in pts if p["task"] == i]
        mark(
            left.scatter(
                [p["noise_std"] for p in mine],
                [M.num(p["neff_over_L"]) for p in mine],
                color=task_color(i),
                label=f"task {i}",
                zorder=3,
            )
        )
        mark(
            right.scatter(
                [p["noise_std"] for p in mine],
                [p["omega2d"] for p in mine],
                color=task_color(i),
                label=f"task {i}",
                zorder=3,
            )
        )
    for L in sorted({p["context_length"] for p in pts if p["context_length"] > 0}):
        right.axhline(math.log(L), color="0.3", ls="--", lw=1, label=f"ln L = {math.log(L):.2f}")
    left.set_ylim(0, 1.05)
    left.set_xlabel("noise σ (output units)")
    left.set_ylabel("n_eff / L of the winning head (fraction)")
    left.set_title(
        f"ρ(σ, n_eff/L): trained {M.fmt(reg['spearman'])}"
        + (f", exact flow {M.fmt(flow['spearman_run_end'])} (◇)" if flow["points"] else "")
    )
    right.set_xlabel("noise σ (output units)")
    right.set_ylabel("ω² d_i of the winning head (dimensionless)")
    right.set_title("above ln L: saturated softmax")
    left.legend(fontsize=7.5)
    right.legend(fontsize=7.5)
    fig.suptitle(f"{experiment}: softmax regimes across the noise sweep", fontsize=10.5)
    return _check(fig), {"experiment": experiment, **reg, "flow": flow}


def flow_figure(
    runs: Sequence[M.RunData], experiment: str, gap_threshold: float
) -> tuple[Figure, dict]:
    """C7, like with like: per run, the trained task signals p_i(t) (solid), gradient descent on
    the exact risk at the run's lr (dotted) and the exact flow (dashed), to the run's end."""
    setup_style()
    flows = [(r, M.measure_flow(r)) for r in runs if r.flow is not None and r.spectral is not None]
    if not flows:
        raise ValueError(f"{experiment}: no run with a flow.nc")
    fig, axes = plt.subplots(1, len(flows), figsize=(FIG_WIDTH, 3.6), sharey=True, squeeze=False)
    for ax, (r, m) in zip(axes[0], flows):
        s, f = r.spectral, r.flow
        t = s["time"].values.astype(float)
        signal = s["signal"].transpose("time", "task").values
        tf = f["time"].values.astype(float)
        inside = (tf > 0) & (tf <= t[-1])
        tg = f["gd_time"].values.astype(float)
        for i in range(signal.shape[1]):
            color = task_color(i)
            mark(
                ax.plot(t[t > 0], signal[t > 0, i], color=color, lw=1.6, label=f"task {i}: trained")
            )
            mark(ax.plot(tf[inside], f["signal"].values[inside, i], color=color, ls="--", lw=1.2))
            if tg.size > 1:
                mark(
                    ax.plot(
                        tg[tg > 0], f["signal_gd"].values[tg > 0, i], color=color, ls=":", lw=1.6
                    )
                )
        _log_time(ax)
        if tg.size > 1:  # the window the comparison is about: through emergence, where GD was run
            ax.set_xlim(max(float(tg[1]), 1.0), float(tg[-1]))
        ax.set_title(
            f"{r.run}\ntrained vs GD {M.fmt(m['train_gd_gap'], 2)}; flow vs GD "
            f"{M.fmt(m['flow_gd_gap'], 2)}",
            fontsize=9,
        )
        ax.set_ylim(-0.05, 1.1)
    axes[0, 0].set_ylabel("task signal p_i (1 = solved)")
    handles = [
        plt.Line2D([], [], color="0.2", lw=1.6),
        plt.Line2D([], [], color="0.2", ls=":", lw=1.6),
        plt.Line2D([], [], color="0.2", ls="--", lw=1.2),
    ]
    labels = [
        "trained (batch noise, lr)",
        "gradient descent on the exact risk at the run's lr",
        "exact gradient flow",
    ]
    fig.legend(handles, labels, loc="outside lower center", ncol=3)
    fig.suptitle(
        f"{experiment}: training against the noiseless references from the same init, through "
        "emergence (colours: tasks)",
        fontsize=10.5,
    )
    return _check(fig), {
        "experiment": experiment,
        "flows": [m for _, m in flows],
        "threshold": gap_threshold,
    }


def limit_figure(runs: Sequence[M.RunData], experiment: str) -> tuple[Figure, dict]:
    """C1: the exact flow to its long horizon (log-log): each task's own-head omega and mu, the
    other heads' |mu|, the excess risk and the population gradient norm, with the trained run's.
    Runs that differ only in the seed are pooled: their mean, with the min-max range as a band."""
    setup_style()
    flows = [(r, M.measure_flow(r)) for r in M.distinct_flows(runs)]
    if not flows:
        raise ValueError(f"{experiment}: no run with a flow.nc")
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(FIG_WIDTH, 3.7))
    varied = M.varied_keys([r for r, _ in flows])
    groups: dict[str, list] = {}
    for r, m in flows:
        key = ", ".join(f"{k}={r.params.get(k)}" for k in varied)
        groups.setdefault(key, []).append((r, m))
    for k, (key, members) in enumerate(groups.items()):
        times = [r.flow["time"].values.astype(float) for r, _ in members]
        run_times = [r.flow["run_time"].values.astype(float) for r, _ in members]
        same = all(t.shape == times[0].shape and np.allclose(t, times[0]) for t in times) and all(
            t.shape == run_times[0].shape and np.allclose(t, run_times[0]) for t in run_times
        )
        parts = [members] if same else [[member] for member in members]
        for part in parts:
            series = [_limit_series(r.flow) for r, _ in part]
            t, rt = part[0][0].flow["time"].values.astype(float), run_times[0]
            if not same:
                rt = part[0][0].flow["run_time"].values.astype(float)
            keep, rkeep = t > 0, rt > 0
            color = head_color(k)
            classes = ", ".join(sorted({m["end_class"] for _, m in part}))
            name = (group_label(key) if key else experiment) if len(part) > 1 else part[0][0].run
            label = f"{name}: {classes}"

            def draw_pooled(ax, name, tk, kp, series=series, color=color, **line):
                values = [x[name][kp] for x in series]
                _pooled(ax, tk[kp], values, color, line.pop("label", None), **line)

            draw_pooled(left, "own_omega", t, keep, label=label)
            draw_pooled(left, "own_mu", t, keep, ls="--")
            if all(x["others"] is not None for x in series):
                draw_pooled(left, "others", t, keep, ls=":", lw=1)
            draw_pooled(middle, "excess", t, keep, label=name)
            draw_pooled(middle, "trained_excess", rt, rkeep, lw=0.8, alpha=0.6)
            draw_pooled(right, "grad_norm", t, keep)
            draw_pooled(right, "trained_grad_norm", rt, rkeep, lw=0.8, alpha=0.6)
    for ax in (left, middle, right):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("gradient-flow time t (log scale)")
    left.set_ylabel("|ω| own (solid), |μ| own (dashed),\n|μ| others (dotted)")
    left.set_title("semi-singular values")
    middle.set_ylabel(f"excess risk R − σ² ({RISK_UNITS})")
    middle.set_title("excess: flow, trained (thin)")
    right.set_ylabel("population gradient norm")
    right.set_title("gradient norm: flow, trained (thin)")
    fig.legend(*left.get_legend_handles_labels(), loc="outside lower center", fontsize=7.5)
    fig.suptitle(
        f"{experiment}: the exact gradient flow from each run's init to t = "
        f"{M.fmt(flows[0][1]['horizon'])}",
        fontsize=10.5,
    )
    return _check(fig), {"experiment": experiment, "flows": [m for _, m in flows]}


def _limit_series(f: xr.Dataset) -> dict[str, np.ndarray | None]:
    """The limit figure's curves of one flow.nc: each task's own head (the final winner) |omega|
    and |mu| averaged over tasks, the other heads' |mu|, excess and gradient norms."""
    omega, mu = f["omega"].values, f["mu"].values
    winners = f["winner"].values[-1]
    heads, tasks = omega.shape[1:]
    others = [np.abs(mu[:, h, i]) for i in range(tasks) for h in range(heads) if h != winners[i]]
    return {
        "own_omega": np.mean([np.abs(omega[:, winners[i], i]) for i in range(tasks)], axis=0),
        "own_mu": np.mean([np.abs(mu[:, winners[i], i]) for i in range(tasks)], axis=0),
        "others": np.mean(others, axis=0) if others else None,
        "excess": f["excess"].values,
        "grad_norm": f["grad_norm"].values,
        "trained_excess": f["trained_excess"].values,
        "trained_grad_norm": f["trained_grad_norm"].values,
    }


def complexity_figure(runs: Sequence[M.RunData], experiment: str) -> tuple[Figure, dict]:
    """C2, C4: tasks of different complexity in one model. Per run, each task's signal p_i along the
    exact flow (solid) and in training (thin), the warm-up law's t*_i (dashed) and the flow's
    observed warm-up end (dot)."""
    setup_style()
    runs = [r for r in M.distinct_runs(runs) if r.spectral is not None]
    if not runs:
        raise ValueError(f"{experiment}: no run with a spectral.nc")
    fig, panels = plt.subplots(1, len(runs), figsize=(FIG_WIDTH, 3.5), squeeze=False, sharey=True)
    measured = []
    for ax, r in zip(panels[0], runs):
        m = M.measure_complexity(r)
        measured.append(m)
        t = r.spectral["time"].values.astype(float)
        signal = r.spectral["signal"].transpose("time", "task").values
        for task in m["tasks"]:
            i, color = task["task"], task_color(task["task"])
            label = f"task {i}: d = {task['d']}, κ = {M.fmt(task['kappa'])}"
            if r.flow is not None:
                ft = r.flow["time"].values.astype(float)
                keep = (ft > 0) & (ft <= 3 * t[-1])
                mark(ax.plot(ft[keep], r.flow["signal"].values[keep, i], color=color, label=label))
            keep = t > 0
            mark(
                ax.plot(
                    t[keep],
                    signal[keep, i],
                    color=color,
                    lw=0.8,
                    ls=":",
                    label=None if r.flow is not None else label,
                )
            )
            if task["law_time"]:
                ax.axvline(task["law_time"], color=color, ls="--", lw=1)
            if task["flow_warmup_end"]:
                ax.plot(
                    [task["flow_warmup_end"]],
                    [0.1 * max(r.flow["signal"].values[:, i].max(), 1e-9)],
                    "o",
                    color=color,
                    ms=5,
                )
        ax.set_xscale("log")
        ax.set_xlabel("gradient-flow time t (log scale)")
        ax.set_title(r.run.split("/", 1)[1], fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
    panels[0][0].set_ylabel("task signal p_i")
    fig.suptitle(
        f"{experiment}: exact flow (solid), trained (dotted), the warm-up law's t*_i (dashed), "
        "the flow's warm-up end (dot)",
        fontsize=9.5,
    )
    return _check(fig), {"experiment": experiment, "runs": measured}


def diverged_figure(runs: Sequence[M.RunData], target: str, kind: str) -> tuple[Figure, dict]:
    """In place of a figure of ``kind`` whose runs all diverged: their recorded risk against the
    step, and why the figure itself is not drawn."""
    setup_style()
    fig, ax = plt.subplots(figsize=(FIG_WIDTH * 0.65, 3.4))
    for k, r in enumerate(runs):
        step = np.asarray(r.train["step"].values, dtype=float)
        series = {
            name.replace("_", " "): np.asarray(r.train[name].values, dtype=float)
            for name in ("eval_risk", "train_risk")
        }
        if not any(
            np.isfinite(v).any() for v in series.values()
        ):  # diverged at step 0: show the size of the init
            with np.errstate(over="ignore", invalid="ignore"):
                size = np.sqrt(
                    np.square(r.train["W"].values.astype(np.float64)).sum(axis=(1, 2, 3))
                    + np.square(r.train["U"].values.astype(np.float64)).sum(axis=(1, 2, 3))
                )
            series = {"parameter norm ||(W, U)|| (no finite risk)": size}
        for (name, values), style in zip(series.items(), ("o-", "s:")):
            keep = np.isfinite(values)
            mark(
                ax.plot(
                    step[keep], values[keep], style, color=head_color(k), label=f"{r.run}: {name}"
                )
            )
        at = r.train.attrs.get("diverged_at_step")
        if at is not None:
            ax.axvline(float(at), color=head_color(k), ls="--", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step (dashed: where training stopped)")
    ax.set_ylabel(f"risk ({RISK_UNITS}), or the parameter norm")
    ax.legend(fontsize=7)
    notes = [M.divergence_note(r) for r in runs]
    ax.set_title(f"{target}: figure {kind} not drawn - training diverged", fontsize=10)
    text = (
        f"Training diverged ({'; '.join(notes)}); the figure shows the risk recorded before it "
        "stopped."
    )
    return _check(fig), {"unavailable": text, "diverged_runs": notes, "experiment": target}


def no_trained_limit_figure(opt: xr.Dataset, experiment: str, title: str) -> tuple[Figure, dict]:
    """In place of a ratio figure whose trained limits are all missing (their runs diverged): the
    best in class of each configuration, which the search found all the same."""
    setup_style()
    x_name, x = M._swept(opt)
    fig, ax = plt.subplots(figsize=(FIG_WIDTH * 0.65, 3.4))
    mark(
        ax.plot(
            x,
            opt["excess_best_in_class"].values,
            "o",
            color=head_color(0),
            label="best in class (excess)",
        )
    )
    ax.set_xlabel(axis_label(x_name))
    ax.set_ylabel(f"excess risk ({RISK_UNITS})")
    ax.set_title(f"{experiment}: {title} not drawn - no trained limit", fontsize=10)
    ax.legend(fontsize=7)
    text = (
        "No configuration has a trained limit (every run of it diverged); the figure shows the "
        "best in class alone."
    )
    return _check(fig), {"unavailable": text, "experiment": experiment}


REGIME_COLORS = {
    "finite_limit_allocated": "#1a7f37",
    "finite_limit_superposed": "#bf8700",
    "drifting": "#cf222e",
    "not_resolved": "#8c959f",
}
REGIME_LABELS = {
    "finite_limit_allocated": "finite limit, allocated",
    "finite_limit_superposed": "finite limit, superposed",
    "drifting": "drifting",
    "not_resolved": "not resolved",
}


def regime_map_figure(gathered: xr.Dataset, experiment: str) -> tuple[Figure, dict]:
    """C1, C3: one phase diagram per pair of the map's axes (the other axes at their middle grid
    value); each cell split into one stripe per init (designated leaders, none, seeds), coloured by
    the regime of its flow, annotated with the median excess ratio to the best in class."""
    from .regime_map import REGIMES, summarise

    setup_style()
    axes_keys = json.loads(gathered.attrs["axes"])
    init_keys = json.loads(gathered.attrs.get("init_keys", "[]"))
    meanings = gathered["regime"].attrs["flag_meanings"].split()
    regime = [meanings[int(v)] for v in gathered["regime"].values]
    values = {k: gathered[k].values for k in axes_keys}
    # the other axes of a panel sit at their middle grid value (H = I in a heads axis {1, I, ...})
    first = {k: sorted(set(v.tolist()))[(len(set(v.tolist())) - 1) // 2] for k, v in values.items()}
    pairs = (
        list(itertools.combinations(axes_keys, 2))
        if len(axes_keys) > 1
        else [(axes_keys[0], None)]
        if axes_keys
        else [(None, None)]
    )
    fig, panels = plt.subplots(
        1, len(pairs), figsize=(min(FIG_WIDTH, 3.6 * len(pairs) + 0.6), 3.6), squeeze=False
    )
    inits = sorted(
        {tuple(gathered[k].values[n] for k in init_keys) for n in range(gathered.sizes["point"])}
    )
    for ax, (a, b) in zip(panels[0], pairs):
        others = [k for k in axes_keys if k not in (a, b)]
        keep = np.ones(gathered.sizes["point"], dtype=bool)
        for k in others:
            keep &= values[k] == first[k]
        xs = sorted(set(values[a][keep].tolist())) if a else [0]
        ys = sorted(set(values[b][keep].tolist())) if b else [0]
        for n in np.flatnonzero(keep):
            i = xs.index(values[a][n]) if a else 0
            j = ys.index(values[b][n]) if b else 0
            k = inits.index(tuple(gathered[key].values[n] for key in init_keys))
            width = 1.0 / len(inits)
            mark(
                ax.add_patch(
                    plt.Rectangle(
                        (i + k * width, j),
                        width,
                        1.0,
                        facecolor=REGIME_COLORS[regime[n]],
                        edgecolor="white",
                        lw=1.5,
                    )
                )
            )
        for i, x in enumerate(xs):
            for j, y in enumerate(ys):
                here = keep & ((values[a] == x) if a else True) & ((values[b] == y) if b else True)
                ratios = gathered["excess_ratio"].values[here]
                if np.isfinite(ratios).any():
                    ax.text(
                        i + 0.5,
                        j + 0.5,
                        f"×{np.nanmedian(ratios):.2f}",
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white",
                        fontweight="bold",
                    )
        ax.set_xlim(0, len(xs))
        ax.set_ylim(0, len(ys))
        ax.set_xticks(np.arange(len(xs)) + 0.5, [M.fmt(x) for x in xs] if a else [""])
        ax.set_yticks(np.arange(len(ys)) + 0.5, [M.fmt(y) for y in ys] if b else [""])
        ax.set_xlabel(axis_label(a))
        ax.set_ylabel(axis_label(b))
        ax.grid(False)
        fixed = ", ".join(f"{param_name(k)} = {M.fmt(first[k])}" for k in others)
        ax.set_title(fixed and f"at {fixed}", fontsize=9)
    handles = [plt.Rectangle((0, 0), 1, 1, facecolor=REGIME_COLORS[m]) for m in REGIMES.values()]
    fig.legend(
        handles,
        [REGIME_LABELS[m] for m in REGIMES.values()],
        loc="lower center",
        ncol=4,
        fontsize=8,
        bbox_to_anchor=(0.5, -0.12),
    )
    order = (
        " | ".join(
            ", ".join(f"{param_name(k)} = {M.fmt(v)}" for k, v in zip(init_keys, init))
            for init in inits
        )
        if init_keys
        else "one init"
    )
    fig.suptitle(
        f"{experiment}: end state of the exact flow at t = "
        f"{M.fmt(float(gathered.attrs['horizon']))}; "
        f"stripes left to right: {order}",
        fontsize=9.5,
    )
    numbers = summarise(gathered)
    numbers.update(
        experiment=experiment, axes=axes_keys, init_keys=init_keys, inits=[list(i) for i in inits]
    )
    return _check(fig), numbers


def length_figure(
    runs: Sequence[M.RunData], experiment: str, max_ratio: float
) -> tuple[Figure, dict]:
    """C9: excess risk of the trained model at context lengths L' against L', training L marked."""
    setup_style()
    gen = M.measure_length(runs, max_ratio)
    fig, ax = plt.subplots(figsize=(FIG_WIDTH * 0.65, 3.9))
    for k, r in enumerate(gen["runs"]):
        x, y, se = (np.asarray(r[key], dtype=float) for key in ("lengths", "excess", "se"))
        color = HEAD_COLORS[k % len(HEAD_COLORS)]
        ok = np.isfinite(y) & (y > 0)
        mark(
            ax.errorbar(
                x[ok],
                y[ok],
                yerr=2 * se[ok],
                fmt="o-",
                color=color,
                capsize=2,
                ms=4,
                label=r["run"],
            )
        )
        ax.axvline(r["train_length"], color=color, ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    lengths = sorted({v for r in gen["runs"] for v in r["lengths"]})
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    if lengths:
        ax.set_xticks(lengths, [f"{v:g}" for v in lengths])
    ax.set_xlabel("evaluation context length L' (tokens; dotted: training L)")
    ax.set_ylabel(f"excess risk R − σ² ({RISK_UNITS})")
    ax.set_title(f"{experiment}: length generalisation")
    ax.legend(fontsize=7.5)
    return _check(fig), {"experiment": experiment, **gen}


def comparison_figure(
    runs: Sequence[M.RunData], experiment: str, purity_threshold: float, title: str
) -> tuple[Figure, dict]:
    """C9 (softmax vs linear attention, nonlinear target): evaluation risk against time, coloured by
    what the experiment varies (seeds of one setting pooled: mean and min-max band), and the final
    purity per task."""
    setup_style()
    comp = M.measure_comparison(runs, purity_threshold)
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(FIG_WIDTH, 3.9), gridspec_kw={"width_ratios": [1.5, 1]}
    )
    colors = {g: HEAD_COLORS[k % len(HEAD_COLORS)] for k, g in enumerate(comp["groups"])}
    members = {g: [(r, d) for r, d in zip(comp["runs"], runs) if r["group"] == g] for g in colors}
    for group, mine in members.items():
        times = [np.asarray(d.train["time"].values, dtype=float) for _, d in mine]
        if all(t.shape == times[0].shape and np.allclose(t, times[0]) for t in times):
            keep = times[0] > 0  # seeds of one group share the time grid: pooled, mean and band
            risks = [d.train["eval_risk"].values[keep] for _, d in mine]
            _pooled(left, times[0][keep], risks, colors[group], group_label(group), alpha=0.9)
        else:
            for (_, d), t in zip(mine, times):
                mark(
                    left.plot(
                        t[t > 0],
                        d.train["eval_risk"].values[t > 0],
                        color=colors[group],
                        alpha=0.85,
                        label=group_label(group),
                    )
                )
    floor = comp["runs"][0]["noise_floor"] if comp["runs"] else math.nan
    if math.isfinite(floor):
        left.axhline(floor, color="k", ls=":", lw=1, label=f"σ² = {floor:.3g}")
    handles, labels = left.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    left.legend(unique.values(), unique.keys(), fontsize=7.5)
    left.set_yscale("log")
    _enough_log_ticks(left, "y")
    _log_time(left)
    left.set_ylabel(f"evaluation risk ({RISK_UNITS})")
    varied = ", ".join(param_name(k) for k in comp["varied"].split(", ") if k)
    left.set_title(f"risk, by {varied or 'seed'}")
    n = max(len(members), 1)
    width = 0.8 / n
    for k, (group, mine) in enumerate(members.items()):
        purity = np.asarray([r["purity"] for r, _ in mine], dtype=float)
        xs = np.arange(purity.shape[1]) + (k - (n - 1) / 2) * width
        mean = np.nan_to_num(np.nanmean(purity, axis=0)) if np.isfinite(purity).any() else 0 * xs
        mark(list(right.bar(xs, mean, width=width, color=colors[group], edgecolor="white")))
        if len(mine) > 1:  # seeds: the bar is their mean, the whisker their range
            lo, hi = np.nanmin(purity, axis=0), np.nanmax(purity, axis=0)
            whiskers = np.nan_to_num(np.clip([mean - lo, hi - mean], 0, None))
            right.errorbar(xs, mean, yerr=whiskers, fmt="none", ecolor="0.2", capsize=3, lw=1)
    right.axhline(purity_threshold, color="k", ls=":", lw=1)
    tasks = max((len(r["purity"]) for r in comp["runs"]), default=0)
    right.set_xticks(range(tasks), [f"task {i}" for i in range(tasks)])
    right.set_ylim(0, 1.05)
    right.set_ylabel("purity at the end of training (fraction)")
    pooled = any(len(m) > 1 for m in members.values())
    right.set_title(
        "winning head's share per task"
        + (" (mean; whiskers: min-max over seeds)" if pooled else ", each run")
        + f"\ndotted: purity threshold {purity_threshold:g}",
        fontsize=9.5,
    )
    fig.suptitle(title, fontsize=10.5)
    return _check(fig), {"experiment": experiment, **comp}


def practical_figure(
    runs: Sequence[M.RunData], experiment: str, purity_threshold: float
) -> tuple[Figure, dict]:
    """Q1: the evaluation risk of each model against optimizer steps, with the per-prompt OLS and
    tuned ridge on the same evaluation set; the purity of the cleanest layer over training (head
    ablation at the parameter snapshots); and each run's (and layer's) head x task ablation shares
    at the end, where a clean allocation is one bright cell per task column."""
    setup_style()
    runs = [d for d in runs if d.ablation is not None]
    if not runs:
        raise ValueError(f"{experiment}: no run has an ablation read-out (ablation.nc)")
    m = M.measure_practical(runs, purity_threshold)
    seen, first_seeds = set(), []  # heat maps for the first seed of each setting only
    for r, d in zip(m["runs"], runs):
        key = json.dumps({k: v for k, v in d.params.items() if k != "seed"}, sort_keys=True)
        if key not in seen:
            seen.add(key)
            first_seeds.append((r, d))
    panels = [(r, d, k) for r, d in first_seeds for k in range(r["layers"])]
    columns = max(len(panels), 2)
    fig = plt.figure(figsize=(FIG_WIDTH, 6.6), layout="constrained")
    grid = fig.add_gridspec(2, columns, height_ratios=[1.2, 1])
    half = columns // 2
    left = fig.add_subplot(grid[0, :half])
    middle = fig.add_subplot(grid[0, half:])
    for k, (r, d) in enumerate(zip(m["runs"], runs)):
        color = HEAD_COLORS[k % len(HEAD_COLORS)]
        steps = np.asarray(d.train["step"].values, dtype=float)
        keep = steps > 0
        mark(
            left.plot(
                steps[keep], d.train["eval_risk"].values[keep], color=color, label=model_label(r)
            )
        )
        ab = d.ablation
        if "purity_over_time" in ab:
            at = np.asarray(ab["snapshot_step"].values, dtype=float)
            purity = ab["purity_over_time"].transpose("snapshot", "layer", "task").values
            lowest = np.nan_to_num(purity, nan=0.0).min(axis=2)  # a task no head serves: 0
            best = np.nanmax(lowest, axis=1)  # the cleanest layer's lowest purity
            shown = at > 0
            mark(
                middle.plot(
                    at[shown], best[shown], color=color, marker="o", ms=4, label=model_label(r)
                )
            )
    styles = {"ridge_tuned": ("k", "--", "ridge (λ tuned)"), "ols_block": ("0.45", ":", "OLS")}
    sets = {json.dumps(r["baselines"], sort_keys=True): r for r in m["runs"]}  # one per eval set
    for r in sets.values():
        where = f", L = {r['context_length']}" if len(sets) > 1 else ""
        for name, (color, style, label) in styles.items():
            value = r["baselines"].get(name)
            if value is not None and math.isfinite(value):
                left.axhline(
                    value, color=color, ls=style, lw=1.1, label=f"{label} {value:.3g}{where}"
                )
    left.set_xscale("log")
    left.set_yscale("log")
    _enough_log_ticks(left, "y")
    left.set_xlabel("optimizer step")
    left.set_ylabel(f"evaluation risk ({RISK_UNITS})")
    left.legend(fontsize=7.5, loc="lower left")
    left.set_title("risk against per-prompt baselines", fontsize=9.5)
    middle.axhline(
        purity_threshold, color="k", ls=":", lw=1, label=f"threshold {purity_threshold:g}"
    )
    middle.set_xscale("log")
    middle.set_ylim(0, 1.05)
    middle.set_xlabel("optimizer step")
    middle.set_ylabel("lowest purity over the tasks (fraction)")
    middle.legend(fontsize=7.5)
    middle.set_title("over training: the cleanest layer's lowest purity", fontsize=9.5)
    image = None
    for p, (r, d, layer) in enumerate(panels):
        ax = fig.add_subplot(grid[1, p])
        share = d.ablation["share"].transpose("layer", "head", "task").values[layer]
        image = ax.imshow(np.nan_to_num(share), vmin=0, vmax=1, cmap="viridis", aspect="auto")
        mark(image)
        ax.grid(False)
        for h in range(share.shape[0]):
            for i in range(share.shape[1]):
                value = share[h, i]
                ax.text(
                    i,
                    h,
                    "–" if not math.isfinite(value) else f"{value:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if not math.isfinite(value) or value < 0.6 else "black",
                )
        ax.set_xticks(range(share.shape[1]), [f"task {i}" for i in range(share.shape[1])])
        ax.set_yticks(range(share.shape[0]), [f"head {h}" for h in range(share.shape[0])])
        ax.tick_params(labelsize=7)
        state = r["allocation"][layer]
        verdict = "clean" if state["clean"] else "not clean"
        ax.set_title(
            f"{model_label(r)}"
            + (f", layer {layer + 1}" if r["layers"] > 1 else "")
            + (f" ({d.run.rsplit('-', 1)[-1]})" if len(first_seeds) < len(runs) else "")
            + f"\nat the end: {verdict}{'' if state['decided'] else ' (undecided)'}",
            fontsize=8,
        )
    if image is not None:
        bar = fig.colorbar(image, ax=fig.axes[2:], fraction=0.03, pad=0.02, label="ablation share")
        bar.ax.set_gid("colorbar-share")  # a colour scale, not an axes of data (see empty_axes)
    fig.suptitle(
        f"{experiment}: risk, and which head serves which task (head ablation)", fontsize=10.5
    )
    return _check(fig), {"experiment": experiment, **m}


def model_label(row: Mapping[str, Any]) -> str:
    """A practical run's model in words: the one-layer model, or the transformer and its depth."""
    if row["model"] == "transformer":
        return f"transformer, {row['layers']} layer{'s' if row['layers'] > 1 else ''}"
    return {"reduced": "one-layer (paper)", "linear": "linear attention", "full": "full attention"}[
        row["model"]
    ]


# ---------------------------------------------------------------------------------------------
# dispatch (what stages.plot_figure calls)


@dataclass(frozen=True)
class FigureInput:
    """What one figure job loaded: the (non-diverged) runs, the experiment's optimality or map file,
    the surrogate check, the target (run id, experiment or ``suite``) and the verdict thresholds."""

    runs: Sequence[M.RunData]
    target: str
    th: Mapping[str, float]
    optimality: xr.Dataset | None = None
    surrogate: xr.Dataset | None = None
    regime_map: xr.Dataset | None = None


# one adapter per kind of report.FIGURE_KINDS, from the loaded inputs to its draw function
DRAWERS: dict[str, Callable[[FigureInput], tuple[Figure, dict]]] = {
    "convergence": lambda f: convergence_figure(f.runs),
    "limit": lambda f: limit_figure(f.runs, f.target),
    "regime_map": lambda f: regime_map_figure(f.regime_map, f.target),
    "risk": lambda f: risk_figure(
        f.runs[0].train, f.runs[0].spectral, f.target, f.th["emergence_speedup"]
    ),
    "warmup": lambda f: warmup_figure(f.runs, f.target, f.th["warmup_slope_rtol"]),
    "complexity": lambda f: complexity_figure(f.runs, f.target),
    "allocation": lambda f: allocation_figure(f.runs[0].spectral, f.target, f.th["purity"]),
    "heatmaps": lambda f: heatmaps_figure(f.runs[0].train, f.runs[0].spectral, f.target),
    "purity": lambda f: purity_figure(f.runs, f.target, f.th["purity"]),
    "winner": lambda f: winner_figure(f.runs, f.target),
    "optimality": lambda f: optimality_figure(f.optimality, f.target, f.th["optimality_ratio"]),
    "baselines": lambda f: baselines_figure(f.optimality, f.target),
    "separation": lambda f: separation_figure(f.optimality, f.target, f.th["separation_ratio"]),
    "trajectories": lambda f: trajectories_figure(f.runs[0].spectral, f.target),
    "flow": lambda f: flow_figure(f.runs, f.target, f.th["ode_gap"]),
    "surrogate": lambda f: surrogate_figure(f.surrogate),
    "regimes": lambda f: regimes_figure(f.runs, f.target, f.th["regime_correlation"]),
    "length": lambda f: length_figure(f.runs, f.target, f.th["length_ratio"]),
    "linear": lambda f: comparison_figure(
        f.runs, f.target, f.th["purity"], f"{f.target}: softmax versus linear attention"
    ),
    "nonlinear": lambda f: comparison_figure(
        f.runs, f.target, f.th["purity"], f"{f.target}: a nonlinear target"
    ),
    "practical": lambda f: practical_figure(f.runs, f.target, f.th["purity"]),
}
if DRAWERS.keys() != FIGURE_KINDS.keys():  # the registry and its drawers must name the same kinds
    raise ImportError(
        "plots.DRAWERS and report.FIGURE_KINDS differ: "
        f"{sorted(DRAWERS.keys() ^ FIGURE_KINDS.keys())}"
    )


def draw(
    kind: str,
    runs: Sequence[M.RunData],
    optimality: xr.Dataset | None,
    target: str,
    given: Mapping[str, Any],
    surrogate: xr.Dataset | None = None,
    regime_map: xr.Dataset | None = None,
) -> tuple[Figure, dict]:
    """Draw one figure of ``kind`` for ``target`` (a run id, an experiment name or ``suite``)."""
    if kind not in DRAWERS:
        raise ValueError(f"unknown figure kind {kind!r}; known: {', '.join(DRAWERS)}")
    fig, numbers = DRAWERS[kind](
        FigureInput(runs, target, thresholds(given), optimality, surrogate, regime_map)
    )
    if numbers.get("x_name"):  # captions name the swept key in words, as the axes do
        numbers["x_label"] = param_name(numbers["x_name"])
    if numbers.get("varied"):
        numbers["varied_label"] = group_label(numbers["varied"])
    return fig, numbers
