"""The report plan: the claims, the figure kinds that serve them, which experiment feeds which
figure (the config's ``figures`` section), where the files go, and the verdict thresholds.

Deliberately light (standard library and the config module): the workflow imports it when it
builds the DAG, and every Snakemake call would otherwise pay for numpy, xarray and matplotlib.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .config import with_defaults

# the config's `verdicts` section at its schema defaults (the schema documents each threshold)
DEFAULT_THRESHOLDS: dict[str, float] = {k: float(v) for k, v in with_defaults("verdicts").items()}

CLAIMS: dict[str, dict[str, str]] = {
    "C1": {
        "category": "C1 Global convergence",
        "claim": "Gradient flow converges (from a suitable init).",
    },
    "C2": {
        "category": "C2 Three phases",
        "claim": "Slow warm-up, sharp emergence, convergence; warm-up grows with ln(1/init scale).",
    },
    "C3": {"category": "C3 Task allocation", "claim": "Each head ends up serving a single task."},
    "C4": {
        "category": "C4 Winner prediction",
        "claim": "Which head takes which task is set by the initial semi-singular values.",
    },
    "C5": {
        "category": "C5 Optimality gap",
        "claim": "The trained limit is within a constant factor of the best multi-head attention.",
    },
    "C6": {
        "category": "C6 Single vs multi-head",
        "claim": "Strict separation: multi-head beats the best single head.",
    },
    "C7": {
        "category": "C7 Spectral ODE",
        "claim": "The dynamics reduce to ODEs in the spectral domain.",
    },
    "C8": {
        "category": "C8 Softmax regimes",
        "claim": "Exponential and saturation regimes; noise favours delocalised attention.",
    },
    "C9": {
        "category": "C9 Extensions",
        "claim": "Linear attention, length generalisation, nonlinear targets.",
    },
    "Q1": {
        "category": "Q1 Beyond the one-layer model",
        "claim": "Heads still split the tasks in a practical transformer and on real-data prompts "
        "(the paper's open question, not its claim).",
    },
}
VERDICT_CATEGORY = (
    "All claims (verdict table)"  # sorts first; no colon (it would break the RST link targets)
)


@dataclass(frozen=True)
class FigureKind:
    claim: str
    scope: str  # "run" (one figure per selected run), "experiment" or "suite"
    setting: str | None  # the key of the config's figures section naming the experiment(s)
    needs: tuple[
        str, ...
    ]  # files read: "train", "spectral", "ablation", "lengths", "flow", "optimality", "surrogate",
    # "map"
    title: str  # short, for the report's labels
    thresholds: tuple[str, ...] = ()  # the verdict thresholds the figure draws (its rule's params)
    flow_only: bool = (
        False  # drawn only for experiments with runs that have an exact flow (flow.nc)
    )
    shows_diverged: bool = (
        False  # draws diverged runs itself (otherwise they are left out and listed)
    )


FIGURE_KINDS: dict[str, FigureKind] = {
    "convergence": FigureKind(
        "C1",
        "suite",
        None,
        ("train",),
        "convergence of every run",
        shows_diverged=True,
    ),
    "limit": FigureKind(
        "C1",
        "experiment",
        "allocation",
        ("train", "spectral", "flow"),
        "the exact flow to its long horizon",
        flow_only=True,
    ),
    "regime_map": FigureKind(
        "C1", "experiment", "regime_map", ("map",), "where the exact flow ends: a map of regimes"
    ),
    "risk": FigureKind(
        "C2",
        "run",
        "runs",
        ("train", "spectral"),
        "risk against time with phases",
        ("emergence_speedup",),
    ),
    "warmup": FigureKind(
        "C2",
        "experiment",
        "warmup",
        ("train", "spectral"),
        "warm-up time against init scale",
        ("warmup_slope_rtol",),
    ),
    "complexity": FigureKind(
        "C2",
        "experiment",
        "complexity",
        ("train", "spectral", "flow"),
        "tasks of different complexity against the warm-up law",
    ),
    "allocation": FigureKind(
        "C3", "run", "runs", ("train", "spectral"), "allocation shares over time", ("purity",)
    ),
    "heatmaps": FigureKind(
        "C3", "run", "runs", ("train", "spectral"), "W_h heat maps at the phase ends"
    ),
    "purity": FigureKind(
        "C3",
        "experiment",
        "purity",
        ("train", "spectral"),
        "purity and drift against a sweep",
        ("purity",),
    ),
    "winner": FigureKind(
        "C4",
        "experiment",
        "winner",
        ("train", "spectral"),
        "predicted against observed winner",
        ("winner_agreement",),
    ),
    "optimality": FigureKind(
        "C5", "experiment", "optimality", ("optimality",), "optimality ratio", ("optimality_ratio",)
    ),
    "baselines": FigureKind(
        "C5", "experiment", "baselines", ("optimality",), "every baseline against L"
    ),
    "separation": FigureKind(
        "C6",
        "experiment",
        "separation",
        ("optimality",),
        "separation against tasks",
        ("separation_ratio",),
    ),
    "trajectories": FigureKind(
        "C7", "run", "runs", ("train", "spectral"), "omega, mu with the spectral ODE", ("ode_gap",)
    ),
    "flow": FigureKind(
        "C7",
        "experiment",
        "allocation",
        ("train", "spectral", "flow"),
        "trained runs against the exact flow and GD at their lr",
        ("ode_gap",),
        flow_only=True,
    ),
    "surrogate": FigureKind(
        "C7", "suite", None, ("surrogate",), "finite-L surrogate against Monte Carlo"
    ),
    "regimes": FigureKind(
        "C8",
        "experiment",
        "regimes",
        ("train", "spectral", "flow"),
        "n_eff / L against noise",
        ("regime_correlation",),
    ),
    "length": FigureKind(
        "C9",
        "experiment",
        "length",
        ("train", "lengths"),
        "length generalisation",
        ("length_ratio",),
    ),
    "linear": FigureKind(
        "C9",
        "experiment",
        "linear",
        ("train", "spectral"),
        "softmax versus linear attention",
        ("purity",),
    ),
    "nonlinear": FigureKind(
        "C9", "experiment", "nonlinear", ("train", "spectral"), "nonlinear target", ("purity",)
    ),
    "practical": FigureKind(
        "Q1",
        "experiment",
        "practical",
        ("train", "ablation"),
        "risk against ridge and OLS, and the head ablation shares",
        ("purity",),
    ),
}


def thresholds(given: Mapping[str, Any] | None = None) -> dict[str, float]:
    """The verdict thresholds: ``given`` over ``DEFAULT_THRESHOLDS`` (unknown keys are an error)."""
    given = dict(given or {})
    unknown = set(given) - set(DEFAULT_THRESHOLDS)
    if unknown:
        raise ValueError(
            f"unknown verdict thresholds {sorted(unknown)}; known: {sorted(DEFAULT_THRESHOLDS)}"
        )
    return {**DEFAULT_THRESHOLDS, **{k: float(v) for k, v in given.items()}}


@dataclass(frozen=True)
class FigureSpec:
    kind: str
    target: str  # run id, experiment name or "suite"
    runs: tuple[str, ...]  # the runs whose files it reads
    experiment: str | None  # the experiment whose optimality or map file it reads, if any
    path: str  # figure file, relative to the working directory
    summary: str  # its JSON summary (the caption's numbers)

    @property
    def claim(self) -> str:
        return FIGURE_KINDS[self.kind].claim

    @property
    def category(self) -> str:
        return CLAIMS[self.claim]["category"]


def report_settings(figures: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``figures`` config section with the schema's defaults filled in."""
    return with_defaults("figures", figures)


