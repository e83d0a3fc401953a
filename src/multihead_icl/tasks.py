"""The parameters that fix the law of the prompts (docs/science.md §2), without torch: the workflow
and the read-out stages use them without loading it. The sampler is in ``data``; the real-data
prompts (``data`` other than synthetic, docs/science.md §10) are in ``realdata``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .realdata import real_dataset  # the registry's static facts: numpy only, no table read

TARGETS = ("linear", "tanh", "relu")
SIGNAL_UNITS = ("task", "coordinate")


def split_blocks(input_dim: int, tasks: int) -> list[int]:
    """The authors' layout: ``input_dim`` covariates cut into ``tasks`` contiguous blocks at
    floor(i * input_dim / tasks), so 50 over 3 tasks gives sizes 16, 17, 17."""
    if tasks > input_dim:
        raise ValueError(
            f"input_dim = {input_dim} cannot be split into tasks = {tasks} non-empty blocks"
        )
    cuts = [(i * input_dim) // tasks for i in range(tasks + 1)]
    return [b - a for a, b in zip(cuts, cuts[1:])]


@dataclass(frozen=True)
class TaskSpec:
    """The data-generating parameters of a suite of tasks (everything that fixes the prompt law)."""

    task_dims: tuple[int, ...]
    noise_std: float
    signal: tuple[float, ...]
    context_length: int
    target: str = "linear"
    rotate: bool = False
    basis_seed: int = 0
    query_noise: bool = True  # does the query target carry the noise (the risk floor sigma^2)?
    data: str = "synthetic"  # or a name in realdata.REAL_DATASETS: prompts built from its table

    def __post_init__(self) -> None:
        if len(self.task_dims) == 0 or min(self.task_dims) < 1:
            raise ValueError(f"task_dims must be positive integers, got {self.task_dims}")
        if len(self.signal) != len(self.task_dims):
            raise ValueError(
                f"signal has {len(self.signal)} values for {len(self.task_dims)} tasks"
            )
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")
        if self.context_length < 1:
            raise ValueError(f"context_length must be >= 1, got {self.context_length}")
        if self.data != "synthetic":
            dataset = real_dataset(self.data)
            if tuple(self.task_dims) != dataset.task_dims or self.rotate or self.target != "linear":
                raise ValueError(
                    f"data = {self.data} fixes task_dims {dataset.task_dims}, no rotation and a "
                    f"linear target; got {tuple(self.task_dims)}, rotate {self.rotate}, target "
                    f"{self.target!r}"
                )

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> TaskSpec:
        """Build from run parameters (config keys; the schema's defaults fill what is missing)."""
        from .config import complete_run  # config imports this module

        params = complete_run(params)
        if str(params["data"]) != "synthetic":
            return cls._from_real_params(params)
        tasks = int(params["tasks"])
        dims = task_dims_of(params)
        signal = params["signal"]
        signal = (
            [float(signal)] * tasks
            if isinstance(signal, (int, float))
            else [float(v) for v in signal]
        )
        unit = str(params["signal_per"])
        if unit not in SIGNAL_UNITS:
            raise ValueError(f"signal_per must be one of {SIGNAL_UNITS}, got {unit!r}")
        if unit == "coordinate":  # the variance of each coefficient entry: kappa_i = signal_i * d_i
            signal = [s * d for s, d in zip(signal, dims)]
        return cls(
            task_dims=tuple(dims),
            noise_std=float(params["noise_std"]),
            signal=tuple(signal),
            context_length=int(params["context_length"]),
            target=str(params["target"]),
            rotate=bool(params["rotate"]),
            basis_seed=int(params["basis_seed"]),
            query_noise=bool(params["query_noise"]),
        )

    @classmethod
    def _from_real_params(cls, params: Mapping[str, Any]) -> TaskSpec:
        """A real dataset fixes the blocks; its targets are standardised (signal 1 per task) and
        carry whatever noise the measurements have (none is added)."""
        dataset = real_dataset(str(params["data"]))
        if int(params["tasks"]) != dataset.num_tasks:
            raise ValueError(
                f"data = {dataset.name} has {dataset.num_tasks} tasks, got tasks = "
                f"{params['tasks']}"
            )
        if params["input_dim"] is not None:
            raise ValueError(f"data = {dataset.name} fixes the blocks; input_dim must be null")
        return cls(
            task_dims=dataset.task_dims,
            noise_std=0.0,
            signal=(1.0,) * dataset.num_tasks,
            context_length=int(params["context_length"]),
            target=str(params["target"]),
            rotate=bool(params["rotate"]),
            basis_seed=int(params["basis_seed"]),
            query_noise=False,
            data=dataset.name,
        )

    @property
    def risk_floor(self) -> float:
        """The Bayes floor of the risk: sigma^2 when the query target is noisy, else 0. On real data
        the floor is unknown (the measurements' own noise); 0 is only a lower bound."""
        if self.data != "synthetic":
            return 0.0
        return self.noise_std**2 if self.query_noise else 0.0

    @property
    def num_tasks(self) -> int:
        return len(self.task_dims)

    @property
    def dim(self) -> int:
        return sum(self.task_dims)

    def block_mask(self) -> np.ndarray:
        """(I, d) 0/1 matrix: row i marks the covariates of task i's block S_i."""
        mask = np.zeros((self.num_tasks, self.dim))
        start = 0
        for i, di in enumerate(self.task_dims):
            mask[i, start : start + di] = 1.0
            start += di
        return mask

    def block_projections(self) -> np.ndarray:
        """(I, d, d) orthogonal projections P_i onto the blocks, in the latent (task) basis."""
        return np.stack([np.diag(row) for row in self.block_mask()])

    def bases(self) -> tuple[np.ndarray, np.ndarray]:
        """(Phi, Psi): observed = Phi @ latent for covariates, Psi for outputs (identity unless
        rotate)."""
        if not self.rotate:
            return np.eye(self.dim), np.eye(self.num_tasks)
        rng = np.random.default_rng(self.basis_seed)
        return _haar_orthogonal(rng, self.dim), _haar_orthogonal(rng, self.num_tasks)


def task_dims_of(params: Mapping[str, Any]) -> list[int]:
    """d_i of every task from run parameters: ``task_dim`` (one or I values), or the authors'
    split of ``input_dim`` when that is set, or the blocks a real dataset fixes."""
    if params.get("data", "synthetic") != "synthetic":
        return list(real_dataset(str(params["data"])).task_dims)
    tasks = int(params["tasks"])
    if params.get("input_dim") is not None:
        return split_blocks(int(params["input_dim"]), tasks)
    dims = params["task_dim"]
    dims = [int(dims)] * tasks if isinstance(dims, (int, np.integer)) else [int(v) for v in dims]
    if len(dims) != tasks:
        raise ValueError(f"task_dim lists {len(dims)} dimensions for tasks = {tasks}")
    return dims


def _haar_orthogonal(rng: np.random.Generator, n: int) -> np.ndarray:
    """A Haar-distributed orthogonal matrix (QR of a Gaussian with the sign fix)."""
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))
