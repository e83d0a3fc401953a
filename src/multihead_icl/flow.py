"""The exact spectral gradient flow: gradient flow on the population risk of decomposable weights.

The paper's claims are about gradient flow on the population risk, not about noisy finite-step
training. For decomposable weights W_h = sum_i omega_hi P_i, U_h = diag(mu_h) (task basis) the
population risk R(omega, mu) is an expectation over covariates alone once the coefficients and the
noise are integrated out (the Rao-Blackwellisation of ``optimality``), and each context block
enters only through its projection on the query direction. So R is estimated on one **fixed**
Monte-Carlo sample (common random numbers: every point of the trajectory sees the same prompts),
its gradient is the chain rule written out (checked against autograd) in float64, and

    d omega_hi / dt = -(1/d_i) dR/d omega_hi,      d mu_hi / dt = -dR/d mu_hi

is the matrix gradient flow seen in spectral coordinates (||P_i||_F^2 = d_i), in the same time
units t = lr x steps as train.nc (docs/science.md, "The exact spectral flow").

Variance reduction, measured (benchmarks/README.md): the Rao-Blackwellisation is what makes the
flow affordable. Sign-flip copies of the context blocks (which make the symmetry
omega_.i, mu_.i -> -omega_.i, -mu_.i exact on the sample) and a stratified query norm were tried
and dropped: at equal cost they gave the same or a larger sample-to-sample spread of p_i(t) than
independent prompts (4096 prompts: 0.014-0.032; 512 x 8 sign copies: 0.026-0.054).

The flow has no error bar of its own beyond the sample: the same flow on an independent sample,
and the largest gap between the two in p_i, is that error bar (flow.nc ``mc_gap``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scipy.integrate import solve_ivp

from .config import flow_applies, with_defaults
from .data import TaskSpec
from .optimality import (
    DTYPE,
    decomposable_terms,
    draw_covariates,
    normalisation_of,
    rao_blackwell_spec,
)

if TYPE_CHECKING:
    import xarray as xr

CHUNK_TOKENS = 50_000  # context tokens per block of the hand gradient (cache-sized)


class ExactRisk:
    """R(omega, mu) = E[(1/I)|y_hat - y_q|^2] of decomposable weights on a fixed covariate sample.

    ``prompts`` covariate draws from ``seed``. Noise included, so
    the risk has the floor sigma^2 and the excess is R - sigma^2 (the same objective as
    training)."""

    def __init__(
        self, spec: TaskSpec, normalise: str = "softmax", prompts: int = 4096, seed: int = 0
    ):
        self.spec = rao_blackwell_spec(spec, normalise, "the exact flow")
        self.normalise = normalise
        sample = draw_covariates(self.spec, int(prompts), torch.Generator().manual_seed(int(seed)))
        z, r = sample.block_projections(self.spec)
        self.z, self.r, self.zr = z, r, z * r[:, None, :]  # the layout of optimality (risk_tensor)
        # the same numbers task-major, (I, b, L), in chunks of about CHUNK_TOKENS context tokens:
        # the
        # hand gradient's products then run over one long axis and stay in cache (4x faster than
        # one pass over the whole sample on a 2-core machine; benchmarks/bench_flow.py)
        step = max(1, CHUNK_TOKENS // self.spec.context_length)
        self._chunks = [
            (
                z[k : k + step].permute(2, 0, 1).contiguous(),
                r[k : k + step].T.contiguous(),
                self.zr[k : k + step].permute(2, 0, 1).contiguous(),
            )
            for k in range(0, z.shape[0], step)
        ]
        self.noise_var = self.spec.risk_floor  # sigma^2, or 0 when the query target is noiseless
        self.dims = np.asarray(self.spec.task_dims, dtype=float)
        kappa_over_d = torch.tensor(self.spec.signal, dtype=DTYPE) / torch.tensor(
            self.dims, dtype=DTYPE
        )
        self._signal_weight = kappa_over_d  # w_i
        # a_i: the context targets carry sigma^2 whether or not the query does
        self._spread_weight = (
            kappa_over_d * (torch.tensor(self.dims, dtype=DTYPE) - 1) + self.spec.noise_std**2
        )

    @property
    def size(self) -> int:
        """Prompts in the sample."""
        return int(self.z.shape[0])

    def risk_tensor(self, omega: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        """The risk as a differentiable torch expression (the reference the hand gradient is tested
        on)."""
        terms = decomposable_terms(omega, self.z, self.r, self.spec, self.normalise, self.zr)
        return terms.excess(mu).mean() + self.noise_var

    def risk(self, omega: np.ndarray, mu: np.ndarray) -> float:
        return self.gradient(omega, mu, need_gradient=False)[0]

    def gradient(
        self, omega: np.ndarray, mu: np.ndarray, need_gradient: bool = True
    ) -> tuple[float, np.ndarray, np.ndarray]:
        """(R, dR/d omega, dR/d mu) at one point, by the chain rule written out (3-5x faster than
        autograd here; tests check it against autograd and finite differences).

        With A_bli = sum_h pi_blh mu_hi (the attention weights task i sees), v_bi = sum_l A_bli
        z_bli, w_i = kappa_i / d_i and a_i = w_i (d_i - 1) + sigma^2, the Rao-Blackwellised risk is
        R = sigma^2 + (1/I) sum_i mean_b [w_i (v_bi - r_bi)^2 + a_i sum_l A_bli^2]."""
        w = torch.as_tensor(np.asarray(omega, dtype=float), dtype=DTYPE)
        m = torch.as_tensor(np.asarray(mu, dtype=float), dtype=DTYPE)
        value, grad_omega, grad_mu = 0.0, torch.zeros_like(w), torch.zeros_like(m)
        for z, r, zr in self._chunks:
            part = self._chunk_gradient(w, m, z, r, zr, need_gradient)
            value += part[0]
            if need_gradient:
                grad_omega += part[1]
                grad_mu += part[2]
        scale = 1.0 / (self.size * self.spec.num_tasks)
        if not need_gradient:
            return value * scale + self.noise_var, np.empty(0), np.empty(0)
        return (
            value * scale + self.noise_var,
            (2 * scale * grad_omega).numpy(),
            (2 * scale * grad_mu).numpy(),
        )

    def _chunk_gradient(
        self,
        w: torch.Tensor,
        m: torch.Tensor,
        z: torch.Tensor,
        r: torch.Tensor,
        zr: torch.Tensor,
        need_gradient: bool,
    ) -> tuple[float, torch.Tensor, torch.Tensor]:
        """Unnormalised sums over one chunk: sum_b,i of the bracket of ``gradient``, and half its
        gradient."""
        tasks, batch, length = z.shape
        heads = w.shape[0]
        flat_zr = zr.view(tasks, -1)
        scores = (w @ flat_zr).view(heads, batch, length)
        pi = torch.softmax(scores, dim=2) if self.normalise == "softmax" else scores.div_(length)
        A = (m.T @ pi.view(heads, -1)).view(tasks, batch, length)
        residual = (A * z).sum(dim=2).sub_(r)  # (I, b)
        spread = (A * A).sum(dim=(1, 2))  # (I,)
        value = float(
            (self._signal_weight * residual.square().sum(dim=1)).sum()
            + (self._spread_weight * spread).sum()
        )
        if not need_gradient:
            return value, w, m
        dA = z * (self._signal_weight[:, None] * residual)[:, :, None]  # dR/dA up to 2 / (B I)
        for i in range(tasks):
            dA[i].add_(A[i], alpha=float(self._spread_weight[i]))
        grad_mu = pi.view(heads, -1) @ dA.view(tasks, -1).T
        dpi = (m @ dA.view(tasks, -1)).view(heads, batch, length)
        if self.normalise == "softmax":
            dpi.sub_((pi * dpi).sum(dim=2, keepdim=True)).mul_(pi)
        else:
            dpi.div_(length)
        return value, dpi.view(heads, -1) @ flat_zr.T, grad_mu

    def attention_spread(self, omega: np.ndarray) -> np.ndarray:
        """n_eff / L of every head, n_eff = 1 / sum_l pi_l^2 averaged over the sample (H,); NaN for
        linear attention, whose weights are not a distribution."""
        w = torch.as_tensor(np.asarray(omega, dtype=float), dtype=DTYPE)
        if self.normalise != "softmax":
            return np.full(w.shape[0], np.nan)
        total = torch.zeros(w.shape[0], dtype=DTYPE)
        for z, _, zr in self._chunks:
            tasks, batch, length = z.shape
            pi = torch.softmax((w @ zr.view(tasks, -1)).view(-1, batch, length), dim=2)
            total += (1.0 / pi.square().sum(dim=2)).sum(dim=1)
        return (total / (self.size * self.spec.context_length)).numpy()

    def velocity(self, omega: np.ndarray, mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The matrix gradient flow in spectral coordinates: (-(1/d_i) dR/d omega, -dR/d mu)."""
        _, grad_w, grad_m = self.gradient(omega, mu)
        return -grad_w / self.dims, -grad_m

    def gradient_norm(self, grad_omega: np.ndarray, grad_mu: np.ndarray) -> float:
        """Frobenius norm of the gradient in the matrix entries of (W, U) from dR/d omega, dR/d mu:
        the block of omega_hi is spread over d_i diagonal entries, so ||grad_W||^2 = sum (dR/d
        omega_hi)^2 / d_i."""
        return float(math.sqrt(np.sum(grad_omega**2 / self.dims) + np.sum(grad_mu**2)))


