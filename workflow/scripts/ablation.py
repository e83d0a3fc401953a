"""Snakemake adapter: the head-ablation read-out of one run (ablation.nc)."""

from multihead_icl.logs import setup_job_logging
from multihead_icl.stages import ablation

setup_job_logging(snakemake.log[0])
ablation(
    snakemake.input.train,
    snakemake.input.eval_set,
    snakemake.output.ablation,
    threads=snakemake.threads,
)
