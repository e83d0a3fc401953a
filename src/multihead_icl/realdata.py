"""Real-data regression prompts from a table that ships inside a package (docs/science.md §10).

The Gaussian prompts of ``data`` have a known law, so every claim can be checked against theory;
these test whether the trained attention does in-context regression on measurements, where the
covariates are correlated and non-Gaussian and the fit is not exact. Nothing is downloaded: the
table is scikit-learn's bundled copy, read when a sampler first needs it.

The registry and its static facts (names, task blocks, row counts) import with numpy alone, since
the config and ``tasks`` use them in stages without torch; the sampler imports torch and the
loader imports scikit-learn only when called.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from .data import Prompts
    from .tasks import TaskSpec

SPLITS = ("train", "eval")


def _diabetes_columns() -> dict[str, np.ndarray]:
    """The raw (unscaled) columns of sklearn's diabetes table, its target named ``progression``."""
    from sklearn.datasets import load_diabetes  # heavy: only when the table is read

    bunch = load_diabetes(scaled=False)
    columns = {name: bunch.data[:, k] for k, name in enumerate(bunch.feature_names)}
    columns["progression"] = bunch.target
    return columns


@dataclass(frozen=True)
class RealDataset:
    """One table and the regression tasks read from it: task i predicts ``tasks[i][0]`` from the
    columns ``tasks[i][1]``; the blocks are disjoint, so the prompt has the block layout of §2."""

    name: str
    description: str
    task_names: tuple[str, ...]
    tasks: tuple[tuple[str, tuple[str, ...]], ...]  # (target, features) of each task
    citation: str
    rows: int  # rows of the table (checked on loading), so split sizes are known without it
    held_out: float  # fraction of the rows kept for the evaluation set
    split_seed: int
    loader: Callable[[], dict[str, np.ndarray]] = field(repr=False, compare=False)

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    @property
    def task_dims(self) -> tuple[int, ...]:
        return tuple(len(features) for _, features in self.tasks)

    @property
    def dim(self) -> int:
        return sum(self.task_dims)

    @property
    def features(self) -> tuple[str, ...]:
        """The covariates in prompt order: task 0's block, then task 1's, ..."""
        return tuple(f for _, features in self.tasks for f in features)

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(target for target, _ in self.tasks)

    def split_size(self, split: str) -> int:
        """Rows in ``split`` ("train" or "eval"), without reading the table."""
        held_out = int(round(self.held_out * self.rows))
        return {"train": self.rows - held_out, "eval": held_out}[_check_split(split)]


REAL_DATASETS: dict[str, RealDataset] = {
    "diabetes": RealDataset(
        name="diabetes",
        description=(
            "442 diabetes patients: age, sex, body mass index, blood pressure and six blood serum "
            "measurements at baseline, and disease progression one year later"
        ),
        task_names=("progression", "LDL"),
        tasks=(
            ("progression", ("age", "sex", "bmi", "bp")),
            # s2 is LDL; s1 total cholesterol, s3 HDL, s4 TC/HDL, s5 log triglycerides, s6 glucose
            ("s2", ("s1", "s3", "s4", "s5", "s6")),
        ),
        citation=(
            "Efron, Hastie, Johnstone, Tibshirani (2004). Least angle regression. Annals of "
            "Statistics 32(2), 407-499"
        ),
        rows=442,
        held_out=0.3,
        split_seed=0,
        loader=_diabetes_columns,
    ),
}


def real_dataset(name: str) -> RealDataset:
    """The registry entry, or a ValueError that lists the known names."""
    if name not in REAL_DATASETS:
        raise ValueError(f"unknown real dataset {name!r}; known: {', '.join(REAL_DATASETS)}")
    return REAL_DATASETS[name]


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split


@dataclass(frozen=True)
class Table:
    """A dataset's used columns, each standardised over all rows (z-score, population std): the
    covariates (n, d) in prompt order, the targets (n, I), and the population least-squares fit of
    each task on its block (coefficients (I, d), zero off the block, and its R^2)."""

    x: np.ndarray
    y: np.ndarray
    coef: np.ndarray
    r2: np.ndarray


@functools.cache
def load_table(name: str) -> Table:
    """Read and standardise once per process (the arrays are read-only, since they are shared)."""
    dataset = real_dataset(name)
    columns = dataset.loader()

    def standardised(column: str) -> np.ndarray:
        values = np.asarray(columns[column], dtype=np.float64)
        return (values - values.mean()) / values.std()

    x = np.stack([standardised(c) for c in dataset.features], axis=1)
    y = np.stack([standardised(c) for c in dataset.targets], axis=1)
    if len(x) != dataset.rows:
        raise ValueError(f"{name}: the table has {len(x)} rows, the registry says {dataset.rows}")
    coef = np.zeros((dataset.num_tasks, dataset.dim))
    r2 = np.zeros(dataset.num_tasks)
    start = 0
    for i, di in enumerate(dataset.task_dims):
        block = x[:, start : start + di]
        coef[i, start : start + di] = np.linalg.lstsq(block, y[:, i], rcond=None)[0]
        r2[i] = 1.0 - np.mean((y[:, i] - block @ coef[i, start : start + di]) ** 2)  # var y = 1
        start += di
    for array in (x, y, coef, r2):
        array.setflags(write=False)
    return Table(x=x, y=y, coef=coef, r2=r2)


