"""Phase boundaries (warm-up end, emergence end) from a noisy recorded curve (docs/science.md §3).

The start and end levels are medians of the raw curve over its first and last tenth of records
(an isotonic fit alone is biased at its ends: its last block can be one low noisy point). The
crossing times are read from the monotone (isotonic) least-squares fit of the curve, never from
the raw points, so a single noisy point cannot cross a level early. The transition counts only if
the change is large against the curve's own noise (a robust estimate from successive differences,
or a given floor such as the evaluation standard error) and large in absolute or relative terms;
otherwise every time is NaN and ``detected`` is false, so a flat curve reads "no emergence",
never a number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import curve_fit, isotonic_regression

DIRECTIONS = ("increase", "decrease")
# MAD -> standard deviation for Gaussian noise; successive differences have twice the variance
_MAD_TO_SD = 1.4826


@dataclass(frozen=True)
class Transition:
    """One monotone transition of a curve; times are NaN unless ``detected``."""

    detected: bool
    start: float  # first time the fit has covered ``fractions[0]`` of its change (warm-up end)
    end: float  # first time it has covered ``fractions[1]`` (emergence end)
    initial_level: float
    final_level: float
    noise: float
    snr: float  # |change| / noise


def robust_noise(values: np.ndarray) -> float:
    """Point-to-point noise of a curve: MAD of successive differences / sqrt(2), in sd units.
    Smooth trends barely move the median difference, so the estimate tracks the noise."""
    diffs = np.diff(np.asarray(values, dtype=float))
    diffs = diffs[np.isfinite(diffs)]
    if len(diffs) < 2:
        return 0.0
    return float(_MAD_TO_SD * np.median(np.abs(diffs - np.median(diffs))) / math.sqrt(2))


def monotone_fit(values: np.ndarray, increasing: bool) -> np.ndarray:
    """Least-squares non-decreasing (or non-increasing) fit: pool-adjacent-violators."""
    return np.asarray(isotonic_regression(np.asarray(values, dtype=float), increasing=increasing).x)


def crossing_time(times: np.ndarray, fitted: np.ndarray, level: float, increasing: bool) -> float:
    """First time the monotone ``fitted`` curve reaches ``level``, linear between records; NaN if
    never."""
    times, fitted = np.asarray(times, dtype=float), np.asarray(fitted, dtype=float)
    reached = fitted >= level if increasing else fitted <= level
    if not reached.any():
        return math.nan
    k = int(np.argmax(reached))
    if k == 0:
        return float(times[0])
    lo, hi = fitted[k - 1], fitted[k]
    weight = (level - lo) / (hi - lo) if hi != lo else 1.0
    return float(times[k - 1] + weight * (times[k] - times[k - 1]))


def detect_transition(
    times: np.ndarray,
    values: np.ndarray,
    direction: str,
    fractions: tuple[float, float] = (0.1, 0.9),
    min_snr: float = 5.0,
    min_change: float = 0.0,
    min_relative_change: float = 0.0,
    noise_floor: float = 0.0,
    edge_fraction: float = 0.1,
) -> Transition:
    """Times at which a curve has covered ``fractions`` of its total change in ``direction``.

    The change is median(last ``edge_fraction`` of records) - median(first ones), at least 3 each.
    Detected only if it goes in ``direction``, |change| >= min_snr * noise
    (noise = max(robust_noise, noise_floor)), |change| >= min_change and
    |change| >= min_relative_change * max(|start|, |end|).
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    times, values = np.asarray(times, dtype=float), np.asarray(values, dtype=float)
    keep = np.isfinite(times) & np.isfinite(values)
    times, values = times[keep], values[keep]
    nan = math.nan
    if len(values) < 3:
        return Transition(False, nan, nan, nan, nan, nan, nan)
    increasing = direction == "increase"
    edge = max(3, int(round(edge_fraction * len(values))))
    edge = min(edge, len(values) // 2)
    initial, final = float(np.median(values[:edge])), float(np.median(values[-edge:]))
    change = final - initial
    noise = max(robust_noise(values), float(noise_floor))
    snr = abs(change) / noise if noise > 0 else (math.inf if change != 0 else 0.0)
    scale = max(abs(initial), abs(final))
    detected = (
        (change > 0 if increasing else change < 0)
        and snr >= min_snr
        and abs(change) >= min_change
        and abs(change) >= min_relative_change * scale
    )
    if not detected:
        return Transition(False, nan, nan, initial, final, noise, snr)
    fitted = monotone_fit(values, increasing)
    start = crossing_time(times, fitted, initial + fractions[0] * change, increasing)
    end = crossing_time(times, fitted, initial + fractions[1] * change, increasing)
    return Transition(True, start, end, initial, final, noise, snr)


def _logistic(t: np.ndarray, rise: float, midpoint: float, width: float, base: float) -> np.ndarray:
    return base + rise / (1.0 + np.exp(-(t - midpoint) / width))


def logistic_transition(
    times: np.ndarray,
    values: np.ndarray,
    fractions: tuple[float, float] = (0.1, 0.9),
    min_snr: float = 5.0,
    min_change: float = 0.0,
    noise_floor: float = 0.0,
    edge_fraction: float = 0.1,
) -> Transition:
    """Warm-up and emergence ends of a rising curve from the logistic phase itself.

    The rise is detected as in ``detect_transition``; then
    p(t) = base + rise / (1 + e^{-(t - t_m)/w}) is fitted to the records up to t_m + 6 w (99.75% of
    the logistic rise; refitted until that cutoff settles), so a slow drift after the plateau does
    not move the plateau, and the ends are the fit's crossings of ``fractions`` of its own rise: t_m
    -+ w ln((1 - f)/f). Reading the rise from the end of the run instead makes "emergence end" move
    with the run's length. Falls back to ``detect_transition``'s times when the fit fails or has
    fewer than 6 records."""
    base = detect_transition(
        times,
        values,
        "increase",
        fractions,
        min_snr,
        min_change,
        noise_floor=noise_floor,
        edge_fraction=edge_fraction,
    )
    if not base.detected or not (math.isfinite(base.start) and math.isfinite(base.end)):
        return base
    times, values = np.asarray(times, dtype=float), np.asarray(values, dtype=float)
    keep = np.isfinite(times) & np.isfinite(values)
    times, values = times[keep], values[keep]
    level = base.initial_level
    guess = [
        base.final_level - level,
        0.5 * (base.start + base.end),
        max((base.end - base.start) / (2 * math.log(9)), 1e-9),
    ]
    cutoff = math.inf
    fitted = None
    for _ in range(6):
        inside = times <= cutoff
        if inside.sum() < 6:
            break
        try:
            params, _ = curve_fit(
                lambda t, a, m, w: _logistic(t, a, m, w, level),
                times[inside],
                values[inside],
                p0=guess,
                bounds=([0.0, times[0] - 1e9, 1e-9], [np.inf, np.inf, np.inf]),
                maxfev=4000,
            )
        except (RuntimeError, ValueError):
            break
        fitted, guess = params, list(params)
        new_cutoff = params[1] + 6 * params[2]
        if math.isfinite(cutoff) and abs(new_cutoff - cutoff) <= 0.01 * max(abs(cutoff), 1e-9):
            break
        cutoff = new_cutoff
    if fitted is None:
        return base
    rise, midpoint, width = (float(v) for v in fitted)
    start = midpoint - width * math.log((1 - fractions[0]) / fractions[0])
    end = midpoint + width * math.log(fractions[1] / (1 - fractions[1]))
    return Transition(
        True, max(start, float(times[0])), end, level, level + rise, base.noise, base.snr
    )
