"""Snakemake adapter: the verdict and optimality tables as CSV and LaTeX (results/tables/)."""

from pathlib import Path

from multihead_icl.logs import setup_job_logging
from multihead_icl.tables import write_tables

setup_job_logging(snakemake.log[0])
write_tables(
    snakemake.input.summary,
    dict(zip(snakemake.params.optimality, snakemake.input.optimality)),
    Path(snakemake.output.verdicts_csv).parent,
)
