"""One function per pipeline stage: what a Snakemake script (or the CLI) calls with file paths.

Each reads its inputs, computes, and writes its outputs only at the end, atomically.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import io

# Each stage imports its heavy dependencies (torch, scipy, matplotlib) itself, so that a plotting
# job never loads torch and the conda envs stay per stage.
log = logging.getLogger(__name__)


def _set_threads(threads: int) -> None:
    """Use the threads Snakemake granted the job (it also sets OMP_NUM_THREADS to that)."""
    import torch

    torch.set_num_threads(max(int(threads), 1))


def make_eval_set(params: Mapping[str, Any], output: str | Path) -> None:
    """Write the fixed evaluation set for one set of data parameters (docs/science.md §8)."""
    from .config import complete_run
    from .data import TaskSpec, sample_eval_set

    params = complete_run(params)
    spec = TaskSpec.from_params(params)
    prompts = sample_eval_set(spec, int(params["eval_prompts"]), int(params["eval_seed"]))
    log.info(
        "evaluation set: %d prompts, L=%d, d=%d, I=%d",
        len(prompts),
        spec.context_length,
        spec.dim,
        spec.num_tasks,
    )
    ds = io.prompts_to_dataset(prompts, io.provenance_attrs(params))
    io.write_netcdf(ds, output)


def train_run(
    params: Mapping[str, Any],
    eval_set: str | Path,
    output: str | Path,
    threads: int = 1,
    checkpoint: str | Path | None = None,
    checkpoint_seconds: float = 60.0,
) -> str:
    """Train one run and write train.nc; returns the run's status. The checkpoint (beside the
    output, never the output itself) is removed once train.nc is complete."""
    from .training import train

    _set_threads(threads)
    prompts = io.dataset_to_prompts(io.load_dataset(eval_set))
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    if checkpoint is not None:
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
    result = train(params, prompts, checkpoint=checkpoint, checkpoint_seconds=checkpoint_seconds)
    io.write_netcdf(result.dataset, output)
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
    return result.status


def evaluate_lengths(
    train: str | Path, eval_sets: Mapping[int, str | Path], output: str | Path
) -> None:
    """Length generalisation of one trained run: its final model on evaluation sets at each L'."""
    from .evaluation import length_generalisation
    from .tasks import TaskSpec

    run = io.load_dataset(train)
    params = io.read_config(run)
    sets = {
        int(length): io.dataset_to_prompts(io.load_dataset(path))
        for length, path in eval_sets.items()
    }
    ds = length_generalisation(run, sets, TaskSpec.from_params(params).risk_floor)
    ds.attrs.update(io.provenance_attrs(io.stored_config(run)))
    ds.attrs["train_context_length"] = int(params["context_length"])
    log.info(
        "length generalisation: %s",
        dict(zip(ds.length.values.tolist(), ds.risk.values.round(4).tolist())),
    )
    io.write_netcdf(ds, output)


def spectral(
    train: str | Path,
    eval_set: str | Path,
    output: str | Path,
    settings: Mapping[str, Any] | None = None,
    threads: int = 1,
) -> None:
    """Spectral read-out of one run (spectral.nc): omega, mu, allocation, phases, n_eff / L, ODE
    overlay. n_eff / L uses the first ``n_eff_prompts`` prompts of the run's evaluation set.
    ``threads`` is accepted for the rule's signature; the read-out is numpy and single-threaded."""
    from .spectral import Covariates, SpectralSettings, analyse_run

    resolved = SpectralSettings.from_config(settings)
    run = io.load_dataset(train)
    ds = io.load_dataset(eval_set)  # the first n_eff_prompts prompts, numpy only (no torch)
    first = slice(0, resolved.n_eff_prompts)
    prompts = Covariates(ds["x"].isel(prompt=first).values, ds["x_query"].isel(prompt=first).values)
    io.write_netcdf(analyse_run(run, prompts, resolved), output)