@dataclass
class Trajectory:
    """omega, mu (T, H, I) on ``times``; NaN after a failure."""

    times: np.ndarray
    omega: np.ndarray
    mu: np.ndarray
    success: bool
    message: str
    evaluations: int = 0
    seconds: float = 0.0

    @property
    def signal(self) -> np.ndarray:
        return np.sum(self.omega * self.mu, axis=-2)


def integrate_flow(
    risk: ExactRisk,
    omega0: np.ndarray,
    mu0: np.ndarray,
    times: np.ndarray,
    rtol: float,
    atol: float,
    progress: Callable[[float], None] | None = None,
) -> Trajectory:
    """Integrate the flow from (omega0, mu0) at times[0] and record it at ``times`` (ascending).

    LSODA switches between an explicit and a stiff method: early on the flow is a fast logistic
    rise, late it is a slow drift with fast transverse modes (stiff), where BDF steps grow with
    t."""
    started = time.monotonic()
    omega0, mu0 = np.asarray(omega0, dtype=float), np.asarray(mu0, dtype=float)
    shape, size = omega0.shape, omega0.size
    times = np.asarray(times, dtype=float)
    calls = [0]

    def rhs(t: float, state: np.ndarray) -> np.ndarray:
        calls[0] += 1
        if progress is not None:
            progress(t)
        v_omega, v_mu = risk.velocity(state[:size].reshape(shape), state[size:].reshape(shape))
        return np.concatenate([v_omega.ravel(), v_mu.ravel()])

    out = np.full((len(times), 2 * size), np.nan)
    start = np.concatenate([omega0.ravel(), mu0.ravel()])
    success, message = True, "integrated over the whole time axis"
    if len(times):
        out[0] = start
    if len(times) > 1 and times[-1] > times[0]:
        solution = solve_ivp(
            rhs, (times[0], times[-1]), start, method="LSODA", t_eval=times, rtol=rtol, atol=atol
        )
        out[: solution.y.shape[1]] = solution.y.T
        if solution.status != 0:
            success, message = (
                False,
                f"solver failed at t = {solution.t[-1] if solution.t.size else times[0]:.4g}: "
                f"{solution.message}",
            )
        elif not np.all(np.isfinite(out)):
            success, message = False, "solver returned non-finite values"
    return Trajectory(
        times,
        out[:, :size].reshape(-1, *shape),
        out[:, size:].reshape(-1, *shape),
        success,
        message,
        calls[0],
        time.monotonic() - started,
    )


