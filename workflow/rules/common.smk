# Shared set-up: validate the config (one-line errors, no traceback), expand the experiments into
# runs, and the helpers that rules use to look up a run's parameters and files.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))  # works without `pip install -e .`

from multihead_icl.config import ConfigError, load_schema, load_suite, load_yaml_strictly
from multihead_icl.layout import Layout
from multihead_icl.preflight import preflight

try:
    for _path in workflow.configfiles:  # Snakemake's loader keeps the last of a key given twice
        load_yaml_strictly(_path)
    # the package's schema (config.SCHEMA_PATH) validates and fills every default, sections too
    SUITE = load_suite(config, load_schema())
    LAYOUT = Layout(SUITE)  # where each file lives and what each stage reads (results/...)
    preflight(SUITE)  # this machine: devices, memory (MULTIHEAD_ICL_JOBS_ELSEWHERE=1 skips)
except (ConfigError, ValueError) as error:
    sys.stderr.write(f"Config error: {error}\n")
    sys.exit(1)
for _warning in SUITE.warnings:
    sys.stderr.write(f"Config warning: {_warning}\n")

RUNS = list(SUITE.runs)
# Runs that train identically (the same training parameters, e.g. allocation/s0 and heads/H3) are
# trained and read out once, by the first of them; the others get copies under their own ids.
TRAINED_RUNS = sorted(set(SUITE.run_owner.values()), key=RUNS.index)
SHARED_RUNS = [run for run in RUNS if SUITE.run_owner[run] != run]
# Runs read out spectrally (the paper's one-layer models on synthetic prompts, C1-C9) and by head
# ablation (any model, any data: experiments with `readout: ablation`, Q1).
SPECTRAL_RUNS, ABLATION_RUNS = LAYOUT.runs, LAYOUT.ablation_runs
# The runs whose spectral read-out is computed (the others copy it): the owners of the spectral runs.
SPECTRAL_OWNERS = LAYOUT.spectral_owners
EXPERIMENTS = list(SUITE.experiments)
FINAL_OUTPUTS = {}  # filled by each stage's .smk, requested by `rule all`
DATASETS = list(SUITE.datasets)

# The runs with an exact flow (flow.smk), the flow file each reads (runs that train identically
# share one) and the experiments with an optimality file (optimality.smk): see multihead_icl.layout.
FLOW_RUNS, FLOW_FILE, FLOW_JOBS = LAYOUT.flow_runs, LAYOUT.flow_file, LAYOUT.flow_jobs
OPTIMALITY_EXPERIMENTS = LAYOUT.optimality_experiments


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
# The report plan (multihead_icl.layout, multihead_icl.report): which figure of which kind the config
# asks for, for which run or experiment, and what each reads. A figure kind whose experiment is
# absent from the config is not in the plan (its claim then reads "not measured").
from multihead_icl.report import (
    CLAIMS,
    FIGURE_KINDS,
    SETTING_CATEGORY,
    VERDICT_CATEGORY,
    CaptionData,
    claim_category,
    ordered_subcategory,
)

try:
    FIGURE_PLAN = LAYOUT.figure_plan()
except ValueError as error:
    sys.stderr.write(f"Config error: {error}\n")
    sys.exit(1)
FIGURE_SPECS = {(spec.kind, spec.target): spec for spec in FIGURE_PLAN}
FIGURE_FORMAT = LAYOUT.figures["format"]


def figure_spec(kind, wildcards):
    target = wildcards.get("run") or wildcards.get("experiment") or "suite"
    return FIGURE_SPECS[(kind, target)]


def figure_pattern(kind):
    """Regex of the targets (runs or experiments) that have a figure of ``kind``."""
    targets = [spec.target for spec in FIGURE_PLAN if spec.kind == kind]
    return "|".join(re.escape(t) for t in targets) if targets else "(?!)"


def figure_inputs(kind):
    return lambda wildcards: LAYOUT.figure_inputs(figure_spec(kind, wildcards))


def figure_target(wildcard):
    """The figure's target: the value of its wildcard (a run or an experiment), or ``suite``."""
    if wildcard is None:
        return "suite"
    return lambda wildcards: wildcards[wildcard]


def figure_runs(kind):
    return lambda wildcards: list(figure_spec(kind, wildcards).runs)


def figure_length_runs(kind):
    return lambda wildcards: LAYOUT.length_runs(figure_spec(kind, wildcards).runs)


def figure_flow_runs(kind):
    return lambda wildcards: LAYOUT.with_flow(figure_spec(kind, wildcards).runs)


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
    order = lambda name: ordered_subcategory(name, list(SUITE.config["experiments"]))
    if scope == "run":
        return lambda wildcards: order(wildcards.run.split("/")[0])
    if scope == "experiment":
        return lambda wildcards: order(wildcards.experiment)
    return "theory" if FIGURE_KINDS[kind].needs == ("surrogate",) else "all runs"


def caption_data(wildcards, output):
    """The figure's JSON summary, read when the report renders the caption (see report.CaptionData)."""
    return CaptionData(output.summary)


# --- optimality ------------------------------------------------------------------------------------
# Each optimality file reads its runs' train.nc files and takes the config's `optimality` section
# (defaults filled from the schema when the config was loaded) as params.


def optimality_runs(wildcards):
    """The experiment's run ids, in the order of optimality_train_files."""
    return list(SUITE.experiments[wildcards.experiment])


def optimality_flow_runs(wildcards):
    """The experiment's runs that have an exact flow (flow.smk), whose end states the file compares."""
    return LAYOUT.with_flow(optimality_runs(wildcards))


def optimality_train_files(wildcards):
    return [LAYOUT.run_file(run, "train") for run in optimality_runs(wildcards)]
