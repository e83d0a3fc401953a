"""Gradient-flow training of one run, with a log-spaced record, progress logs and resumable
checkpoints.

Gradient flow dtheta/dt = -grad R(theta) is approximated by gradient descent with step ``lr`` on
``batch_size`` fresh prompts every step (online), so the gradient-flow time after k steps is
t = lr * k; every trajectory is stored against that t so runs with different steps compare.
The risk is R = (1/I) E||y_hat - y_q||^2, noise included. ``optimizer: adam`` is offered as the
"practical" contrast, never as the default.

The loop keeps everything on the device: samples are drawn there, records stay tensors until the
end, and the host only looks at a number at record points (divergence check) and progress ticks.
On a CPU with two or more threads the next batch is drawn in a background thread (``stream``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from . import io
from .config import complete_run
from .convergence import flat_parameters, relative_change_last_tenth
from .data import Prompts, TaskSpec, make_sampler
from .model import (
    flat_parameters_of,
    has_reduced_view,
    initialise,
    model_from_params,
    reduced_view,
)
from .stream import PromptStream, draws_ahead_by_default

log = logging.getLogger(__name__)

OPTIMIZERS = ("gd", "adam")


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; anything else is passed to torch."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def record_steps(steps: int, points: int) -> np.ndarray:
    """Steps at which the state is recorded: 0, then ``points`` log-spaced steps up to ``steps``.
    Phases happen on a log time axis, so a log schedule resolves warm-up and convergence alike."""
    if steps <= 0:
        return np.array([0])
    grid = np.unique(np.round(np.geomspace(1, steps, max(int(points), 2))).astype(int))
    return np.unique(np.concatenate([[0], grid, [steps]]))


def snapshot_records(steps: np.ndarray, snapshots: int) -> np.ndarray:
    """Indices of the records whose whole state train.nc keeps: the first at or after each of
    ``snapshots`` log-spaced steps, and always the last (head ablation follows any model over
    training from them)."""
    steps = np.asarray(steps)
    wanted = record_steps(int(steps[-1]), snapshots)[1:] if steps[-1] > 0 else np.array([0])
    nearest = np.clip(np.searchsorted(steps, wanted), 0, len(steps) - 1)
    return np.unique(np.concatenate([nearest, [len(steps) - 1]]))


def stream_seeds(seed: int, data_stream: int | None = None) -> tuple[int, int]:
    """Independent seeds for the initialisation and the training-data stream of one run; with
    ``data_stream`` the same initialisation and another, independent data stream."""
    init_state, data_state = np.random.SeedSequence(int(seed)).spawn(2)
    if data_stream is not None:
        data_state = np.random.SeedSequence(int(seed), spawn_key=(2, int(data_stream)))
    return int(init_state.generate_state(1)[0]), int(data_state.generate_state(1)[0])


DIVERGENCE_FACTOR = (
    1e4  # a risk this many times its first record has left any trajectory gradient flow follows
)


def divergence(value: float, first: float | None) -> str:
    """Why a training risk means divergence ('' when it does not): not finite, or far above the risk
    the run started from (a run whose risk reaches 1e19 while staying finite has diverged too)."""
    if not math.isfinite(value):
        return f"risk {value}"
    if first is not None and math.isfinite(first) and value > DIVERGENCE_FACTOR * max(first, 1e-12):
        return (
            f"risk {value:.3g} above {DIVERGENCE_FACTOR:g} x its initial evaluation risk "
            f"{first:.3g}"
        )
    return ""


def risk(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-task mean squared error, noise included: (1/I) mean_b ||y_hat - y||^2."""
    return (prediction - target).square().mean()


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, prompts: Prompts, chunk: int = 1024
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Risk on a fixed set with its Monte-Carlo standard error, and the per-task risks (on the
    device). Each chunk is moved to the model's device and dtype (a no-op when the set is already
    there)."""
    weight = next(model.parameters())
    per_prompt, per_task = [], []
    for start in range(0, len(prompts), chunk):
        part = prompts.slice(start, start + chunk).to(weight.device, weight.dtype)
        err = (model(part.x, part.y, part.x_query) - part.y_query).square()
        per_prompt.append(err.mean(dim=1))
        per_task.append(err.sum(dim=0))
    per_prompt = torch.cat(per_prompt)
    n = per_prompt.numel()
    return per_prompt.mean(), per_prompt.std() / math.sqrt(n), torch.stack(per_task).sum(dim=0) / n


@dataclass
class TrainResult:
    dataset: xr.Dataset
    status: str


def _log_divergence(step: int, lr: float, reason: str, records: int) -> None:
    log.error(
        "training diverged at step %d (t = %.4g): %s; stopping, %d records kept",
        step,
        lr * step,
        reason,
        records,
    )


def _fingerprint(params: Mapping[str, Any]) -> str:
    """What a checkpoint must match to be resumed: the run's parameters and the package version
    (whose checkpoint layout it is)."""
    from . import __version__

    return json.dumps({**dict(params), "package_version": __version__}, sort_keys=True, default=str)


def _save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: a kill mid-write leaves the previous checkpoint intact


class _Recorder:
    """Collects the recorded quantities as device tensors; converted to numpy once, at the end."""

    NAMES = (
        "step",
        "W",
        "U",
        "score_leak",
        "value_leak",
        "train_risk",
        "grad_norm",
        "eval_risk",
        "eval_risk_se",
        "eval_risk_task",
        "theta",
    )

    def __init__(self, saved: dict | None = None):
        self.values: dict[str, list] = (
            {n: list(saved[n]) for n in self.NAMES} if saved else {n: [] for n in self.NAMES}
        )

    def add(self, **items: Any) -> None:
        for name in self.NAMES:
            self.values[name].append(items[name])

    def to_cpu(self) -> dict[str, list]:
        return {
            n: [v.detach().cpu() if torch.is_tensor(v) else v for v in vals]
            for n, vals in self.values.items()
        }

    def __len__(self) -> int:
        return len(self.values["step"])


def train(
    params: Mapping[str, Any],
    eval_set: Prompts,
    checkpoint: Path | None = None,
    checkpoint_seconds: float = 60.0,
    progress_seconds: float = 10.0,
) -> TrainResult:
    """Train one run described by resolved run parameters (config keys) and return train.nc's
    dataset.

    With ``checkpoint`` set, the full state (parameters, optimizer, RNG, records) is saved there
    every ``checkpoint_seconds`` and a run that finds a matching checkpoint resumes from it, ending
    with the same numbers as an uninterrupted run.
    """
    given, params = params, complete_run(params)  # train.nc stores what was given (the job's keys)
    started = time.monotonic()
    spec = TaskSpec.from_params(params)
    device = resolve_device(str(params["device"]))
    steps, lr, batch = (
        int(params["steps"]),
        float(params["lr"]),
        int(params["batch_size"]),
    )
    optimizer_name = str(params["optimizer"])
    if optimizer_name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer_name!r}")

    init_seed, data_seed = stream_seeds(int(params["seed"]), params["data_stream"])

    def fresh_start() -> tuple[
        torch.nn.Module, list, torch.optim.Optimizer | None, torch.Generator
    ]:
        """The model at its init, its optimizer and the training stream's generator at step 0."""
        model = model_from_params(params, spec.dim, spec.num_tasks)
        initialise(
            model,
            spec,
            str(params["init"]),
            float(params["init_scale"]),
            torch.Generator().manual_seed(init_seed),
            omega=params["init_omega"],
            mu=params["init_mu"],
            lead=float(params["init_lead"]),
        )
        model.to(device)
        parameters = list(model.parameters())
        optimizer = torch.optim.Adam(parameters, lr=lr) if optimizer_name == "adam" else None
        return model, parameters, optimizer, torch.Generator(device=device).manual_seed(data_seed)

    model, parameters, optimizer, generator = fresh_start()
    with_view = has_reduced_view(str(params["model"]))
    sampler = make_sampler(spec, "train", device=device)
    eval_on_device = eval_set.to(device)
    schedule = record_steps(steps, int(params["record_points"]))
    is_record = np.zeros(steps + 1, dtype=bool)
    is_record[schedule] = True
    # records whose whole state is kept (the snapshots, and the one at 0.9 T that the convergence
    # status compares with); the latest record's state is kept until the next record
    keep_state = set(schedule[snapshot_records(schedule, int(params["snapshots"]))].tolist())
    keep_state.add(int(schedule[max(np.searchsorted(schedule, 0.9 * steps, side="right") - 1, 0)]))

    fingerprint = _fingerprint(params)
    recorder, first_step, wall_before = _Recorder(), 0, 0.0
    if checkpoint is not None and checkpoint.exists():
        try:
            state = torch.load(
                checkpoint, map_location="cpu", weights_only=False
            )  # RNG states live on the CPU
            if not isinstance(state, dict):
                raise TypeError(f"a {type(state).__name__}, not a checkpoint")
            if state.get("fingerprint") == fingerprint:
                model.load_state_dict(state["model"])
                if optimizer is not None:
                    optimizer.load_state_dict(state["optimizer"])
                generator.set_state(state["generator"])
                recorder = _Recorder(state["records"])
                first_step, wall_before = int(state["step"]), float(state["wall_seconds"])
                log.info(
                    "resumed from checkpoint %s at step %d of %d", checkpoint, first_step, steps
                )
            else:
                log.warning(
                    "ignoring checkpoint %s: it belongs to other run parameters or another "
                    "version of the package",
                    checkpoint,
                )
        except Exception as error:  # noqa: BLE001 (truncated, corrupt or of another layout: start over, keep its bytes)
            from .io import set_aside

            log.warning(
                "checkpoint %s cannot be resumed (%s: %s); set aside as %s, training starts over",
                checkpoint,
                type(error).__name__,
                str(error).splitlines()[0] if str(error) else "",
                set_aside(checkpoint).name,
            )
            model, parameters, optimizer, generator = (
                fresh_start()
            )  # a restore may have stopped half-way
            recorder, first_step, wall_before = _Recorder(), 0, 0.0

    status, diverged_at = "max_steps", None
    # the divergence bound's reference: the risk on the fixed evaluation set at step 0 (steadier
    # than a batch)
    first_risk = float(recorder.values["eval_risk"][0]) if len(recorder) else None
    last_progress = last_checkpoint = time.monotonic()
    progress_step = first_step
    with PromptStream(sampler, batch, generator, ahead=draws_ahead_by_default(device)) as stream:
        for step in range(first_step, steps + 1):
            now = time.monotonic()
            if checkpoint is not None and now - last_checkpoint >= checkpoint_seconds:
                _save_checkpoint(
                    checkpoint,
                    {
                        "fingerprint": fingerprint,
                        "step": step,
                        "model": model.state_dict(),
                        "optimizer": None if optimizer is None else optimizer.state_dict(),
                        "generator": stream.resume_state(),
                        "records": recorder.to_cpu(),
                        "wall_seconds": wall_before + now - started,
                    },
                )
                last_checkpoint = now
            batch_prompts = stream.next()
            loss = risk(
                model(batch_prompts.x, batch_prompts.y, batch_prompts.x_query),
                batch_prompts.y_query,
            )
            grads = torch.autograd.grad(loss, parameters)
            if is_record[step]:
                reason = divergence(float(loss.detach()), first_risk)
                if reason and len(
                    recorder
                ):  # (a run that starts diverged keeps its one record, at step 0)
                    status, diverged_at = "diverged", step
                    _log_divergence(step, lr, reason, len(recorder))
                    break
                view = reduced_view(model) if with_view else None
                eval_risk, eval_se, eval_task = evaluate(model, eval_on_device)
                grad_norm = torch.sqrt(sum(g.square().sum() for g in grads))
                recorder.add(
                    step=step,
                    W=view and view.W,
                    U=view and view.U,
                    score_leak=view and view.score_leak,
                    value_leak=view and view.value_leak,
                    # the whole state: train.nc keeps it at the snapshot records (head ablation
                    # over training), and it is the convergence status of a model without a view
                    theta=flat_parameters_of(model)[0],
                    train_risk=loss.detach(),
                    grad_norm=grad_norm,
                    eval_risk=eval_risk,
                    eval_risk_se=eval_se,
                    eval_risk_task=eval_task,
                )
                first_risk = float(eval_risk) if first_risk is None else first_risk
                kept = recorder.values["theta"]
                if len(kept) >= 2 and recorder.values["step"][-2] not in keep_state:
                    kept[-2] = None  # a state between snapshots: only the latest is needed
                if reason:
                    status, diverged_at = "diverged", step
                    log.error(
                        "training diverged at step 0: %s; stopping with the initial state recorded",
                        reason,
                    )
                    break
            if step == steps:
                break
            with torch.no_grad():
                if optimizer is None:
                    torch._foreach_add_(parameters, grads, alpha=-lr)
                else:
                    for p, g in zip(parameters, grads):
                        p.grad = g
                    optimizer.step()
            if now - last_progress >= progress_seconds:
                rate = (step - progress_step) / max(now - last_progress, 1e-9)
                current = float(loss.detach())
                log.info(
                    "step %d/%d (%.0f%%)  t=%.4g  train_risk=%.4g  %.0f steps/s  ETA %.0f s",
                    step,
                    steps,
                    100 * step / steps,
                    lr * step,
                    current,
                    rate,
                    (steps - step) / max(rate, 1e-9),
                )
                reason = divergence(current, first_risk)
                if reason:
                    status, diverged_at = "diverged", step
                    _log_divergence(step, lr, reason, len(recorder))
                    break
                last_progress, progress_step = now, step

    wall = wall_before + time.monotonic() - started
    dataset = _to_dataset(recorder, spec, params, lr, status, wall, device, stored=given)
    # how `parameters` unflattens: [name, shape] in order (model.load_flat_parameters)
    dataset.attrs["parameter_layout"] = json.dumps(flat_parameters_of(model)[1])
    if diverged_at is not None:
        dataset.attrs.update(
            diverged_at_step=int(diverged_at),
            diverged_at_time=float(lr * diverged_at),
            divergence_rule=f"batch risk not finite or above {DIVERGENCE_FACTOR:g} x the "
            "evaluation risk at step 0",
        )
    log.info(
        "finished: status=%s, %d records, %.1f s wall, %.0f steps/s",
        status,
        len(recorder),
        wall,
        dataset.attrs["steps_per_second"],
    )
    return TrainResult(dataset, status)


