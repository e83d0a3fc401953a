"""The convergence measure of claim C1, in numpy only (training, spectral analysis and the verdict
table all use it; the figure jobs must not need torch or scipy)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import xarray as xr


def flat_parameters(train: xr.Dataset) -> np.ndarray:
    """The recorded reduced view (W, U) of a train.nc, flattened to (time, parameters)."""
    steps = train.sizes["time"]
    return np.concatenate(
        [train["W"].values.reshape(steps, -1), train["U"].values.reshape(steps, -1)], axis=1
    )


def relative_change_last_tenth(times: np.ndarray, parameters: np.ndarray) -> float:
    """||theta(T) - theta(0.9 T)|| / ||theta(T)||, theta(0.9 T) the record at or before 0.9 T;
    infinite with fewer than two records or a zero final state."""
    times = np.asarray(times, dtype=float)
    if times.size < 2:
        return math.inf
    flat = np.asarray(parameters, dtype=float).reshape(times.size, -1)
    earlier = int(np.searchsorted(times, 0.9 * times[-1], side="right")) - 1
    earlier = min(max(earlier, 0), times.size - 2)
    norm = float(np.linalg.norm(flat[-1]))
    return float(np.linalg.norm(flat[-1] - flat[earlier]) / norm) if norm > 0 else math.inf


@dataclass(frozen=True)
class ConvergenceEvidence:
    """Claim C1's observables: does the run stop moving at its end?"""

    final_grad_norm: float  # batch gradient norm at the last record (includes sampling noise)
    median_grad_norm_last_tenth: float  # over the records in the last tenth of the time axis
    relative_change_last_tenth: float  # ||theta(T) - theta(0.9 T)|| / ||theta(T)|| on (W, U)


def convergence_evidence(
    times: np.ndarray, grad_norm: np.ndarray, parameters: np.ndarray
) -> ConvergenceEvidence:
    """``parameters`` (T, ...) is the recorded state (e.g. W and U flattened); times ascending."""
    times = np.asarray(times, dtype=float)
    grad_norm = np.asarray(grad_norm, dtype=float)
    if len(times) == 0:
        return ConvergenceEvidence(math.nan, math.nan, math.nan)
    last_tenth = times >= 0.9 * times[-1]
    change = relative_change_last_tenth(times, parameters)
    return ConvergenceEvidence(
        float(grad_norm[-1]), float(np.median(grad_norm[last_tenth])), change
    )
