"""Snakemake adapter: train one run (resumes from its checkpoint if a previous attempt was
killed)."""

from multihead_icl.logs import setup_job_logging
from multihead_icl.stages import train_run

setup_job_logging(snakemake.log[0])
train_run(
    snakemake.params.run,
    snakemake.input.eval_set,
    snakemake.output.train,
    threads=snakemake.threads,
    checkpoint=snakemake.params.checkpoint,
)
