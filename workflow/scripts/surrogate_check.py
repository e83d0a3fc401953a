"""Snakemake adapter: the finite-L risk surrogate against Monte Carlo (surrogate_check.nc)."""

from multihead_icl.logs import setup_job_logging
from multihead_icl.stages import surrogate_check

setup_job_logging(snakemake.log[0])
surrogate_check(snakemake.params.settings, snakemake.output.check, threads=snakemake.threads)
