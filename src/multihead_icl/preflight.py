"""Checks of this machine before any job runs, each failing with one line that names the run, the
key and the value: a device this machine cannot use, and a run whose largest tensors would not fit
in its memory (the config's own checks - duplicate keys, non-finite numbers, bounds - are in
``config``).

The device and memory checks describe *this* machine. When the jobs run elsewhere (a cluster whose
login node has no GPU), set ``MULTIHEAD_ICL_JOBS_ELSEWHERE=1`` to skip them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .config import ConfigError, Suite, complete_run
from .tasks import task_dims_of

JOBS_ELSEWHERE = "MULTIHEAD_ICL_JOBS_ELSEWHERE"
MEMORY_SHARE = 0.8  # refuse a run whose estimate exceeds this share of the machine's memory
BYTES = 4  # float32


def machine_memory() -> int:
    """Physical memory of this machine in bytes (0 where unknown)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def memory_estimate(params: Mapping[str, Any]) -> dict[str, float]:
    """Bytes of the largest things one run holds: a training step (the batch of prompts, drawn one
    step ahead, and the attention activations with their gradients) and its evaluation sets."""
    params = complete_run(params)
    dims = task_dims_of(params)
    d, tasks = sum(dims), int(params["tasks"])
    heads, batch, length = (
        int(params["heads"]),
        int(params["batch_size"]),
        int(params["context_length"]),
    )
    tokens = batch * (length + 1)
    step = BYTES * (4 * tokens * (d + tasks + 1) + 4 * batch * heads * length)
    if str(params["model"]) == "full":
        step += BYTES * 4 * tokens * heads * (d + tasks)
    lengths = [length, *params["eval_lengths"]]
    prompts = int(params["eval_prompts"])
    evaluation = max(BYTES * prompts * ((n + 1) * (d + tasks) + tasks * d) for n in lengths)
    return {"step": float(step), "evaluation": float(evaluation)}


def _gigabytes(n: float) -> str:
    return f"{n / 1e9:.3g} GB"


def check_memory(suite: Suite, available: int | None = None) -> None:
    """No run needs more than MEMORY_SHARE of this machine's memory for a step or its evaluation
    set."""
    available = machine_memory() if available is None else available
    if available <= 0:
        return
    for run_id, params in suite.runs.items():
        need = memory_estimate(params)
        for what, size in need.items():
            if size > MEMORY_SHARE * available:
                keys = (
                    "batch_size, context_length"
                    if what == "step"
                    else "eval_prompts, context_length or eval_lengths"
                )
                raise ConfigError(
                    f"{run_id}: {'a training step' if what == 'step' else 'an evaluation set'} "
                    f"needs about {_gigabytes(size)} "
                    f"but this machine has {_gigabytes(available)}; lower {keys} "
                    f"(or set {JOBS_ELSEWHERE}=1 when the jobs run on larger machines)"
                )


def check_devices(suite: Suite) -> None:
    """A run that asks for ``cuda`` (or ``mps``) needs it on this machine; ``auto`` always works."""
    wanted = {str(p["device"]) for p in suite.runs.values()}
    if any(w.startswith("cuda") for w in wanted):
        import torch

        if not torch.cuda.is_available():
            run, device = next(
                (r, str(p["device"]))
                for r, p in suite.runs.items()
                if str(p["device"]).startswith("cuda")
            )
            raise ConfigError(
                f"{run}.device: {device}, but torch sees no CUDA device on this machine; use "
                "device: auto (a GPU where there "
                f"is one, else the CPU), or set {JOBS_ELSEWHERE}=1 when the jobs run on GPU nodes"
            )
    if any(w.startswith("cuda:") for w in wanted):
        import torch

        count = torch.cuda.device_count()
        for run, params in suite.runs.items():
            device = str(params["device"])
            if device.startswith("cuda:") and int(device.split(":")[1]) >= count:
                raise ConfigError(
                    f"{run}.device: {device}, but this machine has {count} CUDA device(s) (cuda:0 "
                    f"to cuda:{count - 1})"
                )
    if "mps" in wanted:
        import torch

        if not torch.backends.mps.is_available():
            run = next(r for r, p in suite.runs.items() if str(p["device"]) == "mps")
            raise ConfigError(
                f"{run}.device: mps, but this machine has no Apple GPU; use device: auto"
            )


def preflight(suite: Suite) -> None:
    """The checks of this machine (skipped with MULTIHEAD_ICL_JOBS_ELSEWHERE=1)."""
    if os.environ.get(JOBS_ELSEWHERE, "").strip() not in ("", "0"):
        return
    check_devices(suite)
    check_memory(suite)
