"""The convergence measure of claim C1, in numpy only (training, spectral analysis and the verdict
table all use it; the figure jobs must not need torch or scipy)."""

from __future__ import annotations

import math

import numpy as np
import xarray as xr


def flat_parameters(train: xr.Dataset) -> np.ndarray:
    """The recorded reduced view (W, U) of a train.nc, flattened to (time, parameters)."""
    steps = train.sizes["time"]
    return np.concatenate([train["W"].values.reshape(steps, -1), train["U"].values.reshape(steps, -1)], axis=1)


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