def _to_dataset(
    recorder: _Recorder,
    spec: TaskSpec,
    params: Mapping[str, Any],
    lr: float,
    status: str,
    wall: float,
    device: torch.device,
    stored: Mapping[str, Any],
) -> xr.Dataset:
    """train.nc from the records; ``stored`` are the parameters its ``config`` attribute keeps."""
    from .io import provenance_attrs

    rec = recorder.to_cpu()

    def stack(name: str, shape: tuple[int, ...]) -> np.ndarray:
        """The records of ``name``; zeros when it was not recorded (a model without a view)."""
        if not rec[name] or rec[name][0] is None:
            return np.zeros((len(rec[name]), *shape))
        return np.stack([np.asarray(v, dtype=np.float64) for v in rec[name]])

    heads, d, tasks = int(params["heads"]), spec.dim, spec.num_tasks
    steps = np.asarray(rec["step"], dtype=np.int64)
    phi, psi = spec.bases()
    ds = xr.Dataset(
        data_vars={
            "W": (
                ("time", "head", "x_row", "x_col"),
                stack("W", (heads, d, d)),
                {"long_name": "key-query matrix W_h (reduced view)"},
            ),
            "U": (
                ("time", "head", "y_row", "y_col"),
                stack("U", (heads, tasks, tasks)),
                {"long_name": "output-value matrix U_h (reduced view)"},
            ),
            "train_risk": (
                ("time",),
                stack("train_risk", ()),
                {"long_name": "risk on the training batch (per-task MSE, noise included)"},
            ),
            "eval_risk": (
                ("time",),
                stack("eval_risk", ()),
                {"long_name": "risk on the fixed evaluation set (per-task MSE, noise included)"},
            ),
            "eval_risk_se": (
                ("time",),
                stack("eval_risk_se", ()),
                {"long_name": "Monte-Carlo standard error of eval_risk"},
            ),
            "eval_risk_task": (
                ("time", "task"),
                stack("eval_risk_task", (tasks,)),
                {"long_name": "evaluation MSE of each task, noise included"},
            ),
            "grad_norm": (
                ("time",),
                stack("grad_norm", ()),
                {"long_name": "Euclidean norm of the batch gradient"},
            ),
            "score_leak": (
                ("time", "head"),
                stack("score_leak", (heads,)),
                {"long_name": "relative norm of the y -> score block left out of W (full model)"},
            ),
            "value_leak": (
                ("time", "head"),
                stack("value_leak", (heads,)),
                {"long_name": "relative norm of the x -> value block left out of U (full model)"},
            ),
            "basis_x": (
                ("x_row", "x_col"),
                phi,
                {"long_name": "covariate basis Phi: observed = Phi @ latent"},
            ),
            "basis_y": (
                ("y_row", "y_col"),
                psi,
                {"long_name": "output basis Psi: observed = Psi @ latent"},
            ),
            "block_mask": (
                ("task", "x_col"),
                spec.block_mask(),
                {"long_name": "covariates (latent basis) read by each task"},
            ),
        },
        coords={
            "time": (
                "time",
                lr * steps,
                {"long_name": "gradient-flow time", "units": io.TIME_UNITS},
            ),
            "step": ("time", steps, {"long_name": "optimizer step"}),
            "head": np.arange(heads),
            "task": np.arange(tasks),
            "x_row": np.arange(d),
            "x_col": np.arange(d),
            "y_row": np.arange(tasks),
            "y_col": np.arange(tasks),
        },
    )
    for name in ("train_risk", "eval_risk", "eval_risk_se", "eval_risk_task"):
        ds[name].attrs["units"] = "squared output units"
    done = int(steps[-1]) if len(steps) else 0
    if has_reduced_view(str(params["model"])):
        change = relative_change_last_tenth(ds["time"].values, flat_parameters(ds))
    else:  # no reduced view to record: the status reads the whole state
        ds = ds.drop_vars(["W", "U", "score_leak", "value_leak"])
        kept = [k for k, state in enumerate(rec["theta"]) if state is not None]
        change = relative_change_last_tenth(
            ds["time"].values[kept], np.stack([np.asarray(rec["theta"][k]) for k in kept])
        )
    if len(steps):
        keep = [
            int(k)
            for k in snapshot_records(steps, int(params["snapshots"]))
            if rec["theta"][k] is not None
        ]
        ds["parameters"] = (
            ("snapshot", "parameter"),
            np.stack([np.asarray(rec["theta"][k], dtype=np.float64) for k in keep]),
            {"long_name": "every parameter of the model at a snapshot record, flattened"},
        )
        ds = ds.assign_coords(
            snapshot_time=(
                "snapshot",
                lr * steps[keep],
                {"long_name": "gradient-flow time of the snapshot", "units": io.TIME_UNITS},
            ),
            snapshot_step=(
                "snapshot",
                steps[keep],
                {"long_name": "optimizer step of the snapshot"},
            ),
        )
    if status == "max_steps" and change < float(params["converged_rtol"]):
        status = "converged"
    ds.attrs.update(provenance_attrs(stored))
    ds.attrs.update(
        status=status,
        wall_seconds=float(wall),
        steps_per_second=float(done / wall) if wall > 0 else 0.0,
        device=str(device),
        noise_floor=float(spec.risk_floor),
    )
    return ds