def ablation(train: str | Path, eval_set: str | Path, output: str | Path, threads: int = 1) -> None:
    """Head-ablation read-out of one run (ablation.nc): each task's risk increase with one head
    off, shares, winners, purity, and the per-prompt baselines on the same evaluation set."""
    from .ablation import analyse_ablation

    _set_threads(threads)
    run = io.load_dataset(train)
    prompts = io.dataset_to_prompts(io.load_dataset(eval_set))
    ds = analyse_ablation(run, prompts)
    log.info(
        "ablation: risk %s, winners %s, purity %s",
        ds["risk"].values.round(4).tolist(),
        ds["winner"].values.tolist(),
        ds["purity"].values.round(3).tolist(),
    )
    io.write_netcdf(ds, output)


def flow(
    spectral: str | Path, output: str | Path, settings: Mapping[str, Any], threads: int = 1
) -> None:
    """The exact spectral flow of one run (flow.nc) from its spectral.nc; ``settings`` is the
    config's ``flow`` section with every default filled in."""
    from .flow import FlowSettings, analyse_flow

    _set_threads(threads)
    ds = analyse_flow(
        io.load_dataset(spectral), FlowSettings.from_mapping(settings), progress=log.info
    )
    io.write_netcdf(ds, output)


def map_point(
    params: Mapping[str, Any],
    output: str | Path,
    flow_settings: Mapping[str, Any],
    spectral_settings: Mapping[str, Any],
    threads: int = 1,
) -> None:
    """One point of a regime map: the exact flow from the init of ``params`` (no training)."""
    from .flow import FlowSettings
    from .regime_map import map_point as compute
    from .spectral_settings import SpectralSettings

    _set_threads(threads)
    spectral = SpectralSettings.from_config(spectral_settings)
    ds = compute(
        params,
        FlowSettings.from_mapping(flow_settings),
        spectral.clean_purity,
        (spectral.warmup_fraction, spectral.emergence_fraction),
        progress=log.info,
    )
    io.write_netcdf(ds, output)


def gather_map(
    points: Mapping[str, str | Path],
    grid_keys: Sequence[str],
    search: Mapping[str, Any] | None,
    output: str | Path,
    threads: int = 1,
) -> None:
    """The regime map file from its points' files (``points``: point id -> file)."""
    from .optimality import MeasureSettings
    from .regime_map import gather_map as gather
    from .regime_map import summarise

    _set_threads(threads)
    measure = MeasureSettings.from_mapping(search)
    ds = gather(
        {name: io.load_dataset(path) for name, path in points.items()},
        grid_keys,
        measure.search,
        measure.confidence,
        progress=log.info,
    )
    log.info("regime map: %s", json.dumps(summarise(ds), default=str))
    io.write_netcdf(ds, output)


def surrogate_check(
    settings: Mapping[str, Any] | None, output: str | Path, threads: int = 1
) -> None:
    """Finite-L risk surrogate versus Monte Carlo on a grid (surrogate_check.nc)."""
    from .theory import SurrogateCheckSettings
    from .theory import surrogate_check as check

    _set_threads(threads)
    ds = check(SurrogateCheckSettings.from_config(settings))
    log.info("surrogate check: %s", ds.attrs["summary"])
    io.write_netcdf(ds, output)


# --- optimality (issue 5) -------------------------------------------------------------------------


def optimality(
    train: Sequence[str | Path],
    runs: Sequence[str],
    settings: Mapping[str, Any] | None,
    output: str | Path,
    threads: int = 1,
    flows: Mapping[str, str | Path] | None = None,
) -> None:
    """One experiment's optimality file from its runs' train.nc (``train`` aligned with ``runs``):
    the final eval risk, its SE, the status, the resolved parameters and the final (W, U); and from
    the runs' flow.nc (``flows``: run -> path, where a run has one) the flow's end state."""
    from .optimality import final_state, measure_experiment

    _set_threads(threads)
    if len(train) != len(runs):
        raise ValueError(f"{len(train)} train files for {len(runs)} runs")
    params, finals, weights, diverged = {}, {}, {}, []
    for run, path in zip(runs, train):
        ds = io.load_dataset(path)
        params[run] = io.read_config(ds)
        finals[run], weights[run] = final_state(ds)
        if ds.attrs.get("status") == "diverged":
            diverged.append(run)
            log.warning("run %s diverged: left out of its configuration's trained limit", run)
    ends = {}
    for run, path in (flows or {}).items():
        ds = io.load_dataset(path)
        ends[run] = (ds["omega"].values[-1], ds["mu"].values[-1])
    result = measure_experiment(params, finals, settings, weights, ends)
    result.attrs["diverged_runs"] = json.dumps(
        diverged
    )  # left out of the trained limits; the figures say so
    io.write_netcdf(result, output)


