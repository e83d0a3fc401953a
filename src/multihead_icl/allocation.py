"""Allocation of tasks to heads from a head x task matrix of weights, whatever produced it: the
spectral read-out's (mu omega)^2 or head ablation's risk increases. numpy only, so the figure and
verdict jobs use it without torch or scipy."""

from __future__ import annotations

import numpy as np


def allocation_share(omega: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """The spectral share, (mu_hi omega_hi)^2 / sum_h' (mu_h'i omega_h'i)^2, (..., H, I)."""
    return shares((np.asarray(mu) * np.asarray(omega)) ** 2)


def ablation_share(increase: np.ndarray) -> np.ndarray:
    """The ablation share: the positive part of each head's risk increase over the heads' sum."""
    return shares(np.clip(np.asarray(increase, dtype=float), 0.0, None))


def shares(power: np.ndarray) -> np.ndarray:
    """power_hi / sum_h' power_h'i over the heads (axis -2), (..., H, I); NaN for a task no head
    serves (zero power)."""
    total = power.sum(axis=-2, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, power / np.where(total > 0, total, 1.0), np.nan)


def winner_and_purity(share: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per task (..., I): the head with the largest share (-1 if undefined) and that share."""
    finite = np.isfinite(share).all(axis=-2)
    winner = np.where(finite, np.argmax(np.nan_to_num(share, nan=-1.0), axis=-2), -1)
    purity = np.where(
        finite, np.nanmax(np.where(np.isfinite(share), share, -np.inf), axis=-2), np.nan
    )
    return winner.astype(np.int64), purity


def allocation_is_clean(
    winner: np.ndarray, purity: np.ndarray, heads: int, threshold: float
) -> bool:
    """Every purity >= threshold and, when there are at least as many heads as tasks, distinct
    winners."""
    if np.any(winner < 0) or not np.all(np.isfinite(purity)):
        return False
    distinct = len(set(winner.tolist())) == len(winner) if heads >= len(winner) else True
    return bool(np.all(purity >= threshold) and distinct)
