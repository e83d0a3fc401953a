# Multi-head softmax attention learning multi-task in-context regression by gradient flow.
# config -> data -> train -> spectral (or ablation) -> optimality -> figures -> report (see README.md).
from snakemake.utils import min_version

min_version("9.20")


# The default suite, unless the user names suites with --configfile: those replace it rather than
# being merged into it (so `--configfile config/paper.yaml` runs the paper suite alone).
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


report: "report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/spectral.smk"
include: "workflow/rules/ablation.smk"
include: "workflow/rules/flow.smk"
include: "workflow/rules/regime_map.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/verdicts.smk"
include: "workflow/rules/optimality.smk"


# Each stage's .smk registers its final outputs in FINAL_OUTPUTS (a dict: name -> list of files).
rule all:
    default_target: True
    input:
        **FINAL_OUTPUTS,


# `snakemake experiment_<name>` builds one experiment: its runs and everything derived from them.
for _name in [*EXPERIMENTS, *MAPS]:

    rule:
        name:
            f"experiment_{_name}"
        input:
            experiment_outputs(_name),
        localrule: True
