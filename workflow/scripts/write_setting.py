"""Snakemake adapter: every run of the suite with its resolved parameters (the report's setting)."""

from pathlib import Path

import yaml

from multihead_icl.logs import setup_job_logging

setup_job_logging(snakemake.log[0])
runs = dict(snakemake.params.runs)
Path(snakemake.output[0]).write_text(yaml.safe_dump(runs, sort_keys=False))