# --- figures and the report (issue 6) -------------------------------------------------------------


def _runs_data(
    runs: Sequence[str],
    train: Sequence[str | Path],
    spectral: Sequence[str | Path],
    lengths: Mapping[str, str | Path] | None = None,
    flows: Mapping[str, str | Path] | None = None,
    ablation: Sequence[str | Path] = (),
) -> list:
    """Load each run's files (``train``/``spectral``/``ablation`` aligned with ``runs``; any may be
    empty; ``lengths`` and ``flows`` map the runs that have one to its file)."""
    from .measurements import load_run

    train, spectral, ablation, lengths, flows = (
        list(train),
        list(spectral),
        list(ablation),
        dict(lengths or {}),
        dict(flows or {}),
    )
    for name, files in (("train", train), ("spectral", spectral), ("ablation", ablation)):
        if files and len(files) != len(runs):
            raise ValueError(f"{len(files)} {name} files for {len(runs)} runs")
    return [
        load_run(
            run,
            train[k] if train else None,
            spectral[k] if spectral else None,
            lengths.get(run),
            flows.get(run),
            ablation[k] if ablation else None,
        )
        for k, run in enumerate(runs)
    ]


def plot_figure(
    kind: str,
    target: str,
    runs: Sequence[str],
    figure: str | Path,
    summary: str | Path,
    train: Sequence[str | Path] = (),
    spectral: Sequence[str | Path] = (),
    lengths: Mapping[str, str | Path] | None = None,
    optimality: str | Path | None = None,
    thresholds: Mapping[str, Any] | None = None,
    surrogate: str | Path | None = None,
    flows: Mapping[str, str | Path] | None = None,
    regime_map: str | Path | None = None,
    ablation: Sequence[str | Path] = (),
) -> dict:
    """Draw one report figure of ``kind`` (plots.draw) for ``target`` (a run id, an experiment or
    ``suite``) from the runs' train.nc / spectral.nc / lengths.nc, an optimality.nc or the
    surrogate check; write the figure and the JSON summary its caption quotes."""
    from . import plots
    from .report import FIGURE_KINDS

    data = _runs_data(runs, train, spectral, lengths, flows, ablation)
    opt = io.load_dataset(optimality) if optimality else None
    check = io.load_dataset(surrogate) if surrogate else None
    gathered = io.load_dataset(regime_map) if regime_map else None
    diverged = [] if FIGURE_KINDS[kind].shows_diverged else [r for r in data if r.diverged]
    if diverged and (FIGURE_KINDS[kind].scope == "run" or len(diverged) == len(data)):
        fig, numbers = plots.diverged_figure(
            diverged, target, kind
        )  # nothing left to draw: say why, show the risk
    else:
        fig, numbers = plots.draw(
            kind,
            [r for r in data if not r.diverged],
            opt,
            target,
            thresholds or {},
            check,
            gathered,
        )
        if diverged:
            numbers["diverged_runs"] = [plots.M.divergence_note(r) for r in diverged]
        elif opt is not None and json.loads(opt.attrs.get("diverged_runs", "[]")):
            numbers["diverged_runs"] = [
                f"{run} (left out of the trained limit)"
                for run in json.loads(opt.attrs["diverged_runs"])
            ]
    if FIGURE_KINDS[kind].scope == "run" and data and data[0].params.get("rotate"):
        numbers["rotated_basis"] = (
            True  # the caption says that the figure repeats a run in other bases
        )
    numbers = {
        "kind": kind,
        "target": target,
        "figure": str(figure),
        "runs": list(runs),
        "thresholds": dict(thresholds or {}),
        **numbers,
    }
    plots.write_summary(numbers, summary)
    plots.save_figure(fig, figure)
    log.info("figure %s of %s: %s", kind, target, figure)
    return numbers


