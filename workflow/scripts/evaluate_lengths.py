"""Snakemake adapter: evaluate one trained run at other context lengths."""

from multihead_icl.logs import setup_job_logging
from multihead_icl.stages import evaluate_lengths

setup_job_logging(snakemake.log[0])
evaluate_lengths(
    snakemake.input.train,
    dict(zip(snakemake.params.lengths, snakemake.input.eval_sets)),
    snakemake.output.lengths,
)