@functools.cache
def split_rows(name: str, split: str) -> np.ndarray:
    """The table rows of ``split``, ascending: one fixed permutation (``split_seed``) puts the first
    ``held_out`` fraction in "eval" and the rest in "train", so the two never share a patient."""
    dataset = real_dataset(name)
    order = np.random.default_rng(dataset.split_seed).permutation(dataset.rows)
    held_out = dataset.split_size("eval")
    rows = np.sort(order[:held_out] if _check_split(split) == "eval" else order[held_out:])
    rows.setflags(write=False)
    return rows


@dataclass
class RowDraw:
    """The random part of a batch of real-data prompts: the table rows (B, L+1) of each prompt, the
    last its query, and one sign per covariate (B, d)."""

    rows: torch.Tensor
    signs: torch.Tensor


class RealDataSampler:
    """Draws batches of prompts from one split of a real dataset, with ``PromptSampler``'s
    interface (``sample``, ``draw``, ``build``).

    A prompt is L + 1 distinct rows of the split, the last the query. Each covariate is multiplied
    by one random sign per prompt: the prompt's coefficients are then the population ones times
    those signs, so they differ from prompt to prompt and must be read from the context; without
    the signs one fixed regression per task could be memorised in the weights.
    """

    def __init__(
        self,
        spec: TaskSpec,
        split: str = "train",
        device: torch.device | str = "cpu",
        dtype: torch.dtype | None = None,
    ):
        import torch

        dataset = real_dataset(spec.data)
        if tuple(spec.task_dims) != dataset.task_dims:
            raise ValueError(
                f"data = {spec.data} has task blocks {dataset.task_dims}, the spec "
                f"{tuple(spec.task_dims)}"
            )
        self.spec, self.dataset, self.split = spec, dataset, _check_split(split)
        self.device = torch.device(device)
        self.dtype = torch.float32 if dtype is None else dtype
        table = load_table(dataset.name)
        as_tensor = functools.partial(torch.tensor, device=self.device, dtype=self.dtype)
        self._x, self._y, self._coef = as_tensor(table.x), as_tensor(table.y), as_tensor(table.coef)
        self._rows = torch.tensor(split_rows(dataset.name, split), device=self.device)

    @property
    def rows(self) -> int:
        """Rows in this sampler's split."""
        return len(self._rows)

    def sample(
        self, batch: int, generator: torch.Generator, context_length: int | None = None
    ) -> Prompts:
        """``batch`` fresh prompts; ``context_length`` overrides L (up to the split's rows - 1)."""
        return self.build(self.draw(batch, generator, context_length))

    def draw(
        self, batch: int, generator: torch.Generator, context_length: int | None = None
    ) -> RowDraw:
        """Rows without replacement (a random permutation of the split per prompt, cut to L + 1)
        and the Rademacher signs, in the generator's order."""
        import torch

        length = self.spec.context_length if context_length is None else int(context_length)
        if length + 1 > self.rows:
            raise ValueError(
                f"context_length = {length} needs {length + 1} distinct rows, but the "
                f"{self.split!r} split of {self.dataset.name} has {self.rows}"
            )
        dev = self.device
        # float64 keys: ties (which would bias the order, not repeat a row) are then negligible
        keys = torch.rand(batch, self.rows, generator=generator, device=dev, dtype=torch.float64)
        order = keys.argsort(dim=1)
        rows = self._rows[order[:, : length + 1]]
        signs = torch.randint(
            0, 2, (batch, self.dataset.dim), generator=generator, device=dev, dtype=self.dtype
        )
        return RowDraw(rows=rows, signs=signs * 2 - 1)

    def build(self, draw: RowDraw) -> Prompts:
        """Gather the rows and flip the covariates (targets keep their sign: <s * g, s * x> =
        <g, x>); ``coef`` is the population fit times the signs."""
        from .data import Prompts

        length = draw.rows.shape[1] - 1
        x_all = self._x[draw.rows] * draw.signs[:, None, :]
        y_all = self._y[draw.rows]
        return Prompts(
            x=x_all[:, :length],
            y=y_all[:, :length],
            x_query=x_all[:, length],
            y_query=y_all[:, length],
            coef=self._coef[None] * draw.signs[:, None, :],
        )
