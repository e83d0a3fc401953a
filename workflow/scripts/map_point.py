"""Snakemake adapter: one point of a regime map (the exact flow from its init)."""

from multihead_icl.logs import setup_job_logging
from multihead_icl.stages import map_point

setup_job_logging(snakemake.log[0])
map_point(
    snakemake.params.point,
    snakemake.output.point,
    snakemake.params.flow,
    snakemake.params.spectral,
    threads=snakemake.threads,
)
