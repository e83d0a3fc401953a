"""One function per pipeline stage: what a Snakemake script (or the CLI) calls with file paths.

Each reads its inputs, computes, and writes its outputs only at the end, atomically.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import torch

from . import io
from .data import TaskSpec, sample_eval_set
from .training import train

log = logging.getLogger(__name__)


def make_eval_set(params: Mapping[str, Any], output: str | Path) -> None:
    """Write the fixed evaluation set for one set of data parameters (design.md data contract)."""
    spec = TaskSpec.from_params(params)
    prompts = sample_eval_set(spec, int(params["eval_prompts"]), int(params["eval_seed"]))
    log.info("evaluation set: %d prompts, L=%d, d=%d, I=%d", len(prompts), spec.context_length, spec.dim, spec.num_tasks)
    ds = io.prompts_to_dataset(prompts, io.provenance_attrs(params))
    io.write_netcdf(ds, output)


def train_run(
    params: Mapping[str, Any],
    eval_set: str | Path,
    output: str | Path,
    threads: int = 1,
    checkpoint: str | Path | None = None,
    checkpoint_seconds: float = 60.0,
) -> str:
    """Train one run and write train.nc; returns the run's status. The checkpoint (beside the output,
    never the output itself) is removed once train.nc is complete."""
    torch.set_num_threads(max(int(threads), 1))
    prompts = io.dataset_to_prompts(io.load_dataset(eval_set))
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    if checkpoint is not None:
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
    result = train(params, prompts, checkpoint=checkpoint, checkpoint_seconds=checkpoint_seconds)
    io.write_netcdf(result.dataset, output)
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
    return result.status
