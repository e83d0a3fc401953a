# Shared set-up: validate the config (one-line errors, no traceback), expand the experiments into
# runs, and the helpers that rules use to look up a run's parameters and files.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))  # works without `pip install -e .`

from multihead_icl.config import ConfigError, load_schema, load_suite, load_yaml_strictly
from multihead_icl.preflight import preflight

try:
    for _path in workflow.configfiles:  # Snakemake's loader keeps the last of a key given twice
        load_yaml_strictly(_path)
    SUITE = load_suite(config, load_schema(workflow.source_path("../schemas/config.schema.yaml")))
    preflight(SUITE)  # this machine: devices, memory (MULTIHEAD_ICL_JOBS_ELSEWHERE=1 skips)
except ConfigError as error:
    sys.stderr.write(f"Config error: {error}\n")
    sys.exit(1)
for _warning in SUITE.warnings:
    sys.stderr.write(f"Config warning: {_warning}\n")

RUNS = list(SUITE.runs)
# Runs that train identically (the same training parameters, e.g. allocation/s0 and heads/H3) are
# trained and read out once, by the first of them; the others get copies under their own ids.
TRAINED_RUNS = sorted(set(SUITE.run_owner.values()), key=RUNS.index)
SHARED_RUNS = [run for run in RUNS if SUITE.run_owner[run] != run]
EXPERIMENTS = list(SUITE.experiments)
FINAL_OUTPUTS = {}  # filled by each stage's .smk, requested by `rule all`
DATASETS = list(SUITE.datasets)


wildcard_constraints:
    run="|".join(re.escape(r) for r in RUNS),
    dataset="|".join(re.escape(d) for d in DATASETS),


def run_train_params(wildcards):
    """The resolved parameters of one run that training depends on (and nothing else)."""
    return SUITE.train_params(wildcards.run)


def run_eval_set(wildcards):
    return f"results/data/{SUITE.run_dataset[wildcards.run]}.nc"


def dataset_params(wildcards):
    return SUITE.datasets[wildcards.dataset]


def run_eval_lengths(wildcards):
    """The context lengths L' at which a run is evaluated (training L included), ascending."""
    return list(SUITE.length_datasets[wildcards.run])


def run_length_eval_sets(wildcards):
    return [f"results/data/{d}.nc" for d in SUITE.length_datasets[wildcards.run].values()]


def experiment_outputs(name):
    """The final outputs that belong to one experiment: results/<stage>/<name>/... and
    results/optimality/<name>.nc (not other runs' figures of a kind named like it)."""
    return [
        path
        for paths in FINAL_OUTPUTS.values()
        for path in paths
        if Path(path).parts[2:3] == (name,)
        or path in (f"results/optimality/{name}.nc", f"results/maps/{name}.nc")
    ]


# --- figures ---------------------------------------------------------------------------------------
# The report plan (multihead_icl.report): which figure of which kind the config asks for, for which
# run or experiment, and the helpers the rules of figures.smk use. A figure kind whose experiment is
# absent from the config is simply not in the plan (its claim then reads "not measured").
from dataclasses import asdict

from multihead_icl.report import (
    CLAIMS,
    FIGURE_KINDS,
    SETTING_CATEGORY,
    VERDICT_CATEGORY,
    CaptionData,
    as_list,
    check_roles,
    claim_category,
    comparison_settings,
    ordered_subcategory,
    plan_settings,
    report_plan,
    report_settings,
    thresholds,
)

try:
    REPORT_SETTINGS = report_settings(
        SUITE.config.get("figures"),
        load_schema(workflow.source_path("../schemas/config.schema.yaml")),
    )
    # other settings judged on the same claims (config `settings`), shown side by side
    COMPARISONS = comparison_settings(SUITE.config.get("settings"), SUITE.experiments)
    VERDICT_THRESHOLDS = thresholds(SUITE.config.get("verdicts"))
except ValueError as error:
    sys.stderr.write(f"Config error: {error}\n")
    sys.exit(1)
FIGURE_FORMAT = REPORT_SETTINGS["format"]


