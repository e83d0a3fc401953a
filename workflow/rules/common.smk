# Shared set-up: validate the config (one-line errors, no traceback), expand the experiments into
# runs, and the helpers that rules use to look up a run's parameters and files.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))  # works without `pip install -e .`

from multihead_icl.config import ConfigError, load_schema, load_suite

try:
    SUITE = load_suite(config, load_schema(workflow.source_path("../schemas/config.schema.yaml")))
except ConfigError as error:
    sys.stderr.write(f"Config error: {error}\n")
    sys.exit(1)

RUNS = list(SUITE.runs)
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
