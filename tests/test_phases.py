"""Phase detection on synthetic curves with known transitions, on pure noise and on flat curves."""

from __future__ import annotations

import math

import numpy as np
import pytest

from multihead_icl.convergence import convergence_evidence
from multihead_icl.phases import (
    crossing_time,
    detect_transition,
    logistic_transition,
    monotone_fit,
    robust_noise,
)

# the training record schedule: t = lr x steps at log-spaced steps (lr 0.5, 2000 steps, 100 points)
TIMES = 0.5 * np.unique(np.concatenate([[0], np.round(np.geomspace(1, 2000, 100))]))
CENTRE, RATE = 12.0, 0.8


def logistic(times: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-RATE * (times - CENTRE)))


def true_crossing(fraction: float) -> float:
    """Where the logistic covers ``fraction`` of its total change (its t=0 value is ~6e-5,
    negligible)."""
    return CENTRE + math.log(fraction / (1 - fraction)) / RATE


def record_spacing_near(t: float) -> float:
    k = int(np.searchsorted(TIMES, t))
    return float(TIMES[min(k + 1, len(TIMES) - 1)] - TIMES[max(k - 1, 0)])


@pytest.mark.parametrize("seed", range(10))
def test_noisy_falling_loss_gives_the_true_phase_times(seed):
    rng = np.random.default_rng(seed)
    loss = 1.05 - 0.9 * logistic(TIMES) + 0.02 * rng.standard_normal(len(TIMES))
    found = detect_transition(TIMES, loss, "decrease", min_relative_change=0.2)
    assert found.detected
    for got, fraction in ((found.start, 0.1), (found.end, 0.9)):
        expected = true_crossing(fraction)
        assert abs(got - expected) <= 1.5 * record_spacing_near(expected)
    assert 0.01 < found.noise < 0.04  # robust estimate of the 0.02 noise, despite the trend


@pytest.mark.parametrize("seed", range(5))
def test_noisy_rising_signal_gives_the_true_phase_times(seed):
    rng = np.random.default_rng(100 + seed)
    signal = 0.95 * logistic(TIMES) + 0.01 * rng.standard_normal(len(TIMES))
    found = detect_transition(TIMES, signal, "increase", min_change=0.25)
    assert found.detected and found.start < found.end
    assert abs(found.start - true_crossing(0.1)) <= 1.5 * record_spacing_near(true_crossing(0.1))
    assert abs(found.end - true_crossing(0.9)) <= 1.5 * record_spacing_near(true_crossing(0.9))


def test_pure_noise_never_reads_as_emergence():
    rng = np.random.default_rng(7)
    for _ in range(200):
        curve = 1.0 + 0.05 * rng.standard_normal(len(TIMES))
        for direction in ("decrease", "increase"):
            found = detect_transition(TIMES, curve, direction, min_relative_change=0.2)
            assert not found.detected
            assert math.isnan(found.start) and math.isnan(found.end)


def test_flat_and_wrong_way_curves_read_as_no_emergence():
    flat = detect_transition(TIMES, np.full(len(TIMES), 0.7), "decrease")
    assert not flat.detected and math.isnan(flat.start)
    rising = detect_transition(TIMES, 0.2 + logistic(TIMES), "decrease")
    assert not rising.detected and math.isnan(rising.end)


def test_growth_too_small_to_count_is_not_emergence():
    """A signal still in warm-up (1e-4 -> 4e-3, a 40-fold rise) has not emerged: absolute
    threshold."""
    tiny = 1e-4 * np.exp(TIMES / TIMES[-1] * math.log(40))
    assert not detect_transition(TIMES, tiny, "increase", min_change=0.25).detected
    assert detect_transition(TIMES, tiny, "increase", min_change=0.0).detected


def test_noise_floor_can_veto_a_smooth_small_drop():
    loss = 1.0 - 0.3 * logistic(TIMES)
    assert detect_transition(TIMES, loss, "decrease").detected
    assert not detect_transition(TIMES, loss, "decrease", noise_floor=0.1).detected  # 0.3 < 5 x 0.1


def test_crossing_time_interpolates_linearly():
    times = np.array([0.0, 1.0, 2.0, 4.0])
    fitted = np.array([0.0, 0.0, 1.0, 1.0])
    assert crossing_time(times, fitted, 0.25, increasing=True) == pytest.approx(1.25)
    assert crossing_time(times, fitted[::-1], 0.75, increasing=False) == pytest.approx(1.25)
    assert math.isnan(crossing_time(times, fitted, 2.0, increasing=True))


def test_monotone_fit_and_robust_noise():
    rng = np.random.default_rng(0)
    values = np.linspace(0, 1, 400) + 0.1 * rng.standard_normal(400)
    fit = monotone_fit(values, increasing=True)
    assert np.all(np.diff(fit) >= 0)
    assert robust_noise(values) == pytest.approx(0.1, rel=0.15)


def test_convergence_evidence_on_a_known_trajectory():
    times = np.linspace(0, 100, 101)
    theta = np.stack([np.ones(50) * min(t, 50.0) for t in times])  # moves until t = 50, then still
    still = convergence_evidence(times, np.full(101, 0.3), theta)
    assert still.relative_change_last_tenth == 0.0 and still.final_grad_norm == 0.3
    drifting = np.stack([np.ones(50) * t for t in times])
    moving = convergence_evidence(times, np.linspace(1, 0, 101), drifting)
    assert moving.relative_change_last_tenth == pytest.approx(10 / 100)
    assert moving.median_grad_norm_last_tenth == pytest.approx(0.05, abs=1e-9)


def test_logistic_phase_ends_do_not_move_with_the_run_length():
    """A logistic rise followed by a slow drift: emergence end from the logistic fit is the same for
    a run to t = 100 and to t = 1000 (and close to the true t_m + w ln 9); read from the end of the
    run (detect_transition), it moves with the drift."""
    t = np.concatenate([[0.0], np.geomspace(0.5, 1000.0, 100)])
    p = 0.9 / (1 + np.exp(-(t - 40) / 5)) + 0.05 * np.log1p(t / 200)
    p = p + np.random.default_rng(0).normal(0, 0.005, t.size)
    short = t <= 100
    long_fit, short_fit = logistic_transition(t, p), logistic_transition(t[short], p[short])
    assert long_fit.detected and short_fit.detected
    assert long_fit.end == pytest.approx(short_fit.end, rel=0.02)
    assert long_fit.end == pytest.approx(40 + 5 * math.log(9), rel=0.03)
    assert long_fit.start == pytest.approx(40 - 5 * math.log(9), rel=0.03)
    by_end = (
        detect_transition(t, p, "increase").end,
        detect_transition(t[short], p[short], "increase").end,
    )
    assert by_end[0] > 1.05 * by_end[1]


def test_logistic_phase_of_a_flat_curve_is_not_detected():
    t = np.geomspace(0.5, 100.0, 50)
    flat = logistic_transition(
        t, np.full(t.size, 0.3) + np.random.default_rng(1).normal(0, 0.01, t.size)
    )
    assert not flat.detected and math.isnan(flat.end)
