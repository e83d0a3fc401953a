"""Snakemake adapter: every run of the suite with its resolved parameters (the report's setting)."""

from pathlib import Path

import yaml

from multihead_icl.logs import setup_job_logging

setup_job_logging(snakemake.log[0])
runs = dict(snakemake.params.runs)


class _NoAliases(yaml.SafeDumper):
    """Every run's parameters written out in full (no &id001 / *id001 for shared lists)."""

    def ignore_aliases(self, data):
        return True


Path(snakemake.output[0]).write_text(yaml.dump(runs, Dumper=_NoAliases, sort_keys=False))