def gradient_descent(
    risk: ExactRisk, omega0: np.ndarray, mu0: np.ndarray, lr: float, steps: np.ndarray
) -> Trajectory:
    """Gradient descent on the same exact risk with step ``lr`` (the matrix step, so omega moves by
    lr (1/d_i) dR/d omega), recorded at ``steps`` (ascending, from 0): training without batch noise,
    the time-discretisation reference for a run at that lr."""
    started = time.monotonic()
    steps = np.asarray(steps, dtype=np.int64)
    omega, mu = np.asarray(omega0, dtype=float).copy(), np.asarray(mu0, dtype=float).copy()
    out_omega = np.full((len(steps), *omega.shape), np.nan)
    out_mu = np.full((len(steps), *mu.shape), np.nan)
    wanted = {int(k): n for n, k in enumerate(steps)}
    last = int(steps[-1]) if len(steps) else -1
    success, message = True, f"gradient descent with lr = {lr:g} over {max(last, 0)} steps"
    for step in range(last + 1):
        if step in wanted:
            out_omega[wanted[step]], out_mu[wanted[step]] = omega, mu
        if step == last:
            break
        v_omega, v_mu = risk.velocity(omega, mu)
        if not (np.all(np.isfinite(v_omega)) and np.all(np.isfinite(v_mu))):
            success, message = False, f"stopped at step {step}: non-finite gradient"
            break
        omega, mu = omega + lr * v_omega, mu + lr * v_mu
    return Trajectory(
        lr * steps.astype(float),
        out_omega,
        out_mu,
        success,
        message,
        max(last, 0),
        time.monotonic() - started,
    )


