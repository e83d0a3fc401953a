"""Spectral read-out of a training run: semi-singular values, task allocation, phases, regime, ODE
overlay.

Input is train.nc (W, U in the observed basis, with the bases Phi, Psi and the block mask); output
is spectral.nc (docs/science.md §8). The read-out (docs/science.md §3), in the task basis:

    omega_hi = tr(P_i Phi^T W_h Phi P_i) / d_i,     mu_hi = (Psi^T U_h Psi)_ii,
    p_i = sum_h mu_hi omega_hi,
    share_hi = (mu_hi omega_hi)^2 / sum_h' (mu_h'i omega_h'i)^2,
    winner = argmax_h share,     purity = max_h share

Allocation is *clean* when every purity >= ``clean_purity`` and, for H >= I, the winners are
distinct heads. Nothing here assumes allocation happens: a run where every head serves every task
reports low purities and ``clean = False``.

**Predicted winner** (claim C4): argmax_h |a_hi(0)| with a_hi = (sqrt(d_i) omega_hi + mu_hi) / 2.
Why: matrix gradient flow on the infinite-L risk moves (sqrt(d_i) omega_hi, mu_hi) by the same
symmetric linear map for every head h (see theory.py), so a_hi grows and b_hi = (sqrt(d_i) omega_hi
- mu_hi)/2 decays by one task-wide factor; the ratios a_hi / a_h'i are therefore preserved through
the warm-up, and at its end head h's part of p_i is ~ a_hi^2 / sqrt(d_i). The head with the largest
|a_hi(0)| leads task i when emergence starts. Finite-L terms (order 1/L) can change the order of
nearly tied heads; ``prediction_margin`` (largest / second largest |a_hi(0)|) says how tied they
were.
The competition between tasks inside a head during emergence (finite L) is not in this rule; the
noiseless spectral ODE from the same omega(0), mu(0) has it, and its winner is stored next to it
(``ode_winner_at_emergence``) as a second prediction from the initial values.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from . import io
from .allocation import allocation_is_clean, allocation_share, winner_and_purity  # noqa: F401
from .convergence import convergence_evidence, flat_parameters
from .phases import detect_transition, logistic_transition
from .spectral_settings import SpectralSettings
from .tasks import TaskSpec
from .theory import (
    SpectralProblem,
    growth_amplitude,
    integrate_spectral_ode,
    iterate_spectral_map,
    sgd_noise_amplitude,
    task_signal,
    warmup_law_time,
    warmup_rate,
)

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# read-out


def to_latent(
    weight: np.ndarray, value: np.ndarray, basis_x: np.ndarray, basis_y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Phi^T W Phi and Psi^T U Psi over the last two axes (observed = basis @ latent)."""
    return basis_x.T @ weight @ basis_x, basis_y.T @ value @ basis_y