# the keys of the figures section that name the experiment(s) answering a claim; a comparison
# setting (the config's ``settings`` section) names its own experiments with the same keys
CLAIM_ROLES = (
    "allocation",
    "streams",
    "winner",
    "warmup",
    "complexity",
    "purity",
    "optimality",
    "baselines",
    "separation",
    "regimes",
    "length",
    "linear",
    "nonlinear",
)


def comparison_settings(
    section: Mapping[str, Any] | None, experiments: Mapping[str, Sequence[str]]
) -> dict[str, dict[str, Any]]:
    """The config's ``settings`` section checked: every role a known key naming existing
    experiments, no experiment in two settings; roles not given are None (not measured there)."""
    out: dict[str, dict[str, Any]] = {}
    owner: dict[str, str] = {}
    for name, given in (section or {}).items():
        given = dict(given)
        unknown = set(given) - {"label", *CLAIM_ROLES}
        if unknown:
            raise ValueError(
                f"settings.{name}: unknown key {', '.join(sorted(map(repr, unknown)))} (allowed: "
                f"label, {', '.join(CLAIM_ROLES)})"
            )
        roles = {role: given.get(role) for role in CLAIM_ROLES}
        for role, value in roles.items():
            for experiment in as_list(value):
                if experiment not in experiments:
                    raise ValueError(
                        f"settings.{name}.{role}: {experiment!r} is not an experiment "
                        f"(experiments: {', '.join(experiments)})"
                    )
                if owner.setdefault(experiment, name) != name:
                    raise ValueError(
                        f"settings.{name}.{role}: experiment {experiment!r} already belongs to "
                        f"setting {owner[experiment]!r}"
                    )
        out[name] = {"label": str(given.get("label") or name), **roles}
    return out


