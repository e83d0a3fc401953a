"""Snakemake adapter: one experiment's optimality file (results/optimality/<experiment>.nc)."""

from multihead_icl.logs import setup_job_logging
from multihead_icl.stages import optimality

setup_job_logging(snakemake.log[0])
optimality(
    snakemake.input.train,
    snakemake.params.runs,
    snakemake.params.settings,
    snakemake.output.optimality,
    threads=snakemake.threads,
    flows=dict(zip(snakemake.params.flow_runs, snakemake.input.flows)),
)
