"""Snakemake adapter: the exact spectral flow of one run (flow.nc)."""

from multihead_icl.logs import setup_job_logging
from multihead_icl.stages import flow

setup_job_logging(snakemake.log[0])
flow(
    snakemake.input.spectral,
    snakemake.output.flow,
    snakemake.params.settings,
    threads=snakemake.threads,
)