OPTIMALITY_ROLES = (
    "optimality",
    "baselines",
    "separation",
)  # roles that read results/optimality/<experiment>.nc


def check_roles(
    given: Mapping[str, Any] | None,
    experiments: Mapping[str, Sequence[str]],
    maps: Sequence[str],
    optimality: Sequence[str],
    where: str = "figures",
) -> None:
    """The experiments a user named in the figures section (or a setting) exist, and those that
    feed an optimality figure have ``optimality: true``: otherwise the figure and its claim would
    silently drop out. Defaults that name absent experiments are fine (that figure is not drawn)."""
    for role, value in dict(given or {}).items():
        if role == "regime_map":
            known, kind = list(maps), "regime map"
        elif role == "practical":
            known, kind = list(experiments), "experiment"
        elif role in CLAIM_ROLES:
            known, kind = list(experiments), "experiment"
        else:
            continue
        for name in as_list(value):
            if name not in known:
                raise ValueError(
                    f"{where}.{role}: {name!r} names no {kind} of this config "
                    f"({', '.join(known) or 'none'})"
                )
            if role in OPTIMALITY_ROLES and name not in optimality:
                raise ValueError(
                    f"{where}.{role}: experiment {name!r} has no optimality file; set "
                    f"experiments.{name}.optimality: true"
                )


def setting_experiments(setting: Mapping[str, Any]) -> list[str]:
    """The experiments a comparison setting names, in role order (each once)."""
    return list(dict.fromkeys(e for role in CLAIM_ROLES for e in as_list(setting.get(role))))


