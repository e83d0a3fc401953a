"""Snakemake adapter: the spectral read-out of one run (spectral.nc)."""

from multihead_icl.logs import setup_job_logging
from multihead_icl.stages import spectral

setup_job_logging(snakemake.log[0])
spectral(
    snakemake.input.train,
    snakemake.input.eval_set,
    snakemake.output.spectral,
    settings=snakemake.params.settings,
    threads=snakemake.threads,
)