def write_verdicts(
    runs: Sequence[str],
    train: Sequence[str | Path],
    spectral: Sequence[str | Path],
    table: str | Path,
    summary: str | Path,
    lengths: Mapping[str, str | Path] | None = None,
    optimality: Mapping[str, str | Path] | None = None,
    settings: Mapping[str, Any] | None = None,
    thresholds: Mapping[str, Any] | None = None,
    plan: Sequence[Mapping[str, Any]] = (),
    surrogate: str | Path | None = None,
    flows: Mapping[str, str | Path] | None = None,
    comparisons: Mapping[str, Mapping[str, Any]] | None = None,
    ablation: Mapping[str, str | Path] | None = None,
    practical_train: Sequence[str | Path] = (),
) -> list:
    """The verdict table (HTML) and its JSON from every run's files, the optimality files and the
    surrogate check; each comparison setting (config ``settings``) is judged on its own
    experiments alone, and the reconstructed setting on the rest. ``ablation`` maps the runs of the
    practical experiments to their ablation.nc, ``practical_train`` (aligned) to their train.nc:
    question Q1."""
    from . import plots, verdict_table, verdicts
    from .report import setting_experiments

    data = _runs_data(runs, train, spectral, lengths, flows)
    diverged = [plots.M.divergence_note(r) for r in data if r.diverged]
    data = [r for r in data if not r.diverged]  # a diverged run's partial records decide nothing
    for note in diverged:
        log.warning("left out of every verdict: %s", note)
    opt = {name: io.load_dataset(path) for name, path in (optimality or {}).items()}
    check = io.load_dataset(surrogate) if surrogate else None
    practical_files = dict(ablation or {})
    practical = _runs_data(
        list(practical_files), practical_train, (), ablation=list(practical_files.values())
    )
    diverged += [plots.M.divergence_note(r) for r in practical if r.diverged]
    owned = {
        name: set(setting_experiments(setting)) for name, setting in (comparisons or {}).items()
    }
    elsewhere = set().union(*owned.values()) if owned else set()

    def plan_of(experiments: set[str] | None) -> list[Mapping[str, Any]]:
        """The figures of a setting: those drawn for its experiments or its runs (the suite-wide
        ones belong to the reconstructed setting)."""

        def belongs(spec: Mapping[str, Any]) -> bool:
            target = str(spec["target"])
            experiment = target.split("/")[0] if target != "suite" else None
            return (
                experiment in experiments
                if experiments is not None
                else experiment not in elsewhere
            )

        return [spec for spec in plan if belongs(spec)]

    rows = verdicts.build_verdicts(
        [r for r in data if r.experiment not in elsewhere],
        opt,
        settings or {},
        thresholds,
        plan_of(None),
        check,
        practical=practical,
    )
    others = []
    for name, setting in (comparisons or {}).items():
        mine = [r for r in data if r.experiment in owned[name]]
        others.append(
            (
                name,
                str(setting["label"]),
                verdicts.build_verdicts(mine, opt, setting, thresholds, plan_of(owned[name])),
            )
        )
    for label, group in [("reconstructed", rows), *[(label, group) for _, label, group in others]]:
        for row in group:
            log.info("[%s] %s: %s — %s", label, row.claim, row.verdict, row.measurement)
    plots.write_summary(verdict_table.verdicts_json(rows, others, diverged), summary)
    Path(table).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(table).with_name(f".{Path(table).name}.tmp")
    tmp.write_text(
        verdict_table.verdicts_html(
            rows, comparisons=others, diverged=diverged, folder=Path(table).parent
        )
    )
    tmp.replace(table)
    return rows