# --------------------------------------------------------------------------------------------------
# The end state of a long flow


FINITE_LIMIT, DRIFTING, NOT_RESOLVED = 0, 1, 2
STEADY_RTOL = 0.3  # a power law has one exponent decade after decade; a slowing approach does not
END_CLASSES = {FINITE_LIMIT: "finite_limit", DRIFTING: "drifting", NOT_RESOLVED: "not_resolved"}


@dataclass(frozen=True)
class EndState:
    """What a flow does over its last decade of time [T/10, T]."""

    end_class: int  # FINITE_LIMIT, DRIFTING or NOT_RESOLVED
    relative_change: float  # ||theta(T) - theta(T/10)|| / ||theta(T)||, theta = (omega, mu)
    omega_exponent: float  # slope of log ||omega|| against log t over the last decade
    mu_exponent: float  # the same for ||mu||
    # the larger exponent has one sign and one value (within STEADY_RTOL) over the last two decades
    steady: bool


def _log_slope(times: np.ndarray, values: np.ndarray) -> float:
    keep = (times > 0) & (values > 0) & np.isfinite(values)
    if keep.sum() < 3:
        return math.nan
    return float(np.polyfit(np.log(times[keep]), np.log(values[keep]), 1)[0])


def classify_end(
    times: np.ndarray, omega: np.ndarray, mu: np.ndarray, limit_rtol: float, drift_exponent: float
) -> EndState:
    """Finite limit when the parameters moved by less than ``limit_rtol`` (relative) over the last
    decade; drifting when ||omega|| or ||mu|| follows a steady power law t^a with |a| >=
    ``drift_exponent`` over the last *two* decades (the exponents of [T/100, T/10] and [T/10, T]
    agree within STEADY_RTOL: a power-law drift moves by a constant fraction per decade, so it never
    reads as converged, while a drift that slows from decade to decade may still be an approach to a
    limit); otherwise not resolved at this horizon."""
    times = np.asarray(times, dtype=float)
    end = times[-1]
    decade = times >= end / 10
    if (
        decade.sum() < 6
        or not np.all(np.isfinite(omega[decade]))
        or not np.all(np.isfinite(mu[decade]))
    ):
        return EndState(NOT_RESOLVED, math.nan, math.nan, math.nan, False)
    theta = np.concatenate([omega.reshape(len(times), -1), mu.reshape(len(times), -1)], axis=1)
    first = int(np.argmax(decade))
    relative = float(
        np.linalg.norm(theta[-1] - theta[first]) / max(np.linalg.norm(theta[-1]), 1e-300)
    )
    norms = {
        "omega": np.linalg.norm(omega.reshape(len(times), -1), axis=1),
        "mu": np.linalg.norm(mu.reshape(len(times), -1), axis=1),
    }
    slopes = {k: _log_slope(times[decade], v[decade]) for k, v in norms.items()}
    key = max(slopes, key=lambda k: abs(slopes[k]) if math.isfinite(slopes[k]) else -1.0)
    before = (times >= end / 100) & (times <= end / 10)
    previous = (
        _log_slope(times[before], norms[key][before])
        if before.sum() >= 3 and np.all(np.isfinite(norms[key][before]))
        else math.nan
    )
    steady = (
        math.isfinite(previous)
        and previous * slopes[key] > 0
        and abs(previous - slopes[key]) <= STEADY_RTOL * abs(slopes[key])
    )
    if relative < limit_rtol:
        kind = FINITE_LIMIT
    elif math.isfinite(slopes[key]) and abs(slopes[key]) >= drift_exponent and steady:
        kind = DRIFTING
    else:
        kind = NOT_RESOLVED
    return EndState(kind, relative, slopes["omega"], slopes["mu"], steady)


