"""Snakemake adapter: a regime map from its points."""

from multihead_icl.logs import setup_job_logging
from multihead_icl.stages import gather_map

setup_job_logging(snakemake.log[0])
gather_map(
    dict(zip(snakemake.params.points, snakemake.input.points)),
    snakemake.params.grid_keys,
    snakemake.params.search,
    snakemake.output.map,
    threads=snakemake.threads,
)