def semi_singular_values(
    weight_latent: np.ndarray, value_latent: np.ndarray, block_mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(omega, mu), each (..., H, I), from latent W (..., H, d, d), U (..., H, I, I), mask (I,
    d)."""
    dims = block_mask.sum(axis=1)
    omega = np.einsum("...jj,ij->...i", weight_latent, block_mask) / dims
    mu = np.diagonal(value_latent, axis1=-2, axis2=-1).copy()
    return omega, mu


def _relative_norm(residual: np.ndarray, whole: np.ndarray) -> np.ndarray:
    num = np.linalg.norm(residual.reshape(*residual.shape[:-2], -1), axis=-1)
    den = np.linalg.norm(whole.reshape(*whole.shape[:-2], -1), axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def decomposability_residual(
    weight_latent: np.ndarray, omega: np.ndarray, block_mask: np.ndarray
) -> np.ndarray:
    """||W_h - sum_i omega_hi P_i||_F / ||W_h||_F, (..., H); NaN where W_h = 0."""
    decomposable = np.einsum("...i,ij,jk->...jk", omega, block_mask, np.eye(block_mask.shape[1]))
    return _relative_norm(weight_latent - decomposable, weight_latent)


def value_residual(value_latent: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """||U_h - diag(mu_h)||_F / ||U_h||_F, (..., H); NaN where U_h = 0."""
    diagonal = mu[..., :, None] * np.eye(mu.shape[-1])
    return _relative_norm(value_latent - diagonal, value_latent)


def winner_at(winners: np.ndarray, times: np.ndarray, when: float) -> int:
    """The winning head of one task (``winners``: (T,) along a flow) at the first record at or after
    ``when``; -1 when ``when`` is NaN (the task did not emerge)."""
    if not math.isfinite(when):
        return -1
    return int(winners[min(int(np.searchsorted(times, when)), len(times) - 1)])


def predicted_winner(
    task_dims: np.ndarray, omega0: np.ndarray, mu0: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """argmax_h |a_hi(0)| per task and the margin |a|_(1) / |a|_(2) (inf for one head); see module
    doc."""
    amplitude = np.abs(growth_amplitude(task_dims, omega0, mu0))
    winner = np.argmax(amplitude, axis=0).astype(np.int64)
    if amplitude.shape[0] < 2:
        return winner, np.full(amplitude.shape[1], np.inf)
    ordered = np.sort(amplitude, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        margin = ordered[-1] / ordered[-2]
    return winner, margin


def effective_token_ratio(weight: np.ndarray, prompts: Any) -> np.ndarray:
    """n_eff / L per record and head, n_eff = 1 / sum_l pi_l^2 of the softmax attention of the
    reduced form with key-query matrix ``weight`` (T, H, d, d), averaged over ``prompts`` (anything
    with covariates ``x`` (B, L, d) and ``x_query`` (B, d): an evaluation set's arrays or Prompts).
    numpy only, so the read-out job does not load torch."""
    x = np.asarray(prompts.x, dtype=float)
    xq = np.asarray(prompts.x_query, dtype=float)
    times, heads = weight.shape[:2]
    out = np.full((times, heads), np.nan)
    for k in range(times):
        if not np.all(np.isfinite(weight[k])):
            continue
        scores = np.matmul(x, np.einsum("hde,be->bdh", weight[k], xq))  # (B, L, H): x_l^T W_h x_q
        scores -= scores.max(axis=1, keepdims=True)
        attention = np.exp(scores)
        attention /= attention.sum(axis=1, keepdims=True)
        out[k] = (1.0 / np.square(attention).sum(axis=1)).mean(axis=0) / x.shape[1]
    return out


@dataclass
class Covariates:
    """An evaluation set's covariates, all that the read-out needs of it (n_eff / L)."""

    x: np.ndarray  # (B, L, d)
    x_query: np.ndarray  # (B, d)

    def __len__(self) -> int:
        return len(self.x)


# --------------------------------------------------------------------------------------------------
# the whole spectral.nc


UNITLESS = {"units": "1"}
TIME_UNITS = {"units": io.TIME_UNITS}
Variables = dict[str, tuple[tuple[str, ...], Any, dict[str, str]]]


def _index_at_or_after(times: np.ndarray, when: float) -> int | None:
    if not math.isfinite(when):
        return None
    k = int(np.searchsorted(times, when - 1e-12 * max(1.0, abs(when)), side="left"))
    return min(k, len(times) - 1)


def _winners_at(
    times: np.ndarray, winners: np.ndarray, purity: np.ndarray, when: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per task i, winner and purity at the first record at or after when[i] (-1 / NaN if when is
    NaN)."""
    tasks = winners.shape[1]
    winner_at, purity_at = np.full(tasks, -1, dtype=np.int64), np.full(tasks, np.nan)
    for i in range(tasks):
        k = _index_at_or_after(times, float(when[i]))
        if k is not None:
            winner_at[i], purity_at[i] = winners[k, i], purity[k, i]
    return winner_at, purity_at


def _phase_variables(
    times: np.ndarray, signal: np.ndarray, train: xr.Dataset, settings: SpectralSettings
) -> Variables:
    """Warm-up and emergence ends per task from p_i, and the same from the evaluation risk."""
    fractions = (settings.warmup_fraction, settings.emergence_fraction)
    per_task = [
        logistic_transition(
            times,
            signal[:, i],
            fractions,
            settings.min_change_snr,
            min_change=settings.min_signal_rise,
        )
        for i in range(signal.shape[1])
    ]
    eval_se = float(np.nanmedian(train["eval_risk_se"].values)) if len(times) else 0.0
    loss = detect_transition(
        times,
        train["eval_risk"].values,
        "decrease",
        fractions,
        settings.min_change_snr,
        min_relative_change=settings.min_relative_loss_drop,
        noise_floor=eval_se,
    )
    warm, emerge = f"{settings.warmup_fraction:g}", f"{settings.emergence_fraction:g}"
    return {
        "emerged": (
            ("task",),
            np.array([p.detected for p in per_task]),
            {"long_name": "the task signal rose significantly (else phase times are NaN)"},
        ),
        "warmup_end": (
            ("task",),
            np.array([p.start for p in per_task]),
            {
                "long_name": f"warm-up end: the logistic fit of p_i covers {warm} of its rise",
                **TIME_UNITS,
            },
        ),
        "emergence_end": (
            ("task",),
            np.array([p.end for p in per_task]),
            {
                "long_name": f"emergence end: the logistic fit of p_i covers {emerge} of its rise",
                **TIME_UNITS,
            },
        ),
        "emergence_plateau": (
            ("task",),
            np.array([p.final_level for p in per_task]),
            {
                "long_name": "plateau of the logistic fit of p_i "
                "(the level its fast rise tends to)",
                **UNITLESS,
            },
        ),
        "loss_emerged": (
            (),
            loss.detected,
            {"long_name": "the evaluation risk dropped significantly"},
        ),
        "loss_warmup_end": (
            (),
            loss.start,
            {"long_name": f"eval risk first covers {warm} of its total drop", **TIME_UNITS},
        ),
        "loss_emergence_end": (
            (),
            loss.end,
            {"long_name": f"eval risk first covers {emerge} of its total drop", **TIME_UNITS},
        ),
    }


def _allocation_variables(
    times: np.ndarray,
    share: np.ndarray,
    emergence_end: np.ndarray,
    emerged: np.ndarray,
    settings: SpectralSettings,
) -> Variables:
    """Winner, purity and clean flag at the end, at each task's emergence end, over time, and the
    peak."""
    heads, tasks = share.shape[1], share.shape[2]
    winners_t, purity_t = winner_and_purity(share)  # (T, I)
    winner, purity = winners_t[-1], purity_t[-1]
    clean_t = np.array(
        [
            allocation_is_clean(w, p, heads, settings.clean_purity)
            for w, p in zip(winners_t, purity_t)
        ]
    )
    winner_em, purity_em = _winners_at(times, winners_t, purity_t, emergence_end)
    clean_em = bool(emerged.all()) and allocation_is_clean(
        winner_em, purity_em, heads, settings.clean_purity
    )
    peak_index = np.argmax(np.where(np.isfinite(purity_t), purity_t, -np.inf), axis=0)
    peak_purity = np.where(
        np.isfinite(purity_t).any(axis=0), purity_t[peak_index, np.arange(tasks)], np.nan
    )
    rule = f"every purity >= {settings.clean_purity:g} and distinct winners when H >= I"
    onset, drift = _clean_window(times, purity_t, settings.clean_purity)
    lowest_t = np.where(np.isfinite(purity_t), purity_t, -np.inf).min(axis=1)
    cleanest = int(np.argmax(lowest_t))
    return {
        "winner": (
            ("task",),
            winner,
            {"long_name": "head with the largest share at the end of training (-1: none)"},
        ),
        "purity": (
            ("task",),
            purity,
            {"long_name": "share of the winning head at the end of training", **UNITLESS},
        ),
        "clean": (
            (),
            allocation_is_clean(winner, purity, heads, settings.clean_purity),
            {"long_name": f"allocation clean at the end: {rule}"},
        ),
        "clean_over_time": (
            ("time",),
            clean_t,
            {"long_name": f"allocation clean at this record: {rule}"},
        ),
        "winner_at_emergence": (
            ("task",),
            winner_em,
            {
                "long_name": "head with the largest share at the task's emergence end (-1: no "
                "emergence)"
            },
        ),
        "purity_at_emergence": (
            ("task",),
            purity_em,
            {"long_name": "share of that head at the task's emergence end", **UNITLESS},
        ),
        "clean_at_emergence": (
            (),
            clean_em,
            {"long_name": f"allocation clean at each task's emergence end: {rule}"},
        ),
        "peak_purity": (
            ("task",),
            peak_purity,
            {"long_name": "largest purity of the task over the run", **UNITLESS},
        ),
        "peak_purity_time": (
            ("task",),
            np.where(np.isfinite(peak_purity), times[peak_index], np.nan),
            {"long_name": "first time the task's purity peaked", **TIME_UNITS},
        ),
        "winner_at_cleanest": (
            ("task",),
            winners_t[cleanest],
            {
                "long_name": "winner of each task at the record where the lowest purity over "
                "tasks peaks (the cleanest allocation)"
            },
        ),
        "cleanest_purity": (
            (),
            float(lowest_t[cleanest]) if np.isfinite(lowest_t[cleanest]) else np.nan,
            {"long_name": "largest over time of the lowest purity over tasks", **UNITLESS},
        ),
        "cleanest_time": (
            (),
            float(times[cleanest]),
            {"long_name": "time of the cleanest allocation", **TIME_UNITS},
        ),
        "clean_onset_time": (
            ("task",),
            onset,
            {
                "long_name": f"first time the task's purity reached {settings.clean_purity:g} "
                "(NaN: never)",
                **TIME_UNITS,
            },
        ),
        "drift_time": (
            ("task",),
            drift,
            {
                "long_name": "first time after its peak that the task's purity fell below "
                f"{settings.clean_purity:g} again (NaN: never clean, or stayed clean)",
                **TIME_UNITS,
            },
        ),
    }


def _clean_window(
    times: np.ndarray, purity_t: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per task, when allocation became clean and when it drifted away again after its peak: the two
    time scales of docs/science.md §4 (allocation forms after emergence, then sign-flipped copies
    grow)."""
    tasks = purity_t.shape[1]
    onset, drift = np.full(tasks, np.nan), np.full(tasks, np.nan)
    for i in range(tasks):
        curve = np.where(np.isfinite(purity_t[:, i]), purity_t[:, i], -np.inf)
        above = np.flatnonzero(curve >= threshold)
        if above.size == 0:
            continue
        onset[i] = times[above[0]]
        peak = int(np.argmax(curve))
        below = np.flatnonzero(curve[peak:] < threshold)
        if below.size:
            drift[i] = times[peak + below[0]]
    return onset, drift


def _theory_variables(
    params: Mapping[str, Any],
    omega: np.ndarray,
    mu: np.ndarray,
    times: np.ndarray,
    steps: np.ndarray,
    emergence_end: np.ndarray,
    settings: SpectralSettings,
) -> tuple[Variables, dict[str, str]]:
    """Predicted winners, the warm-up laws, the spectral ODE and the noiseless GD map, from t =
    0."""
    problem = SpectralProblem.from_params(params)
    dims, tasks = problem.dims, problem.num_tasks
    omega0, mu0 = omega[0], mu[0]
    signal = task_signal(omega, mu)
    predicted, margin = predicted_winner(dims, omega0, mu0)
    lr = float(params["lr"]) if params["optimizer"] == "gd" else 0.0
    law = warmup_law_time(problem, omega0, mu0, settings.warmup_fraction)
    law_gd = warmup_law_time(problem, omega0, mu0, settings.warmup_fraction, lr=lr)
    noise_amplitude, law_sgd = np.full(tasks, np.nan), np.full(tasks, np.nan)
    if lr > 0 and "batch_size" in params:
        noise_amplitude = sgd_noise_amplitude(problem, lr, int(params["batch_size"]))
        law_sgd = warmup_law_time(
            problem, omega0, mu0, settings.warmup_fraction, lr=lr, noise_amplitude=noise_amplitude
        )

    ode = integrate_spectral_ode(problem, omega0, mu0, times, rtol=settings.ode_rtol)
    ode_gap = np.array([_max_abs(ode.signal[:, i] - signal[:, i]) for i in range(tasks)])
    # through emergence: where the finite-L surrogate is valid (small omega); later the leading
    # heads reach omega ~ 0.5, where the surrogate fails (results/theory/surrogate_check.nc)
    through = (
        times <= np.nanmax(emergence_end)
        if np.isfinite(emergence_end).any()
        else np.zeros_like(times, dtype=bool)
    )
    ode_gap_emergence = _max_abs(ode.signal[through] - signal[through]) if through.any() else np.nan
    ode_winners_t, ode_purity_t = winner_and_purity(allocation_share(ode.omega, ode.mu))
    at = np.where(np.isfinite(emergence_end), emergence_end, times[-1])
    ode_winner_em, _ = _winners_at(times, ode_winners_t, ode_purity_t, at)
    if lr > 0:
        gd_map = iterate_spectral_map(problem, omega0, mu0, lr, steps)
        gd_signal, gd_status = gd_map.signal, gd_map.message
    else:
        gd_signal, gd_status = (
            np.full_like(signal, np.nan),
            "not computed: the run is not plain gradient descent",
        )

    thi, ti = ("time", "head", "task"), ("time", "task")
    law_name = f"warm-up law: the logistic p_i from a(0) reaches {settings.warmup_fraction:g}"
    variables: Variables = {
        "predicted_winner": (
            ("task",),
            predicted,
            {
                "long_name": "argmax_h |a_hi(0)|, a = (sqrt(d_i) omega + mu) / 2, the "
                "warm-up-invariant amplitude"
            },
        ),
        "prediction_margin": (
            ("task",),
            margin,
            {"long_name": "largest / second largest |a_hi(0)| (near 1: a near tie)", **UNITLESS},
        ),
        "growth_amplitude": (
            ("head", "task"),
            growth_amplitude(dims, omega0, mu0),
            {"long_name": "a_hi(0) = (sqrt(d_i) omega_hi(0) + mu_hi(0)) / 2", **UNITLESS},
        ),
        "ode_winner_at_emergence": (
            ("task",),
            ode_winner_em,
            {
                "long_name": "winner of the noiseless spectral ODE from the same omega(0), mu(0), "
                "at the trained run's emergence end (end of run if none)"
            },
        ),
        "ode_winner": (
            ("task",),
            ode_winners_t[-1],
            {"long_name": "winner of the spectral ODE at the end of the run"},
        ),
        "warmup_law_time": (
            ("task",),
            law,
            {"long_name": f"{law_name} (gradient flow)", **TIME_UNITS},
        ),
        "warmup_law_time_gd": (
            ("task",),
            law_gd,
            {
                "long_name": f"{law_name}, with gradient descent's per-step growth at the run's lr",
                **TIME_UNITS,
            },
        ),
        "warmup_law_time_sgd": (
            ("task",),
            law_sgd,
            {
                "long_name": f"{law_name}, GD growth plus the mean amplitude sampling noise adds "
                "(batch_size, L)",
                **TIME_UNITS,
            },
        ),
        "sgd_noise_amplitude": (
            ("task",),
            noise_amplitude,
            {
                "long_name": "rms amplitude that sampling noise alone gives the growing mode a_hi "
                "(the same for every head)",
                **UNITLESS,
            },
        ),
        "warmup_rate": (
            ("task",),
            warmup_rate(problem),
            {
                "long_name": "logistic rate lambda_i = 4 kappa_i / (I sqrt(d_i)) "
                "of the warm-up law",
                "units": io.RATE_UNITS,
            },
        ),
        "omega_ode": (
            thi,
            ode.omega,
            {
                "long_name": "omega from the spectral ODE (gradient flow on the finite-L risk) "
                "started at omega(0)",
                **UNITLESS,
            },
        ),
        "mu_ode": (
            thi,
            ode.mu,
            {"long_name": "mu from the spectral ODE started at mu(0)", **UNITLESS},
        ),
        "signal_ode": (
            ti,
            ode.signal,
            {"long_name": "task signal of the spectral ODE", **UNITLESS},
        ),
        "ode_signal_gap": (
            ("task",),
            ode_gap,
            {"long_name": "max over time of |p_i(ODE) - p_i(trained)|", **UNITLESS},
        ),
        "ode_agreement": (
            (),
            _max_abs(ode_gap),
            {
                "long_name": "largest gap in task signal between the ODE and the trained run "
                "(over time and tasks)",
                **UNITLESS,
            },
        ),
        "ode_agreement_emergence": (
            (),
            ode_gap_emergence,
            {
                "long_name": "largest gap in task signal between the ODE and the trained run up "
                "to the last task's emergence end (NaN: no emergence)",
                **UNITLESS,
            },
        ),
        "signal_gd_map": (
            ti,
            gd_signal,
            {
                "long_name": "task signal of noiseless gradient descent on the same risk at the "
                "run's lr",
                **UNITLESS,
            },
        ),
        "gd_map_agreement": (
            (),
            _max_abs(gd_signal - signal),
            {
                "long_name": "largest |p_i(GD map) - p_i(trained)|: sampling noise and surrogate "
                "error",
                **UNITLESS,
            },
        ),
        "ode_discretisation_gap": (
            (),
            _max_abs(ode.signal - gd_signal),
            {
                "long_name": "largest |p_i(ODE) - p_i(GD map)|: the effect of the finite lr alone",
                **UNITLESS,
            },
        ),
    }
    attrs = {
        "predicted_winner_rule": (
            "argmax_h |a_hi(0)|, a_hi = (sqrt(d_i) omega_hi + mu_hi)/2: infinite-L gradient flow "
            "scales every head's a_hi "
            "by one task-wide factor during warm-up, so the head leading a_hi at t = 0 leads p_i "
            "when emergence starts"
        ),
        "ode_model": _ode_description(params, problem),
        "ode_status": ode.message,
        "gd_map_status": gd_status,
    }
    return variables, attrs


def analyse_run(
    train: xr.Dataset, eval_prompts: Any | None, settings: SpectralSettings
) -> xr.Dataset:
    """Everything spectral.nc holds, from one train.nc dataset and (a subset of) its evaluation
    set."""
    params = io.read_config(train)
    spec = TaskSpec.from_params(params)
    model_kind = str(params["model"])
    times = train["time"].values.astype(float)
    heads = train.sizes["head"]
    mask = train["block_mask"].values

    w_latent, u_latent = to_latent(
        train["W"].values, train["U"].values, train["basis_x"].values, train["basis_y"].values
    )
    omega, mu = semi_singular_values(w_latent, u_latent, mask)
    signal = task_signal(omega, mu)
    share = allocation_share(omega, mu)

    phases = _phase_variables(times, signal, train, settings)
    emergence_end, emerged = phases["emergence_end"][1], phases["emerged"][1]
    allocation = _allocation_variables(times, share, emergence_end, emerged, settings)
    theory, theory_attrs = _theory_variables(
        params, omega, mu, times, train["step"].values, emergence_end, settings
    )

    dims = np.asarray(spec.task_dims, dtype=float)
    saturation = np.exp(np.einsum("thi,i->th", omega**2, dims)) / spec.context_length
    if model_kind == "linear" or eval_prompts is None:
        n_eff = np.full((len(times), heads), np.nan)
    else:
        n_eff = effective_token_ratio(train["W"].values, eval_prompts)
    convergence = convergence_evidence(times, train["grad_norm"].values, flat_parameters(train))

    th, thi, ti = ("time", "head"), ("time", "head", "task"), ("time", "task")
    data_vars: Variables = {
        "omega": (
            thi,
            omega,
            {
                "long_name": "semi-singular value omega_hi = tr(P_i Phi^T W_h Phi P_i) / d_i",
                **UNITLESS,
            },
        ),
        "mu": (
            thi,
            mu,
            {"long_name": "semi-singular value mu_hi = (Psi^T U_h Psi)_ii", **UNITLESS},
        ),
        "signal": (
            ti,
            signal,
            {
                "long_name": "task signal p_i = sum_h mu_hi omega_hi (1 = task solved as L -> inf)",
                **UNITLESS,
            },
        ),
        "share": (
            thi,
            share,
            {
                "long_name": "allocation share (mu_hi omega_hi)^2 / sum_h (mu_hi omega_hi)^2",
                **UNITLESS,
            },
        ),
        "decomposability_residual": (
            th,
            decomposability_residual(w_latent, omega, mask),
            {"long_name": "||W_h - sum_i omega_hi P_i||_F / ||W_h||_F (task basis)", **UNITLESS},
        ),
        "value_residual": (
            th,
            value_residual(u_latent, mu),
            {"long_name": "||U_h - diag(mu_h)||_F / ||U_h||_F (task basis)", **UNITLESS},
        ),
        **allocation,
        **phases,
        **theory,
        "n_eff_ratio": (
            th,
            n_eff,
            {
                "long_name": "n_eff / L, n_eff = 1 / sum_l pi_l^2, "
                "averaged over evaluation prompts",
                **UNITLESS,
            },
        ),
        "saturation_index": (
            th,
            saturation,
            {"long_name": "exp(sum_i d_i omega_hi^2) / L (surrogate needs << 1)", **UNITLESS},
        ),
        "final_grad_norm": (
            (),
            convergence.final_grad_norm,
            {"long_name": "batch gradient norm at the last record"},
        ),
        "median_grad_norm_last_tenth": (
            (),
            convergence.median_grad_norm_last_tenth,
            {"long_name": "median batch gradient norm over the last tenth of the time axis"},
        ),
        "relative_change_last_tenth": (
            (),
            convergence.relative_change_last_tenth,
            {"long_name": "||theta(T) - theta(0.9 T)|| / ||theta(T)|| over (W, U)", **UNITLESS},
        ),
    }
    coords = {
        "time": ("time", times, dict(train["time"].attrs)),
        "step": ("time", train["step"].values, dict(train["step"].attrs)),
        "head": train["head"].values,
        "task": train["task"].values,
    }
    ds = xr.Dataset(data_vars=data_vars, coords=coords)
    ds.attrs.update(io.provenance_attrs(io.stored_config(train)))
    ds.attrs.update(
        spectral_settings=json.dumps(settings.as_dict(), sort_keys=True),
        train_status=str(train.attrs.get("status", "unknown")),
        n_eff_note=_n_eff_note(model_kind, eval_prompts),
        **theory_attrs,
    )
    log.info(
        "spectral read-out: winners %s (predicted %s, ODE %s), purity %s, clean %s; warm-up end "
        "%s (law %s); ODE gap %.3g",
        ds["winner"].values.tolist(),
        ds["predicted_winner"].values.tolist(),
        ds["ode_winner_at_emergence"].values.tolist(),
        np.round(ds["purity"].values, 3).tolist(),
        bool(ds["clean"]),
        np.round(ds["warmup_end"].values, 3).tolist(),
        np.round(ds["warmup_law_time_gd"].values, 3).tolist(),
        float(ds["ode_agreement"]),
    )
    return ds


def _max_abs(values: np.ndarray) -> float:
    with np.errstate(invalid="ignore"):
        finite = np.abs(values)[np.isfinite(values)]
    return float(finite.max()) if finite.size else math.nan


def _ode_description(params: Mapping[str, Any], problem: SpectralProblem) -> str:
    risk = (
        "exact finite-L risk of linear attention"
        if problem.model == "linear"
        else "finite-L delta-method surrogate of the softmax risk (with the ratio-bias term)"
        if problem.bias_term
        else "finite-L delta-method surrogate of the softmax risk"
    )
    notes = [
        f"matrix gradient flow on the {risk}, in spectral coordinates (d omega/dt = -(1/d_i) dR/d "
        "omega, d mu/dt = -dR/d mu)"
    ]
    if params["init"] != "decomposable":
        notes.append(
            "init is not decomposable: the ODE starts from the read-out omega(0), mu(0) and "
            "ignores the rest of W(0), U(0)"
        )
    if params["model"] == "full":
        notes.append(
            "model full: the ODE is the reduced form's; the full parametrisation's gradient flow "
            "has another metric and time scale"
        )
    if params["optimizer"] != "gd":
        notes.append(
            f"optimizer {params.get('optimizer')}: training is not gradient flow, time axis is lr "
            "x steps"
        )
    if params["target"] != "linear":
        notes.append(f"target {params.get('target')}: the theory assumes linear targets")
    return "; ".join(notes)


def _n_eff_note(model_kind: str, eval_prompts: Any | None) -> str:
    if model_kind == "linear":
        return "model linear: no softmax, n_eff / L not defined (NaN)"
    if eval_prompts is None:
        return "no evaluation prompts given: n_eff / L not computed (NaN)"
    note = f"softmax of x_l^T W_h x_q on {len(eval_prompts)} evaluation prompts"
    if model_kind == "full":
        note += (
            "; model full: computed from the reduced view W (x-x block of W_K^T W_Q / "
            "sqrt(D)), ignoring the y -> score block (see train.nc score_leak)"
        )
    return note
