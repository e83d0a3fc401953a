"""Where every file of a suite lives below its results folder, and which files each stage reads.

One source for the workflow's rules (workflow/rules/common.smk builds one ``Layout``) and for the
command line (``multihead-icl optimality|figure|verdicts|report`` drive the same stages without
Snakemake). Standard library and the light modules only: the workflow imports it while it builds
the DAG.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from .config import Suite, flow_applies
from .identity import training_identity
from .report import (
    CLAIM_ROLES,
    FIGURE_KINDS,
    FigureSpec,
    as_list,
    check_roles,
    comparison_settings,
    plan_settings,
    report_plan,
    thresholds,
)


class Layout:
    """The files of ``suite`` below ``root`` (``results`` in the workflow)."""

    def __init__(self, suite: Suite, root: str = "results"):
        self.suite, self.root = suite, str(root).rstrip("/")
        # runs read out by head ablation (Q1) and the rest, read out spectrally (C1-C9)
        self.ablation_experiments = {
            name: list(suite.experiments[name]) for name in suite.ablation_experiments
        }
        self.ablation_runs = [run for runs in self.ablation_experiments.values() for run in runs]
        self.spectral_experiments = {
            name: runs
            for name, runs in suite.experiments.items()
            if name not in self.ablation_experiments
        }
        self.runs = [run for run in suite.runs if run not in self.ablation_runs]
        # the runs whose spectral.nc is computed: the owners of the spectral runs (an owner may be
        # a run read out by ablation that trains like a spectral one); the others copy theirs
        self.spectral_owners = list(dict.fromkeys(suite.run_owner[run] for run in self.runs))
        for name in suite.config["flow"]["experiments"]:
            if name in self.ablation_experiments:
                raise ValueError(
                    f"flow.experiments: {name!r} has readout ablation; the exact flow starts from "
                    "a spectral read-out"
                )
        # the runs with an exact flow (the `flow` section names their experiments); runs that
        # train identically (allocation/s0 and heads/H3, say) share one flow: the first one's
        self.flow_runs = [
            run
            for name in suite.config["flow"]["experiments"]
            for run in suite.experiments.get(name, [])
            if flow_applies(suite.runs[run])
        ]
        owners: dict[str, str] = {}
        self.flow_file = {}
        for run in self.flow_runs:
            owner = owners.setdefault(training_identity(suite.runs[run]), run)
            self.flow_file[run] = self.run_file(owner, "flow")
        self.flow_jobs = list(owners.values())
        self.optimality_experiments = [
            name
            for name, spec in suite.config["experiments"].items()
            if name in suite.experiments and spec.get("optimality", False)
        ]
        self.figures = suite.config["figures"]
        for name in self.ablation_experiments:
            if name not in as_list(self.figures.get("practical")):
                suite.warnings.append(
                    f"experiments.{name}: readout ablation, but figures.practical does not name "
                    "it; it is trained and read out, and feeds no figure and no verdict"
                )
        # other settings judged on the same claims (config `settings`), shown side by side
        self.comparisons = comparison_settings(suite.config.get("settings"), suite.experiments)
        self.thresholds = thresholds(suite.config["verdicts"])

    # --- files -----------------------------------------------------------------------------------

    def run_file(self, run: str, name: str) -> str:
        """``train``, ``spectral``, ``ablation``, ``lengths`` or ``flow`` (the run's own) .nc."""
        return f"{self.root}/runs/{run}/{name}.nc"

    def optimality_file(self, experiment: str) -> str:
        return f"{self.root}/optimality/{experiment}.nc"

    def map_file(self, name: str) -> str:
        return f"{self.root}/maps/{name}.nc"

    @property
    def surrogate_file(self) -> str:
        return f"{self.root}/theory/surrogate_check.nc"

    @property
    def verdict_files(self) -> dict[str, str]:
        return {
            "table": f"{self.root}/figures/verdicts.html",
            "summary": f"{self.root}/figures/verdicts.json",
        }

    def length_runs(self, runs: list[str] | tuple[str, ...]) -> list[str]:
        """The runs among ``runs`` evaluated at other context lengths (they have a lengths.nc)."""
        return [run for run in runs if run in self.suite.length_datasets]

    def with_flow(self, runs: list[str] | tuple[str, ...]) -> list[str]:
        """The runs among ``runs`` that have an exact flow."""
        return [run for run in runs if run in self.flow_file]

    # --- figures ---------------------------------------------------------------------------------

    def figure_plan(self, fmt: str | None = None) -> list[FigureSpec]:
        """Every figure the `figures` section and the comparison settings ask for whose experiment
        exists; raises ValueError naming a role that names no experiment of the config."""
        for where, given in [
            ("figures", self.suite.given.get("figures")),
            *((f"settings.{name}", roles) for name, roles in self.comparisons.items()),
        ]:
            check_roles(
                given,
                self.suite.experiments,
                list(self.suite.maps),
                self.optimality_experiments,
                where,
            )
        for where, roles in [
            ("figures", self.figures),
            *((f"settings.{name}", roles) for name, roles in self.comparisons.items()),
        ]:
            for role in CLAIM_ROLES:
                for name in as_list(roles.get(role)):
                    if name in self.ablation_experiments:
                        raise ValueError(
                            f"{where}.{role}: experiment {name!r} has readout ablation, which "
                            "feeds question Q1 (figures.practical), not the paper's claims"
                        )
        for name in as_list(self.figures.get("runs")):
            if name in self.ablation_runs or name in self.ablation_experiments:
                raise ValueError(
                    f"figures.runs: {name!r} is read out by head ablation; its figure is the "
                    "experiment's `practical` one"
                )
        for name in as_list(self.figures.get("practical")):
            if name in self.suite.experiments and name not in self.ablation_experiments:
                raise ValueError(
                    f"figures.practical: experiment {name!r} needs readout: ablation (experiments "
                    f"with it: {', '.join(self.ablation_experiments) or 'none'})"
                )
        return report_plan(
            plan_settings(self.figures, self.comparisons),
            self.spectral_experiments,
            self.optimality_experiments,
            fmt=fmt,
            flows=self.flow_runs,
            maps=list(self.suite.maps),
            root=self.root,
            ablation=self.ablation_experiments,
        )

    def figure_inputs(self, spec: FigureSpec) -> dict[str, Any]:
        """The files one figure reads, by the kinds of file its kind needs."""
        needs, files = FIGURE_KINDS[spec.kind].needs, {}
        for name in ("train", "spectral", "ablation"):
            if name in needs:
                files[name] = [self.run_file(run, name) for run in spec.runs]
        if "lengths" in needs:
            files["lengths"] = [
                self.run_file(run, "lengths") for run in self.length_runs(spec.runs)
            ]
        if "flow" in needs:
            files["flow"] = [self.flow_file[run] for run in self.with_flow(spec.runs)]
        if "optimality" in needs:
            files["optimality"] = self.optimality_file(spec.experiment)
        if "surrogate" in needs:
            files["surrogate"] = self.surrogate_file
        if "map" in needs:
            files["map"] = self.map_file(spec.experiment)
        return files

    def figure_thresholds(self, kind: str) -> dict[str, float]:
        """Only the thresholds a figure of ``kind`` draws (changing another reruns nothing)."""
        return {key: self.thresholds[key] for key in FIGURE_KINDS[kind].thresholds}

    # --- verdicts --------------------------------------------------------------------------------

    def verdict_optimality_experiments(self) -> list[str]:
        """Experiments whose optimality file the verdicts read (C5 and C6), in config order."""
        wanted = {
            name
            for roles in [self.figures, *self.comparisons.values()]
            for role in ("optimality", "separation")
            for name in as_list(roles.get(role))
        }
        return [name for name in self.optimality_experiments if name in wanted]

    def verdict_inputs(self) -> dict[str, Any]:
        """Every run's train.nc and spectral.nc, the lengths.nc of runs evaluated at other lengths,
        the flows, the optimality files the verdicts read, and the surrogate check."""
        return {
            "train": [self.run_file(run, "train") for run in self.runs],
            "spectral": [self.run_file(run, "spectral") for run in self.runs],
            "lengths": [self.run_file(run, "lengths") for run in self.length_runs(self.runs)],
            "flow": [self.flow_file[run] for run in self.flow_runs],
            "optimality": [
                self.optimality_file(name) for name in self.verdict_optimality_experiments()
            ],
            "surrogate": self.surrogate_file,
            "ablation": [self.run_file(run, "ablation") for run in self.practical_runs()],
            "practical_train": [self.run_file(run, "train") for run in self.practical_runs()],
        }

    def practical_experiments(self) -> list[str]:
        """The experiments of the figures section's ``practical`` role that exist (Q1)."""
        return [
            name
            for name in as_list(self.figures.get("practical"))
            if name in self.ablation_experiments
        ]

    def practical_runs(self) -> list[str]:
        experiments = self.suite.experiments
        return [run for name in self.practical_experiments() for run in experiments[name]]

    def verdict_params(self, plan: list[FigureSpec]) -> dict[str, Any]:
        """What the verdict stage needs besides its files."""
        return {
            "runs": self.runs,
            "length_runs": self.length_runs(self.runs),
            "flow_runs": self.flow_runs,
            "optimality": self.verdict_optimality_experiments(),
            "practical_runs": self.practical_runs(),
            "settings": self.figures,
            "comparisons": self.comparisons,
            "thresholds": self.thresholds,
            "plan": [asdict(spec) for spec in plan],
        }

    # --- calls of the stages (for drivers other than Snakemake: the command line, notebooks) ------

    def figure_call(self, spec: FigureSpec) -> dict[str, Any]:
        """The keyword arguments of ``stages.plot_figure`` for one figure of the plan."""
        files = self.figure_inputs(spec)
        return {
            "kind": spec.kind,
            "target": spec.target,
            "runs": list(spec.runs),
            "figure": spec.path,
            "summary": spec.summary,
            "train": files.get("train", []),
            "spectral": files.get("spectral", []),
            "lengths": dict(zip(self.length_runs(spec.runs), files.get("lengths", []))),
            "optimality": files.get("optimality"),
            "thresholds": self.figure_thresholds(spec.kind),
            "flows": dict(zip(self.with_flow(spec.runs), files.get("flow", []))),
            "surrogate": files.get("surrogate"),
            "regime_map": files.get("map"),
            "ablation": files.get("ablation", []),
        }

    def verdict_call(self, plan: list[FigureSpec]) -> dict[str, Any]:
        """The keyword arguments of ``stages.write_verdicts``."""
        files, params = self.verdict_inputs(), self.verdict_params(plan)
        return {
            "runs": params["runs"],
            "train": files["train"],
            "spectral": files["spectral"],
            **self.verdict_files,
            "lengths": dict(zip(params["length_runs"], files["lengths"])),
            "optimality": dict(zip(params["optimality"], files["optimality"])),
            "settings": params["settings"],
            "comparisons": params["comparisons"],
            "thresholds": params["thresholds"],
            "flows": dict(zip(params["flow_runs"], files["flow"])),
            "plan": params["plan"],
            "surrogate": files["surrogate"],
            "ablation": dict(zip(params["practical_runs"], files["ablation"])),
            "practical_train": files["practical_train"],
        }

    def optimality_call(self, experiment: str) -> dict[str, Any]:
        """The keyword arguments of ``stages.optimality`` for one experiment."""
        if experiment not in self.optimality_experiments:
            raise ValueError(
                f"experiment {experiment!r} has no optimality file (experiments with "
                f"`optimality: true`: {', '.join(self.optimality_experiments) or 'none'})"
            )
        runs = list(self.suite.experiments[experiment])
        return {
            "train": [self.run_file(run, "train") for run in runs],
            "runs": runs,
            "settings": self.suite.config["optimality"],
            "output": self.optimality_file(experiment),
            "flows": {run: self.flow_file[run] for run in self.with_flow(runs)},
        }