def plan_settings(
    figures: Mapping[str, Any], comparisons: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """The figures settings with every comparison setting's experiments added to the same roles,
    so the report draws their figures too."""
    merged = dict(figures)
    for setting in comparisons.values():
        for role in CLAIM_ROLES:
            extra = [e for e in as_list(setting.get(role)) if e not in as_list(merged.get(role))]
            if extra:
                merged[role] = as_list(merged.get(role)) + extra
    return merged


def as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def select_runs(settings: Mapping[str, Any], experiments: Mapping[str, Sequence[str]]) -> list[str]:
    """Runs that get per-run figures (see the schema's ``figures.runs``)."""
    chosen = settings.get("runs")
    all_runs = [r for runs in experiments.values() for r in runs]
    if chosen is None:
        first = (as_list(settings.get("allocation")) or [None])[0]
        if first in experiments and experiments[first]:
            return [experiments[first][0]]
        return (
            [next(iter(experiments.values()))[0]]
            if experiments and next(iter(experiments.values()))
            else []
        )
    out = []
    for name in chosen:
        if name in experiments:
            out.extend(experiments[name])
        elif name in all_runs:
            out.append(name)
        else:
            raise ValueError(
                f"figures.runs: {name!r} is neither a run id nor an experiment (experiments: "
                f"{', '.join(experiments)})"
            )
    return list(dict.fromkeys(out))


def report_plan(
    settings: Mapping[str, Any],
    experiments: Mapping[str, Sequence[str]],
    optimality: Sequence[str] | None = None,
    fmt: str | None = None,
    flows: Sequence[str] | None = None,
    maps: Sequence[str] = (),
    root: str = "results",
    ablation: Mapping[str, Sequence[str]] | None = None,
) -> list[FigureSpec]:
    """Every figure the ``figures`` settings ask for and whose experiment exists; kinds that read
    an optimality file only for the experiments in ``optimality`` (those that have one; all when
    None), kinds that show the exact flow only for experiments with a run in ``flows`` (the runs
    that have a flow.nc; all when None), the regime-map kind for the ``maps`` named, and the kinds
    that read ablation.nc for the experiments read out by head ablation (``ablation``: name ->
    runs; ``experiments`` holds the others)."""
    ablation = dict(ablation or {})
    fmt = fmt or settings.get("format") or "svg"
    all_runs = tuple(r for runs in experiments.values() for r in runs)
    plan = []
    for kind, spec in FIGURE_KINDS.items():
        if spec.scope == "suite":
            targets = [("suite", () if "train" not in spec.needs else all_runs, None)]
        elif spec.scope == "run":
            targets = [(run, (run,), None) for run in select_runs(settings, experiments)]
        elif "ablation" in spec.needs:
            names = [n for n in as_list(settings.get(spec.setting)) if n in ablation]
            targets = [(n, tuple(ablation[n]), None) for n in names]
        elif (
            "map" in spec.needs
        ):  # a regime map has no runs: its one file is results/maps/<name>.nc
            targets = [(n, (), n) for n in as_list(settings.get(spec.setting)) if n in maps]
        else:
            names = [n for n in as_list(settings.get(spec.setting)) if n in experiments]
            if "optimality" in spec.needs:
                names = [n for n in names if optimality is None or n in optimality]
                targets = [(n, (), n) for n in names]
            else:
                if spec.flow_only:
                    names = [n for n in names if flows is None or set(experiments[n]) & set(flows)]
                targets = [(n, tuple(experiments[n]), None) for n in names]
        for target, runs, experiment in targets:
            folder = f"{root}/figures" + (f"/{target}" if target != "suite" else "")
            stem = f"{folder}/{kind}"
            plan.append(
                FigureSpec(kind, target, tuple(runs), experiment, f"{stem}.{fmt}", f"{stem}.json")
            )
    return plan


class CaptionData:
    """The numbers of a figure's summary JSON, read only when a caption template asks for them.

    A rule passes ``params: summary=lambda wildcards, output: CaptionData(output.summary)``; the
    report renders the caption with ``{{ snakemake.params.summary.final_risk }}`` after the job ran,
    so the file exists. Pickled (into a job's script) it is just the path string.
    """

    def __init__(self, path: str | os.PathLike):
        self._path = str(path)
        self._data: dict | None = None

    def __reduce__(self):
        return (str, (self._path,))

    def _load(self) -> dict:
        if self._data is None:
            with open(self._path) as handle:
                self._data = json.load(handle)
        return self._data

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._load()[name]
        except KeyError as error:
            raise AttributeError(f"{self._path} has no {name!r}") from error

    def __getitem__(self, name: str) -> Any:
        return self._load()[name]

    def __contains__(self, name: str) -> bool:
        return name in self._load()

    def __repr__(self) -> str:
        return f"CaptionData({self._path!r})"

    __str__ = __repr__


# the report item that holds the setting, the definitions and how to read the report (its caption
# is report/setting.rst; the landing page links to it by this name); sorts after C1-C9 and Q1
SETTING_CATEGORY = "Setting and definitions"


def claim_category(claim: str, verdicts_json: str | os.PathLike | None = None) -> str:
    """The claim's report category, named with its verdict ("C1 Global convergence — holds") when
    ``verdicts_json`` (the verdict rule's summary) says it; the plain name when the file is missing,
    unreadable or silent about the claim, so a stale or absent file never breaks the report."""
    name = CLAIMS[claim]["category"]
    try:
        with open(verdicts_json or "", encoding="utf-8") as handle:
            verdict = json.load(handle)["by_claim"][claim]
    except (OSError, ValueError, KeyError, TypeError):
        return name
    if not isinstance(verdict, str) or not verdict.replace(" ", "").isalpha():
        return name  # a link target must stay plain text (no colon, no backquote)
    return f"{name} — {verdict}"


def ordered_subcategory(name: str, order: Sequence[str]) -> str:
    """A report subcategory that sorts in the suite's order: Snakemake's menu sorts the names, so
    the experiments named in ``order`` get a zero-padded position ("01 allocation"); others
    (every run, theory) keep their name and sort after them."""
    if name not in order:
        return name
    width = max(2, len(str(len(order))))
    return f"{order.index(name) + 1:0{width}d} {name}"