def figure_plan():
    """The figures to draw (called by figures.smk once common.smk is complete: the C5/C6 figures
    need OPTIMALITY_EXPERIMENTS, the experiments that have an optimality file, and the flow
    figures FLOW_RUNS of flow.smk)."""
    try:
        for where, given in [
            ("figures", SUITE.config.get("figures")),
            *((f"settings.{name}", roles) for name, roles in COMPARISONS.items()),
        ]:
            check_roles(given, SUITE.experiments, list(SUITE.maps), OPTIMALITY_EXPERIMENTS, where)
        return report_plan(
            plan_settings(REPORT_SETTINGS, COMPARISONS),
            SUITE.experiments,
            OPTIMALITY_EXPERIMENTS,
            flows=FLOW_RUNS,
            maps=list(SUITE.maps),
        )
    except ValueError as error:
        sys.stderr.write(f"Config error: {error}\n")
        sys.exit(1)


def figure_pattern(kind):
    """Regex of the targets (runs or experiments) that have a figure of ``kind``."""
    targets = [spec.target for spec in FIGURE_PLAN if spec.kind == kind]
    return "|".join(re.escape(t) for t in targets) if targets else "(?!)"


def figure_spec(kind, wildcards):
    target = wildcards.get("run") or wildcards.get("experiment") or "suite"
    return FIGURE_SPECS[(kind, target)]


def figure_inputs(kind):
    """Input function of the figure of kind ``kind`` (it lists the netCDF files of the runs (or the experiment's
    optimality file) that the figure reads)."""
    needs = FIGURE_KINDS[kind].needs

    def inputs(wildcards):
        spec = figure_spec(kind, wildcards)
        files = {}
        if "train" in needs:
            files["train"] = [f"results/runs/{run}/train.nc" for run in spec.runs]
        if "spectral" in needs:
            files["spectral"] = [f"results/runs/{run}/spectral.nc" for run in spec.runs]
        if "lengths" in needs:
            files["lengths"] = [f"results/runs/{run}/lengths.nc" for run in length_runs(spec.runs)]
        if "flow" in needs:
            files["flow"] = [FLOW_FILE[run] for run in flow_runs(spec.runs)]
        if "optimality" in needs:
            files["optimality"] = f"results/optimality/{spec.experiment}.nc"
        if "surrogate" in needs:
            files["surrogate"] = "results/theory/surrogate_check.nc"
        if "map" in needs:
            files["map"] = f"results/maps/{spec.experiment}.nc"
        return files

    return inputs


def length_runs(runs):
    """The runs among ``runs`` that are evaluated at other context lengths (have a lengths.nc)."""
    return [run for run in runs if run in SUITE.length_datasets]


def flow_runs(runs):
    """The runs among ``runs`` that have an exact flow (flow.smk's FLOW_RUNS)."""
    return [run for run in runs if run in FLOW_RUNS]


def figure_flow_runs(kind):
    return lambda wildcards: flow_runs(figure_spec(kind, wildcards).runs)


def figure_target(wildcard):
    """The figure's target: the value of its wildcard (a run or an experiment), or ``suite``."""
    if wildcard is None:
        return "suite"
    return lambda wildcards: wildcards[wildcard]


def figure_runs(kind):
    return lambda wildcards: list(figure_spec(kind, wildcards).runs)


def figure_length_runs(kind):
    return lambda wildcards: length_runs(figure_spec(kind, wildcards).runs)


def figure_category(kind):
    """The claim's category, named with its verdict when the report is built (the callable runs
    then, after the verdicts rule; without results/figures/verdicts.json the plain name)."""
    claim = FIGURE_KINDS[kind].claim
    return lambda wildcards: claim_category(claim, "results/figures/verdicts.json")


def figure_labels(kind):
    """Report labels: what the figure shows and whose data (the same two keys for every figure)."""
    scope = FIGURE_KINDS[kind].scope
    data = {"run": "run {run}", "experiment": "experiment {experiment}", "suite": "every run"}[
        scope
    ]
    if FIGURE_KINDS[kind].needs == ("surrogate",):
        data = "surrogate check grid"
    return {"figure": FIGURE_KINDS[kind].title, "data": data}