def flow_allocation(
    flow: Trajectory, clean_purity: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Winner and purity of every task along a flow (T, I), and whether the allocation is clean at
    each time (T,): every purity >= ``clean_purity`` and distinct winners when H >= I."""
    from .spectral import allocation_is_clean, allocation_share, winner_and_purity

    winners, purity = winner_and_purity(allocation_share(flow.omega, flow.mu))
    heads = flow.omega.shape[1]
    clean = np.array(
        [allocation_is_clean(w, p, heads, clean_purity) for w, p in zip(winners, purity)],
        dtype=bool,
    )
    return winners, purity, clean


def flow_phases(flow: Trajectory, fractions: tuple[float, float]) -> list:
    """Warm-up and emergence ends of every task's p_i(t) along a flow
    (``phases.logistic_transition``;
    a flow has no noise, so any rise counts)."""
    from .phases import logistic_transition

    return [
        logistic_transition(flow.times, flow.signal[:, i], fractions, min_snr=0.0, min_change=0.0)
        for i in range(flow.signal.shape[1])
    ]


# --------------------------------------------------------------------------------------------------
# flow.nc: the exact flow of one run

SURROGATE_TOLERANCE = (
    0.05  # p_i gap within which the surrogate ODE "matches" (or twice the Monte-Carlo gap)
)


@dataclass(frozen=True)
class FlowSettings:
    """The config's ``flow`` section, every key filled from the schema (which documents each), less
    ``experiments``: which runs get a flow is the workflow's business, not the flow's."""

    samples: int
    seed: int
    horizon: float
    record_points: int
    rtol: float
    atol: float
    gd_horizon: float
    limit_rtol: float
    drift_exponent: float

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None = None) -> FlowSettings:
        filled = with_defaults("flow", values)
        return cls(**{f.name: filled[f.name] for f in fields(cls)})


def flow_times(run_times: np.ndarray, horizon: float, points: int) -> np.ndarray:
    """The run's own record times (so comparisons need no interpolation) and ``points`` log-spaced
    times from the first positive record to the horizon."""
    run_times = np.asarray(run_times, dtype=float)
    positive = run_times[run_times > 0]
    first = float(positive[0]) if positive.size else min(0.1, horizon)
    end = max(float(horizon), float(run_times[-1]) if run_times.size else 0.0)
    grid = np.geomspace(first, end, int(points)) if end > first else np.array([end])
    return np.unique(np.concatenate([[0.0], run_times, grid]))


def _gap(a: np.ndarray, b: np.ndarray) -> float:
    with np.errstate(invalid="ignore"):
        values = np.abs(np.asarray(a) - np.asarray(b))
    values = values[np.isfinite(values)]
    return float(values.max()) if values.size else math.nan


def analyse_flow(
    spectral: xr.Dataset, settings: FlowSettings, progress: Callable[[str], None] | None = None
) -> xr.Dataset:
    """flow.nc of one run from its spectral.nc: the exact flow from the run's omega(0), mu(0) to the
    long horizon, the same flow on an independent sample (its error bar), gradient descent on the
    exact risk at the run's lr (the time-step reference), the trained run's decomposable part on
    the exact risk (population gradient and excess), phases, the clean window and the end state."""
    import xarray as xr

    from . import io

    say = progress or (lambda message: None)
    params = io.read_config(spectral)
    if not flow_applies(params):
        raise ValueError(
            "the exact flow needs model reduced or linear and a linear target, got model "
            f"{params.get('model')!r}, target {params.get('target')!r}"
        )
    spec = TaskSpec.from_params(params)
    normalise = normalisation_of(str(params["model"]))
    spectral_settings = json.loads(spectral.attrs.get("spectral_settings", "{}"))
    clean_purity = float(spectral_settings["clean_purity"])
    fractions = (
        float(spectral_settings["warmup_fraction"]),
        float(spectral_settings["emergence_fraction"]),
    )
    run_times = spectral["time"].values.astype(float)
    omega_run = spectral["omega"].transpose("time", "head", "task").values
    mu_run = spectral["mu"].transpose("time", "head", "task").values
    omega0, mu0 = omega_run[0], mu_run[0]
    times = flow_times(run_times, settings.horizon, settings.record_points)
    lr = float(params["lr"]) if str(params["optimizer"]) == "gd" else 0.0
    gd_steps = (
        np.arange(int(min(settings.gd_horizon, run_times[-1]) / lr + 1e-9) + 1)
        if lr > 0
        else np.zeros(0, dtype=np.int64)
    )
    # the flow is also recorded at the GD reference's times, so that the two compare at equal t
    solver_times = np.union1d(times, lr * gd_steps)
    on_grid = np.isin(solver_times, times)

    risks = [ExactRisk(spec, normalise, settings.samples, settings.seed + k) for k in range(2)]
    flows = []
    for k, risk in enumerate(risks):
        last = [0.0]

        def tick(t: float, k: int = k, last: list[float] = last) -> None:
            if t >= 2 * last[0] and t > 1:
                last[0] = t
                say(f"flow on sample {k}: t = {t:.4g} of {times[-1]:.4g}")

        flows.append(
            integrate_flow(risk, omega0, mu0, solver_times, settings.rtol, settings.atol, tick)
        )
        say(
            f"flow on sample {k}: {flows[-1].message} ({flows[-1].evaluations} gradients, "
            f"{flows[-1].seconds:.1f} s)"
        )
    flow_at_gd = (
        flows[0].signal[np.searchsorted(solver_times, lr * gd_steps)]
        if lr > 0
        else np.zeros((0, spec.num_tasks))
    )
    flow, check = (
        Trajectory(
            times, f.omega[on_grid], f.mu[on_grid], f.success, f.message, f.evaluations, f.seconds
        )
        for f in flows
    )
    risk = risks[0]

    grads, excess, neff = [], [], []
    for w, m in zip(flow.omega, flow.mu):
        if np.all(np.isfinite(w)):
            value, gw, gm = risk.gradient(w, m)
            grads.append(risk.gradient_norm(gw, gm))
            excess.append(value - risk.noise_var)
            neff.append(risk.attention_spread(w))
        else:
            grads.append(math.nan)
            excess.append(math.nan)
            neff.append(np.full(w.shape[0], np.nan))
    trained = [risk.gradient(w, m) for w, m in zip(omega_run, mu_run)]
    trained_grad = np.array([risk.gradient_norm(gw, gm) for _, gw, gm in trained])
    trained_excess = np.array([value - risk.noise_var for value, _, _ in trained])

    if lr > 0:
        gd = gradient_descent(risk, omega0, mu0, lr, gd_steps)
        gd_status = gd.message
    else:
        gd = Trajectory(
            np.zeros(1),
            np.full((1, *omega0.shape), np.nan),
            np.full((1, *mu0.shape), np.nan),
            False,
            "",
        )
        gd_status = f"not computed: optimizer {params.get('optimizer')} is not gradient descent"
    say(f"gradient descent at lr {lr:g}: {gd_status} ({gd.seconds:.1f} s)")

    on_run = np.isin(times, run_times)
    flow_on_run = flow.signal[on_run]
    trained_signal = np.sum(omega_run * mu_run, axis=-2)
    emergence_end = (
        spectral["emergence_end"].values.astype(float)
        if "emergence_end" in spectral
        else np.full(spec.num_tasks, np.nan)
    )
    through = (
        run_times <= np.nanmax(emergence_end)
        if np.isfinite(emergence_end).any()
        else np.zeros(len(run_times), dtype=bool)
    )
    run_steps = spectral["step"].values.astype(np.int64)
    gd_index = {int(step): k for k, step in enumerate(gd_steps)}
    paired = [(k, gd_index[int(step)]) for k, step in enumerate(run_steps) if int(step) in gd_index]
    train_vs_gd = [(k, g) for k, g in paired if through[k]]

    def gap_over(pairs, a, b):
        return (
            _gap(np.array([a[i] for i, _ in pairs]), np.array([b[j] for _, j in pairs]))
            if pairs
            else math.nan
        )

    # the delta-method surrogate ODE of spectral.nc (an approximation) against the exact flow
    surrogate_gap = np.full(len(run_times), np.nan)
    if "signal_ode" in spectral:
        surrogate_gap = np.nanmax(
            np.abs(spectral["signal_ode"].transpose("time", "task").values - flow_on_run), axis=1
        )
    tolerance = max(
        SURROGATE_TOLERANCE,
        2 * _gap(flow.signal[times <= run_times[-1]], check.signal[times <= run_times[-1]]),
    )
    beyond = np.flatnonzero(~(surrogate_gap <= tolerance))
    surrogate_until = (
        float(run_times[beyond[0] - 1])
        if beyond.size and beyond[0] > 0
        else (math.nan if beyond.size else float(run_times[-1]))
    )
    winners, purity, clean = flow_allocation(flow, clean_purity)
    heads = omega0.shape[0]
    clean_times = times[clean]
    phases = flow_phases(flow, fractions)
    end = classify_end(times, flow.omega, flow.mu, settings.limit_rtol, settings.drift_exponent)
    end_check = classify_end(
        times, check.omega, check.mu, settings.limit_rtol, settings.drift_exponent
    )
    run_end = run_times[-1]

    unit, time_units = {"units": io.DIMENSIONLESS}, {"units": io.TIME_UNITS}
    thi, ti = ("time", "head", "task"), ("time", "task")
    data = {
        "omega": (thi, flow.omega, {"long_name": "omega_hi of the exact flow (sample 0)", **unit}),
        "mu": (thi, flow.mu, {"long_name": "mu_hi of the exact flow (sample 0)", **unit}),
        "signal": (ti, flow.signal, {"long_name": "task signal p_i of the exact flow", **unit}),
        "omega_check": (
            thi,
            check.omega,
            {"long_name": "omega_hi of the same flow on an independent sample (sample 1)", **unit},
        ),
        "mu_check": (thi, check.mu, {"long_name": "mu_hi of the same flow on sample 1", **unit}),
        "signal_check": (
            ti,
            check.signal,
            {"long_name": "task signal p_i of the flow on sample 1", **unit},
        ),
        "excess": (
            ("time",),
            np.array(excess),
            {
                "long_name": "excess risk R - sigma^2 of the flow (on sample 0)",
                "units": "squared output units",
            },
        ),
        "grad_norm": (
            ("time",),
            np.array(grads),
            {
                "long_name": "population gradient norm ||grad_(W,U) R|| of the flow (matrix "
                "entries)",
                "units": io.RISK_UNITS,
            },
        ),
        "n_eff_ratio": (
            ("time", "head"),
            np.array(neff),
            {
                "long_name": "n_eff / L of each head along the flow (sample 0; NaN for linear "
                "attention)",
                **unit,
            },
        ),
        "purity": (
            ti,
            purity,
            {
                "long_name": "allocation purity of the flow: the winning head's share of p_i^2",
                **unit,
            },
        ),
        "winner": (ti, winners, {"long_name": "winning head of each task along the flow"}),
        "mc_gap": (
            (),
            _gap(flow.signal[times <= run_end], check.signal[times <= run_end]),
            {
                "long_name": "Monte-Carlo error bar: largest |p_i(sample 0) - p_i(sample 1)| up "
                "to the run's last record",
                **unit,
            },
        ),
        "mc_gap_long": (
            (),
            _gap(flow.signal, check.signal),
            {"long_name": "largest |p_i(sample 0) - p_i(sample 1)| up to the long horizon", **unit},
        ),
        "signal_gd": (
            ("gd_time", "task"),
            gd.signal,
            {
                "long_name": "task signal of gradient descent on the exact risk at the run's lr "
                "(no batch noise)",
                **unit,
            },
        ),
        "omega_gd": (
            ("gd_time", "head", "task"),
            gd.omega,
            {"long_name": "omega of gradient descent on the exact risk at the run's lr", **unit},
        ),
        "mu_gd": (
            ("gd_time", "head", "task"),
            gd.mu,
            {"long_name": "mu of gradient descent on the exact risk at the run's lr", **unit},
        ),
        "flow_gd_gap": (
            (),
            _gap(flow_at_gd, gd.signal) if lr > 0 else math.nan,
            {
                "long_name": "time-step effect: largest |p_i(flow) - p_i(GD at the run's lr)| "
                "over the GD records",
                **unit,
            },
        ),
        "train_gd_gap": (
            (),
            gap_over(train_vs_gd, trained_signal, gd.signal),
            {
                "long_name": "largest |p_i(trained) - p_i(GD on the exact risk at the run's lr)| "
                "up to the trained emergence end (batch noise and the non-decomposable part)",
                **unit,
            },
        ),
        "train_flow_gap": (
            (),
            _gap(trained_signal[through], flow_on_run[through]) if through.any() else math.nan,
            {
                "long_name": "largest |p_i(trained) - p_i(exact flow)| up to the trained "
                "emergence end",
                **unit,
            },
        ),
        "train_flow_gap_run": (
            (),
            _gap(trained_signal, flow_on_run),
            {"long_name": "largest |p_i(trained) - p_i(exact flow)| over the whole run", **unit},
        ),
        "surrogate_gap": (
            ("run_time",),
            surrogate_gap,
            {
                "long_name": "largest |p_i(surrogate ODE of spectral.nc) - p_i(exact flow)| over "
                "tasks",
                **unit,
            },
        ),
        "surrogate_valid_until": (
            (),
            surrogate_until,
            {
                "long_name": "last record time up to which the surrogate ODE stays within the "
                "tolerance "
                "(attribute surrogate_tolerance) of the exact flow (NaN: not even at t = 0)",
                **time_units,
            },
        ),
        "trained_grad_norm": (
            ("run_time",),
            trained_grad,
            {
                "long_name": "population gradient norm at the trained run's decomposable part "
                "(omega, mu read out), on the exact risk",
                "units": io.RISK_UNITS,
            },
        ),
        "trained_excess": (
            ("run_time",),
            trained_excess,
            {
                "long_name": "excess risk of the trained run's decomposable part on the exact "
                "risk (sample 0)",
                "units": "squared output units",
            },
        ),
        "warmup_end": (
            ("task",),
            np.array([p.start for p in phases]),
            {
                "long_name": f"flow warm-up end: its logistic fit of p_i covers {fractions[0]:g} "
                "of its rise",
                **time_units,
            },
        ),
        "emergence_end": (
            ("task",),
            np.array([p.end for p in phases]),
            {
                "long_name": "flow emergence end: its logistic fit of p_i covers "
                f"{fractions[1]:g} of its rise",
                **time_units,
            },
        ),
        "clean_onset": (
            (),
            float(clean_times[0]) if clean_times.size else math.nan,
            {
                "long_name": "first time the flow's allocation is clean (purity >= "
                f"{clean_purity:g}, distinct winners)",
                **time_units,
            },
        ),
        "clean_end": (
            (),
            float(clean_times[-1]) if clean_times.size else math.nan,
            {"long_name": "last time the flow's allocation is clean", **time_units},
        ),
        "end_class": (
            (),
            np.int8(end.end_class),
            {
                "long_name": "what the flow does over its last decade of time",
                "flag_values": np.array(list(END_CLASSES), dtype=np.int8),
                "flag_meanings": " ".join(END_CLASSES.values()),
            },
        ),
        "end_class_check": (
            (),
            np.int8(end_check.end_class),
            {
                "long_name": "end_class of the flow on sample 1",
                "flag_values": np.array(list(END_CLASSES), dtype=np.int8),
                "flag_meanings": " ".join(END_CLASSES.values()),
            },
        ),
        "relative_change_last_decade": (
            (),
            end.relative_change,
            {"long_name": "||theta(T) - theta(T/10)|| / ||theta(T)||, theta = (omega, mu)", **unit},
        ),
        "omega_exponent": (
            (),
            end.omega_exponent,
            {"long_name": "a in ||omega|| ~ t^a over the last decade", **unit},
        ),
        "mu_exponent": (
            (),
            end.mu_exponent,
            {"long_name": "a in ||mu|| ~ t^a over the last decade", **unit},
        ),
        "omega_exponent_check": (
            (),
            end_check.omega_exponent,
            {"long_name": "omega_exponent on sample 1", **unit},
        ),
        "mu_exponent_check": (
            (),
            end_check.mu_exponent,
            {"long_name": "mu_exponent on sample 1", **unit},
        ),
    }
    coords = {
        "time": ("time", times, {"long_name": "gradient-flow time", **time_units}),
        "gd_time": (
            "gd_time",
            gd.times,
            {"long_name": "gradient-flow time of the GD reference (lr x step)", **time_units},
        ),
        "run_time": (
            "run_time",
            run_times,
            {"long_name": "the trained run's record times", **time_units},
        ),
        "head": np.arange(heads),
        "task": np.arange(spec.num_tasks),
    }
    ds = xr.Dataset(data, coords)
    ds.attrs.update(io.provenance_attrs(io.stored_config(spectral)))
    ds.attrs.update(
        flow_settings=json.dumps(asdict(settings), sort_keys=True),
        description=(
            "Exact spectral gradient flow: matrix gradient flow on the population risk of "
            "decomposable weights "
            "(Rao-Blackwellised, fixed Monte-Carlo sample), from the run's omega(0), mu(0); "
            "docs/science.md §5"
        ),
        risk=f"{normalise} attention, {settings.samples} prompts a sample, float64",
        flow_status=flow.message,
        check_status=check.message,
        gd_status=gd_status,
        run_end_time=float(run_end),
        surrogate_tolerance=float(tolerance),
        seconds=json.dumps(
            {
                "flow": round(flow.seconds, 2),
                "check": round(check.seconds, 2),
                "gd": round(gd.seconds, 2),
            }
        ),
        gradient_evaluations=int(flow.evaluations),
    )
    say(
        f"end state {END_CLASSES[end.end_class]} (relative change {end.relative_change:.3g}, "
        f"exponents omega {end.omega_exponent:.3g}, "
        f"mu {end.mu_exponent:.3g}); Monte-Carlo gap {float(ds['mc_gap']):.3g}"
    )
    return ds
