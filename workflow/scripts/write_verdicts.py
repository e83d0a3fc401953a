"""Snakemake adapter: the verdict table of claims C1-C9 and question Q1 from every run's files."""

from multihead_icl.logs import setup_job_logging
from multihead_icl.stages import write_verdicts

setup_job_logging(snakemake.log[0])
write_verdicts(
    snakemake.params.runs,
    snakemake.input.train,
    snakemake.input.spectral,
    snakemake.output.table,
    snakemake.output.summary,
    lengths=dict(zip(snakemake.params.length_runs, snakemake.input.lengths)),
    optimality=dict(zip(snakemake.params.optimality, snakemake.input.optimality)),
    settings=snakemake.params.settings,
    comparisons=snakemake.params.comparisons,
    thresholds=snakemake.params.thresholds,
    flows=dict(zip(snakemake.params.flow_runs, snakemake.input.flow)),
    plan=snakemake.params.plan,
    surrogate=snakemake.input.get("surrogate"),
    ablation=dict(zip(snakemake.params.practical_runs, snakemake.input.ablation)),
    practical_train=snakemake.input.practical_train,
)