def figure_subcategory(kind):
    """The experiment, numbered in the suite's order (the report sorts subcategories by name)."""
    scope = FIGURE_KINDS[kind].scope
    order = lambda name: ordered_subcategory(name, [*EXPERIMENTS, *SUITE.maps])
    if scope == "run":
        return lambda wildcards: order(wildcards.run.split("/")[0])
    if scope == "experiment":
        return lambda wildcards: order(wildcards.experiment)
    return "theory" if FIGURE_KINDS[kind].needs == ("surrogate",) else "all runs"


def caption_data(wildcards, output):
    """The figure's JSON summary, read when the report renders the caption (see report.CaptionData)."""
    return CaptionData(output.summary)


def verdict_inputs(wildcards):
    """Every run's train.nc and spectral.nc, the lengths.nc of the runs evaluated at other lengths,
    the optimality files of the experiments the figures section names, and the surrogate check."""
    return {
        "train": [f"results/runs/{run}/train.nc" for run in RUNS],
        "spectral": [f"results/runs/{run}/spectral.nc" for run in RUNS],
        "lengths": [f"results/runs/{run}/lengths.nc" for run in length_runs(RUNS)],
        "flow": [FLOW_FILE[run] for run in FLOW_RUNS],
        "optimality": [
            f"results/optimality/{name}.nc" for name in verdict_optimality_experiments()
        ],
        "surrogate": "results/theory/surrogate_check.nc",
    }


def verdict_optimality_experiments():
    """Experiments whose optimality file the verdicts read (C5 and C6), in config order."""
    wanted = {
        name
        for roles in [REPORT_SETTINGS, *COMPARISONS.values()]
        for role in ("optimality", "separation")
        for name in as_list(roles.get(role))
    }
    return [name for name in OPTIMALITY_EXPERIMENTS if name in wanted]


def figure_plan_params():
    """The plan as plain dicts (for the verdict table's figure column)."""
    return [asdict(spec) for spec in FIGURE_PLAN]


def figure_thresholds(kind):
    """Only the verdict thresholds a figure of ``kind`` draws (so changing another reruns nothing)."""
    return {key: VERDICT_THRESHOLDS[key] for key in FIGURE_KINDS[kind].thresholds}


# --- optimality ------------------------------------------------------------------------------------
# Experiments with `optimality: true` get results/optimality/<experiment>.nc (issue 5): their runs'
# train.nc files in, the config's `optimality` section (defaults filled from the schema) as params.
OPTIMALITY_EXPERIMENTS = [
    name for name in EXPERIMENTS if SUITE.config["experiments"][name].get("optimality", False)
]


def check_optimality_targets():
    """The search integrates a linear target out exactly: stop before any job otherwise."""
    for name in OPTIMALITY_EXPERIMENTS:
        for run in SUITE.experiments[name]:
            target = SUITE.runs[run]["target"]
            if target != "linear":
                sys.stderr.write(
                    f"Config error: experiments.{name}.optimality: needs target linear, "
                    f"run {run} has target {target!r}\n"
                )
                sys.exit(1)


def optimality_settings():
    """The `optimality` section with every default filled in (so a changed default reruns the rule)."""
    schema = load_schema(workflow.source_path("../schemas/config.schema.yaml"))
    defaults = {
        key: sub["default"] for key, sub in schema["properties"]["optimality"]["properties"].items()
    }
    return {**defaults, **SUITE.config.get("optimality", {})}


def optimality_runs(wildcards):
    """The experiment's run ids, in the order of optimality_train_files."""
    return list(SUITE.experiments[wildcards.experiment])


def optimality_flow_runs(wildcards):
    """The experiment's runs that have an exact flow (flow.smk), whose end states the file compares."""
    return [run for run in optimality_runs(wildcards) if run in FLOW_RUNS]


def optimality_train_files(wildcards):
    return [f"results/runs/{run}/train.nc" for run in optimality_runs(wildcards)]


check_optimality_targets()
OPTIMALITY_SETTINGS = optimality_settings()
