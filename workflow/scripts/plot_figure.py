"""Snakemake adapter: draw one report figure and write the JSON summary its caption quotes."""

from multihead_icl.logs import setup_job_logging
from multihead_icl.stages import plot_figure

setup_job_logging(snakemake.log[0])
inputs = dict(snakemake.input.items())
plot_figure(
    snakemake.params.kind,
    snakemake.params.target,
    snakemake.params.runs,
    snakemake.output.figure,
    snakemake.output.summary,
    train=inputs.get("train", []),
    spectral=inputs.get("spectral", []),
    lengths=dict(zip(snakemake.params.length_runs, inputs.get("lengths", []))),
    optimality=inputs.get("optimality"),
    thresholds=snakemake.params.thresholds,
    flows=dict(zip(snakemake.params.flow_runs, inputs.get("flow", []))),
    surrogate=inputs.get("surrogate"),
    regime_map=inputs.get("map"),
    ablation=inputs.get("ablation", []),
)
