"""Snakemake adapter: write one fixed evaluation set."""

from multihead_icl.logs import setup_job_logging
from multihead_icl.stages import make_eval_set

setup_job_logging(snakemake.log[0])
make_eval_set(snakemake.params.data, snakemake.output.dataset)
