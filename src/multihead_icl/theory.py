"""Risk of decomposable multi-head attention in closed form, and gradient flow on it
(docs/science.md §4).

Everything is written for decomposable weights in the task (latent) basis, W_h = sum_i omega_hi P_i
and U_h = diag(mu_h), with p_i = sum_h mu_hi omega_hi the task signal. Derivations (ours):

* **Infinite L.** Head h's softmax average of y_i tends to E[y_i e^s] / E[e^s] with s = x^T W_h x_q.
  Tilting N(0, I) by e^{x^T v} gives N(v, I), so that limit is omega_hi <g_i, x_q,S_i> and
  R_inf = (1/I) sum_i [kappa_i (1 - p_i)^2 + sigma^2].
* **Finite L, softmax (delta method).** The validity condition e^{sum_j d_j omega_hj^2} << L
  (docs/science.md §4.4) is not enough: the next order involves E[w^3], whose average over queries
  diverges once omega^2 >= 1/6, so beyond that the error decays slower than 1/L (surrogate_check.nc
  measures where it holds: within 10% up to omega ~ 0.3, off by 15-30% at 0.45 even at L = 320).
  With w = e^s / E e^s, head h's average is m + A/(1 + B), A = (1/L) sum_l (y_l - m) w_l, B = (1/L)
  sum_l (w_l - 1). The variance of A gives (1/L) sum_{h,h'} mu_hi mu_h'i C_i(h,h') with

      C_i(h,h') = prod_j (1 - 2 c_j)^(-d_j/2) [kappa_i + sigma^2 + kappa_i c_i / (1 - 2 c_i)],
      c_j = omega_hj omega_h'j

  (the form of earlier notes), and the ratio bias
  E[-AB] = -(1/L) omega_hi <g_i, x_q> e^{|W_h x_q|^2} gives a second term of the same order,
  which earlier notes left out:

      (2/L) kappa_i (1 - p_i) sum_h mu_hi omega_hi prod_j (1 - 2 omega_hj^2)^(-d_j/2)
      / (1 - 2 omega_hi^2).

  It vanishes once p_i = 1 but matters during emergence, so it is kept (``bias_term``). Unlike the
  variance term (a Gram matrix, so >= 0) it is unbounded below as omega_hi^2 -> 1/2 where
  (1 - p_i) mu_hi omega_hi < 0; the ODE stops with a message if it runs into that edge.
* **Finite L, linear attention (exact).** Isserlis' theorem on (1/L) sum_l y_l x_l^T W_h x_q gives
  the same R_inf plus (1/L) sum mu mu' C^lin with C^lin_i = (kappa_i + sigma^2) sum_j d_j c_j
  + kappa_i c_i (the first-order expansion of the softmax C without its constant), and no bias.
* **Gradient flow in spectral coordinates.** Training descends the *matrix entries* of W and U.
  At a decomposable point the gradient is decomposable (block-orthogonal symmetry) and
  <grad_W R, P_i> = dR/d omega_hi with ||P_i||_F^2 = d_i, so
  d omega_hi / dt = -(1/d_i) dR/d omega_hi and d mu_hi / dt = -dR/d mu_hi, in the same time
  units t = lr x steps as train.nc.
* **Warm-up law.** On R_inf, with r_i = (2 kappa_i / I)(1 - p_i): d omega = (r/d) mu,
  d mu = r omega. So d_i omega^2 - mu^2 is conserved, a = (sqrt(d_i) omega + mu)/2 grows and
  b = (sqrt(d_i) omega - mu)/2 decays by the same factor for every head,
  p_i = sum_h (a^2 - b^2)/sqrt(d_i), and once b has decayed p_i is logistic with rate
  lambda_i = 4 kappa_i / (I sqrt(d_i)). The warm-up therefore lasts about (2/lambda_i) ln(1/s) = (I
  sqrt(d_i) / (2 kappa_i)) ln(1/s) for an init of scale s (an earlier form of the law lacked the
  1/d_i of the matrix gradient flow).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.integrate import solve_ivp

from .config import complete_run
from .spectral_settings import SurrogateCheckSettings
from .tasks import TaskSpec

if TYPE_CHECKING:
    import xarray as xr

THEORY_MODELS = ("reduced", "linear")


@dataclass(frozen=True)
class SpectralProblem:
    """What the closed-form risk depends on: block sizes d_i, signals kappa_i, sigma^2, L, the
    model."""

    task_dims: tuple[int, ...]
    signal: tuple[float, ...]
    noise_var: float
    context_length: float  # math.inf for the infinite-L risk
    model: str = "reduced"  # reduced: softmax surrogate; linear: exact linear-attention risk
    bias_term: bool = True
    query_var: float | None = (
        None  # the query target's noise variance: noise_var, or 0 for a noiseless query
    )

    def __post_init__(self) -> None:
        if self.model not in THEORY_MODELS:
            raise ValueError(f"theory model must be one of {THEORY_MODELS}, got {self.model!r}")
        if self.query_var is None:
            object.__setattr__(self, "query_var", self.noise_var)

    @classmethod
    def from_params(cls, params: Mapping[str, Any], **overrides: Any) -> SpectralProblem:
        """From resolved run parameters; the ``full`` model is described by its reduced form."""
        params = complete_run(params)
        spec = TaskSpec.from_params(params)
        model = "linear" if str(params["model"]) == "linear" else "reduced"
        values = dict(
            task_dims=spec.task_dims,
            signal=spec.signal,
            noise_var=spec.noise_std**2,
            context_length=float(spec.context_length),
            model=model,
            query_var=spec.risk_floor,
        )
        values.update(overrides)
        return cls(**values)

    @property
    def dims(self) -> np.ndarray:
        return np.asarray(self.task_dims, dtype=float)

    @property
    def kappa(self) -> np.ndarray:
        return np.asarray(self.signal, dtype=float)

    @property
    def num_tasks(self) -> int:
        return len(self.task_dims)


def task_signal(omega: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """p_i = sum_h mu_hi omega_hi for arrays (..., H, I) -> (..., I)."""
    return np.sum(np.asarray(mu) * np.asarray(omega), axis=-2)


def infinite_length_risk(problem: SpectralProblem, omega: np.ndarray, mu: np.ndarray) -> float:
    """R_inf = (1/I) sum_i [kappa_i (1 - p_i)^2 + sigma^2]."""
    p = task_signal(omega, mu)
    return float(np.mean(problem.kappa * (1 - p) ** 2 + problem.query_var))


@dataclass
class _Terms:
    """Intermediate arrays shared by the risk and its gradient (H heads, I tasks)."""

    p: np.ndarray  # (I,)
    c: np.ndarray  # (H, H, I) omega_hj omega_gj
    inv: np.ndarray  # (H, H, I) 1 / (1 - 2 c)
    gram: np.ndarray  # (H, H) prod_j (1 - 2c_j)^(-d_j/2)  (softmax) or unused (linear)
    cov: np.ndarray  # (H, H, I) C_i(h, g)
    bias_weight: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (H, I) B_hi


def _terms(problem: SpectralProblem, omega: np.ndarray, mu: np.ndarray) -> _Terms | None:
    """None outside the surrogate's domain (some omega_hj^2 >= 1/2, where its moments diverge)."""
    d, kappa, s2 = problem.dims, problem.kappa, problem.noise_var
    p = task_signal(omega, mu)
    c = omega[:, None, :] * omega[None, :, :]
    if problem.model == "linear":
        cov = (kappa + s2) * np.einsum("hgj,j->hg", c, d)[:, :, None] + kappa * c
        return _Terms(p, c, np.ones_like(c), np.zeros(c.shape[:2]), cov)
    if np.max(omega**2) >= 0.5:
        return None
    inv = 1.0 / (1.0 - 2.0 * c)
    gram = np.exp(0.5 * np.einsum("hgj,j->hg", np.log(inv), d))
    cov = gram[:, :, None] * (kappa + s2 + kappa * c * inv)
    diag_inv = np.einsum("hhi->hi", inv)
    bias_weight = np.diagonal(gram)[:, None] * diag_inv
    return _Terms(p, c, inv, gram, cov, bias_weight)


def finite_length_risk(problem: SpectralProblem, omega: np.ndarray, mu: np.ndarray) -> float:
    """The finite-L risk (softmax: delta-method surrogate, +inf outside its domain; linear:
    exact)."""
    omega, mu = np.asarray(omega, dtype=float), np.asarray(mu, dtype=float)
    base = infinite_length_risk(problem, omega, mu)
    if math.isinf(problem.context_length):
        return base
    terms = _terms(problem, omega, mu)
    if terms is None:
        return math.inf
    variance = np.einsum("hi,gi,hgi->i", mu, mu, terms.cov)
    correction = variance
    if problem.model == "reduced" and problem.bias_term:
        correction = correction + 2 * problem.kappa * (1 - terms.p) * np.sum(
            mu * omega * terms.bias_weight, axis=0
        )
    return base + float(np.mean(correction)) / problem.context_length


def risk_gradient(
    problem: SpectralProblem, omega: np.ndarray, mu: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(dR/d omega, dR/d mu), each (H, I), of ``finite_length_risk``; NaN outside the domain."""
    omega, mu = np.asarray(omega, dtype=float), np.asarray(mu, dtype=float)
    d, kappa, tasks = problem.dims, problem.kappa, problem.num_tasks
    p = task_signal(omega, mu)
    grad_omega = -2 * kappa * (1 - p) * mu
    grad_mu = -2 * kappa * (1 - p) * omega
    length = problem.context_length
    if not math.isinf(length):
        terms = _terms(problem, omega, mu)
        if terms is None:
            return np.full_like(omega, np.nan), np.full_like(mu, np.nan)
        # variance term V = sum_i sum_{h,g} mu_hi mu_gi C_i(h,g); C symmetric in (h,g)
        grad_mu = grad_mu + 2 * np.einsum("hgi,gi->hi", terms.cov, mu) / length
        if problem.model == "linear":
            second = np.einsum("hi,gi,i->hg", mu, mu, kappa + problem.noise_var)
            dv = 2 * d * np.einsum("gk,hg->hk", omega, second) + 2 * kappa * mu * np.sum(
                mu * omega, axis=0
            )
        else:
            pair = np.einsum("hi,gi,hgi->hg", mu, mu, terms.cov)
            dv = 2 * d * np.einsum("gk,hgk,hg->hk", omega, terms.inv, pair)
            dv = dv + 2 * kappa * np.einsum(
                "hk,gk,gk,hg,hgk->hk", mu, mu, omega, terms.gram, terms.inv**2
            )
            if problem.bias_term:
                weight = terms.bias_weight
                own = 1 - 2 * omega**2
                total = np.sum(mu * omega * weight, axis=0)  # S_i
                grad_mu = grad_mu + 2 * kappa * (-omega * total + (1 - p) * omega * weight) / length
                per_head = np.sum(2 * kappa * (1 - p) * mu * omega * weight, axis=1)  # (H,)
                dv = (
                    dv
                    - 2 * kappa * mu * total
                    + 2 * kappa * (1 - p) * mu * weight * (1 + 4 * omega**2 / own)
                    + 2 * d * omega / own * per_head[:, None]
                )
        grad_omega = grad_omega + dv / length
    return grad_omega / tasks, grad_mu / tasks


def spectral_velocity(
    problem: SpectralProblem, omega: np.ndarray, mu: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Matrix gradient flow seen in spectral coordinates: (-(1/d_i) dR/d omega, -dR/d mu)."""
    grad_omega, grad_mu = risk_gradient(problem, omega, mu)
    return -grad_omega / problem.dims, -grad_mu


@dataclass
class ODESolution:
    """The spectral ODE on a given time axis; NaN after a stop (left the surrogate's domain)."""

    times: np.ndarray
    omega: np.ndarray  # (T, H, I)
    mu: np.ndarray  # (T, H, I)
    success: bool
    message: str

    @property
    def signal(self) -> np.ndarray:
        return task_signal(self.omega, self.mu)


def integrate_spectral_ode(
    problem: SpectralProblem,
    omega0: np.ndarray,
    mu0: np.ndarray,
    times: np.ndarray,
    rtol: float = 1e-6,
    atol: float = 1e-9,
) -> ODESolution:
    """Integrate the 2 H I scalars of the spectral gradient flow from (omega0, mu0) at times[0]."""
    omega0, mu0 = np.asarray(omega0, dtype=float), np.asarray(mu0, dtype=float)
    shape, size = omega0.shape, omega0.size
    times = np.asarray(times, dtype=float)

    bounded = problem.model == "reduced" and not math.isinf(problem.context_length)

    def margin(state: np.ndarray) -> float:
        """> 0 inside the surrogate's domain (every omega_hj^2 < 1/2)."""
        return 0.5 - 1e-6 - float(np.max(state[:size] ** 2))

    def rhs(_t: float, state: np.ndarray) -> np.ndarray:
        if bounded and margin(state) <= 0:
            return np.zeros_like(
                state
            )  # a trial step outside: frozen there, the event below stops the run
        v_omega, v_mu = spectral_velocity(
            problem, state[:size].reshape(shape), state[size:].reshape(shape)
        )
        return np.concatenate([v_omega.ravel(), v_mu.ravel()])

    def leaves_domain(_t: float, state: np.ndarray) -> float:
        return margin(state)

    leaves_domain.terminal = True
    out = np.full((len(times), 2 * size), np.nan)
    if len(times) == 0:
        return ODESolution(
            times,
            out[:, :size].reshape(0, *shape),
            out[:, size:].reshape(0, *shape),
            True,
            "no times",
        )
    start = np.concatenate([omega0.ravel(), mu0.ravel()])
    out[0] = start
    if bounded and margin(start) <= 0:
        message = "not integrated: omega(0)^2 >= 1/2, outside the surrogate's domain"
        return ODESolution(
            times,
            out[:, :size].reshape(-1, *shape),
            out[:, size:].reshape(-1, *shape),
            False,
            message,
        )
    success, message = True, "integrated over the whole time axis"
    if len(times) > 1 and times[-1] > times[0]:
        solution = solve_ivp(
            rhs,
            (times[0], times[-1]),
            start,
            method="LSODA",
            t_eval=times,
            rtol=rtol,
            atol=atol,
            events=[leaves_domain] if bounded else None,
        )
        out[: solution.y.shape[1]] = solution.y.T
        if solution.status == 1:
            success, message = (
                False,
                f"stopped at t = {solution.t_events[0][0]:.4g}: omega^2 reached 1/2, outside the "
                "surrogate's domain",
            )
        elif solution.status != 0:
            success, message = False, f"solver failed: {solution.message}"
        elif not np.all(np.isfinite(out)):
            success, message = False, "solver returned non-finite values"
    return ODESolution(
        times,
        out[:, :size].reshape(-1, *shape),
        out[:, size:].reshape(-1, *shape),
        success,
        message,
    )


def iterate_spectral_map(
    problem: SpectralProblem, omega0: np.ndarray, mu0: np.ndarray, lr: float, steps: np.ndarray
) -> ODESolution:
    """Gradient *descent* on the same risk, one step of size ``lr`` at a time, recorded at ``steps``
    (ascending, from 0): what training would do without sampling noise. Its gap to the ODE is the
    time-discretisation effect of the run's lr; its gap to training is noise and surrogate error."""
    steps = np.asarray(steps, dtype=np.int64)
    omega, mu = np.asarray(omega0, dtype=float).copy(), np.asarray(mu0, dtype=float).copy()
    out_omega = np.full((len(steps), *omega.shape), np.nan)
    out_mu = np.full((len(steps), *mu.shape), np.nan)
    wanted = {int(k): n for n, k in enumerate(steps)}
    success, message = (
        True,
        f"gradient descent with lr = {lr:g} over {int(steps[-1]) if len(steps) else 0} steps",
    )
    for step in range(int(steps[-1]) + 1 if len(steps) else 0):
        if step in wanted:
            out_omega[wanted[step]], out_mu[wanted[step]] = omega, mu
        if step == steps[-1]:
            break
        v_omega, v_mu = spectral_velocity(problem, omega, mu)
        if not (np.all(np.isfinite(v_omega)) and np.all(np.isfinite(v_mu))):
            success, message = False, f"stopped at step {step}: outside the surrogate's domain"
            break
        omega, mu = omega + lr * v_omega, mu + lr * v_mu
    return ODESolution(lr * steps.astype(float), out_omega, out_mu, success, message)


def growth_amplitude(task_dims: np.ndarray, omega: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """a_hi = (sqrt(d_i) omega_hi + mu_hi) / 2: the mode that grows during warm-up; ratios between
    heads are preserved by the infinite-L flow."""
    return 0.5 * (np.sqrt(np.asarray(task_dims, dtype=float)) * np.asarray(omega) + np.asarray(mu))


def warmup_rate(problem: SpectralProblem, lr: float = 0.0) -> np.ndarray:
    """lambda_i = 4 kappa_i / (I sqrt(d_i)): the logistic rate of p_i once the decaying mode is
    gone.

    With ``lr`` > 0, the early rate of gradient descent with that step instead: one step multiplies
    a_hi by (1 + lr lambda_i / 2), so p_i grows at (2 / lr) ln(1 + lr lambda_i / 2) per unit of
    t = lr x steps (the O(lr) discretisation correction; lr -> 0 gives lambda_i).
    """
    rate = 4 * problem.kappa / (problem.num_tasks * np.sqrt(problem.dims))
    if lr > 0:
        return 2.0 / lr * np.log1p(lr * rate / 2)
    return rate


def sgd_noise_amplitude(problem: SpectralProblem, lr: float, batch_size: int) -> np.ndarray:
    """Per task, the size that sampling noise alone gives the growing mode a_hi of every head.

    Near W = U = 0 the batch gradient of U_h,ii is -(2 / (I B)) sum_b y_q,i ybar_i (attention is
    uniform), of mean 0 and standard deviation
    (2 / (I sqrt(B))) sqrt((2 kappa^2 / d + (kappa + s2)^2) / L); the gradient in W is proportional
    to U, so negligible (with a noiseless query, (kappa + s2)^2 becomes kappa (kappa + s2)). Each
    step kicks a = (sqrt(d) omega + mu)/2 by half of lr times that, while a grows by g = 1 + lr
    lambda / 2 per step; the kicks add up to an initial amplitude of standard deviation kick /
    sqrt(g^2 - 1). An init below it is forgotten. The kick is the same for every head (at W = 0 all
    heads average the same ybar): it shifts the warm-up length (E sum_h (a_h + c)^2 = sum_h a_h^2 +
    H E c^2) but not which head leads. Where the noise dominates, c is one Gaussian draw per task
    and run, so the warm-up end scatters between runs by about +-1/lambda (ln of a chi-square
    variable) around the law."""
    kappa, s2, d = problem.kappa, problem.noise_var, problem.dims
    # E y_q^2 = kappa + the query's noise (0 for a noiseless query), E ybar^2 L = kappa + sigma^2
    per_sample = np.sqrt(
        (2 * kappa**2 / d + (kappa + problem.query_var) * (kappa + s2)) / problem.context_length
    )
    kick = 0.5 * lr * 2 / (problem.num_tasks * math.sqrt(batch_size)) * per_sample
    growth = 1 + lr * warmup_rate(problem) / 2
    return kick / np.sqrt(growth**2 - 1)


def effective_initial_signal(
    problem: SpectralProblem,
    omega0: np.ndarray,
    mu0: np.ndarray,
    noise_amplitude: np.ndarray | float = 0.0,
) -> np.ndarray:
    """p~_i(0) = (sum_h a_hi(0)^2 + H noise_i^2) / sqrt(d_i): where the logistic, extrapolated back
    to t = 0, starts (``noise_amplitude`` from ``sgd_noise_amplitude``, 0 for gradient flow)."""
    heads = np.asarray(omega0).shape[0]
    power = (
        np.sum(growth_amplitude(problem.dims, omega0, mu0) ** 2, axis=0)
        + heads * np.asarray(noise_amplitude) ** 2
    )
    return power / np.sqrt(problem.dims)


def logistic_signal(
    problem: SpectralProblem, omega0: np.ndarray, mu0: np.ndarray, times: np.ndarray
) -> np.ndarray:
    """The warm-up law's p_i(t) = 1 / (1 + (1/p~_i(0) - 1) e^{-lambda_i t}), (T, I)."""
    p0 = effective_initial_signal(problem, omega0, mu0)
    rate = warmup_rate(problem)
    return 1.0 / (1.0 + (1.0 / p0 - 1.0) * np.exp(-rate * np.asarray(times, dtype=float)[:, None]))


def warmup_law_time(
    problem: SpectralProblem,
    omega0: np.ndarray,
    mu0: np.ndarray,
    fraction: float = 0.1,
    lr: float = 0.0,
    noise_amplitude: np.ndarray | float = 0.0,
) -> np.ndarray:
    """Time at which the logistic law reaches p_i = ``fraction`` (its warm-up end); 0 if already
    there. ``lr`` > 0 uses gradient descent's early growth rate (see ``warmup_rate``);
    ``noise_amplitude`` adds sampling noise's contribution to the initial amplitude (see
    ``sgd_noise_amplitude``)."""
    p0 = effective_initial_signal(problem, omega0, mu0, noise_amplitude)
    rate = warmup_rate(problem, lr)
    with np.errstate(divide="ignore"):
        t = np.log(fraction / (1 - fraction) * (1 - p0) / p0) / rate
    return np.where(p0 >= fraction, 0.0, t)


# --------------------------------------------------------------------------------------------------
# Monte-Carlo check of the finite-L risk (where the surrogate holds, where it fails)


CHECK_PATTERNS = ("allocated", "shared")


def check_point(
    pattern: str, omega_scale: float, signal_target: float, heads: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """(omega, mu), each (heads, heads): one grid point of the surrogate check (tasks = heads)."""
    if pattern == "allocated":
        omega = np.full((heads, heads), omega_scale / 4) + np.eye(heads) * (
            omega_scale - omega_scale / 4
        )
    elif pattern == "shared":
        omega = np.full((heads, heads), float(omega_scale))
    else:
        raise ValueError(f"pattern must be one of {CHECK_PATTERNS}, got {pattern!r}")
    alpha = signal_target / np.sum(omega**2, axis=0)
    return omega, omega * alpha


def monte_carlo_excess(
    spec: TaskSpec,
    points: list[tuple[np.ndarray, np.ndarray]],
    prompts: int,
    seed: int,
    chunk: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """R_L - R_inf for each (omega, mu) in ``points``, with its standard error, by Monte Carlo.

    Uses the real sampler and model (data.PromptSampler, model.ReducedAttention with
    decomposable_weights) on common prompts. Per prompt it averages, over outputs,

        (y_hat - f)^2 - (y_inf - f)^2 - 2 (y_inf - f) delta

    with f = coef x_q the noiseless query target (the query noise integrates out exactly),
    y_inf = sum_h U_h coef W_h x_q the infinite-L prediction, and delta = sum_h U_h (1/L) sum_l
    (y_l - coef W_h x_q) w_hl, w_hl = exp(s_hl - |W_h x_q|^2 / 2), the first-order (delta-method)
    fluctuation. E[(y_inf - f) delta] = 0 given the query, so the mean is exactly R_L - R_inf;
    subtracting that term is a control variate that removes most of the variance away from p = 1.
    """
    import torch

    from .data import PromptSampler  # torch only here
    from .model import ReducedAttention, decomposable_weights, kernel_scores

    sampler = PromptSampler(
        spec, dtype=torch.float32
    )  # float32 suffices: the differences are ~1e-3, not ~1e-7
    generator = torch.Generator().manual_seed(int(seed))
    heads = points[0][0].shape[0]
    models = []
    for omega, mu in points:
        weight, value = decomposable_weights(spec, omega, mu)
        model = ReducedAttention(heads, spec.dim, spec.num_tasks, "softmax")
        with torch.no_grad():
            model.W.copy_(torch.from_numpy(weight))
            model.U.copy_(torch.from_numpy(value))
        models.append(model)
    per_prompt: list[list[torch.Tensor]] = [[] for _ in points]
    with torch.no_grad():
        for start in range(0, prompts, chunk):
            batch = sampler.sample(min(chunk, prompts - start), generator)
            target = torch.einsum("bid,bd->bi", batch.coef, batch.x_query)
            for k, model in enumerate(models):
                pred = model(batch.x, batch.y, batch.x_query)
                tilt = torch.einsum("hij,bj->bhi", model.W, batch.x_query)  # v_h = W_h x_q
                tilted_mean = torch.einsum("bid,bhd->bhi", batch.coef, tilt)  # m_h = coef v_h
                weights = torch.exp(
                    kernel_scores(batch.x, batch.x_query, model.W)
                    - 0.5 * tilt.square().sum(-1, keepdim=True)
                )
                weighted_y = torch.einsum("bhl,bli->bhi", weights, batch.y)
                fluctuation = (
                    weighted_y - tilted_mean * weights.sum(-1, keepdim=True)
                ) / batch.x.shape[1]
                delta = torch.einsum("hij,bhj->bi", model.U, fluctuation)
                limit = torch.einsum("hij,bhj->bi", model.U, tilted_mean)
                value = (
                    (pred - target).square()
                    - (limit - target).square()
                    - 2 * (limit - target) * delta
                )
                per_prompt[k].append(value.mean(dim=1))
    values = [torch.cat(v).double() for v in per_prompt]
    mean = np.array([float(v.mean()) for v in values])
    se = np.array([float(v.std()) / math.sqrt(len(v)) for v in values])
    return mean, se


def surrogate_check(settings: SurrogateCheckSettings) -> xr.Dataset:
    """Surrogate versus Monte Carlo on the grid (pattern, task_dim, context_length, omega, signal).

    Compared quantity: the finite-L excess R_L - R_inf (the R_inf part is exact, so comparing R_L
    itself would hide every failure). ``agrees``: relative gap <= tolerance; ``conclusive``: the
    gap is more than 2 standard errors away from the tolerance, so the verdict is not noise.
    """
    import xarray as xr

    from .io import provenance_attrs

    shape = (
        len(settings.patterns),
        len(settings.task_dims),
        len(settings.context_lengths),
        len(settings.omegas),
        len(settings.signal_targets),
    )
    surrogate, surrogate_nobias, mc, se = (np.full(shape, np.nan) for _ in range(4))
    mu_max, saturation = np.full(shape, np.nan), np.full(shape, np.nan)
    for b, dim in enumerate(settings.task_dims):
        for c, length in enumerate(settings.context_lengths):
            spec = TaskSpec(
                task_dims=(dim, dim),
                noise_std=settings.noise_std,
                signal=(1.0, 1.0),
                context_length=int(length),
            )
            problem = SpectralProblem(
                spec.task_dims, spec.signal, settings.noise_std**2, float(length)
            )
            no_bias = SpectralProblem(
                spec.task_dims, spec.signal, settings.noise_std**2, float(length), bias_term=False
            )
            index, points = [], []
            for a, pattern in enumerate(settings.patterns):
                for d_, scale in enumerate(settings.omegas):
                    for e, target in enumerate(settings.signal_targets):
                        omega, mu = check_point(pattern, scale, target)
                        base = infinite_length_risk(problem, omega, mu)
                        surrogate[a, b, c, d_, e] = finite_length_risk(problem, omega, mu) - base
                        surrogate_nobias[a, b, c, d_, e] = (
                            finite_length_risk(no_bias, omega, mu) - base
                        )
                        mu_max[a, b, c, d_, e] = np.max(np.abs(mu))
                        saturation[a, b, c, d_, e] = (
                            np.max(np.exp(np.sum(omega**2, axis=1) * dim)) / length
                        )
                        index.append((a, b, c, d_, e))
                        points.append((omega, mu))
            mean, err = monte_carlo_excess(
                spec, points, settings.prompts, settings.seed + 1000 * b + c
            )
            for k, where in enumerate(index):
                mc[where], se[where] = mean[k], err[k]
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = surrogate / mc - 1
        gap_nobias = surrogate_nobias / mc - 1
        distance = np.abs(np.abs(surrogate - mc) - settings.tolerance * np.abs(mc))
    agrees = np.abs(gap) <= settings.tolerance
    conclusive = distance > 2 * se
    dims = ("pattern", "task_dim", "context_length", "omega", "signal_target")
    unitless = {"units": "1"}
    ds = xr.Dataset(
        data_vars={
            "surrogate_excess": (
                dims,
                surrogate,
                {
                    "long_name": "finite-L excess R_L - R_inf of the surrogate",
                    "units": "squared output units",
                },
            ),
            "surrogate_excess_nobias": (
                dims,
                surrogate_nobias,
                {
                    "long_name": "the same without the ratio-bias term (the form of earlier notes)",
                    "units": "squared output units",
                },
            ),
            "mc_excess": (
                dims,
                mc,
                {
                    "long_name": "Monte-Carlo R_L - R_inf (real sampler and model)",
                    "units": "squared output units",
                },
            ),
            "mc_excess_se": (
                dims,
                se,
                {"long_name": "standard error of mc_excess", "units": "squared output units"},
            ),
            "relative_gap": (dims, gap, {"long_name": "surrogate / Monte Carlo - 1", **unitless}),
            "relative_gap_nobias": (
                dims,
                gap_nobias,
                {"long_name": "surrogate without bias term / Monte Carlo - 1", **unitless},
            ),
            "agrees": (dims, agrees, {"long_name": f"|relative_gap| <= {settings.tolerance:g}"}),
            "conclusive": (
                dims,
                conclusive,
                {
                    "long_name": "the verdict of `agrees` is more than 2 standard errors from the "
                    "tolerance"
                },
            ),
            "mu_max": (dims, mu_max, {"long_name": "largest |mu_hi| at the point", **unitless}),
            "saturation_index": (
                dims,
                saturation,
                {"long_name": "max_h exp(sum_i d_i omega_hi^2) / L", **unitless},
            ),
        },
        coords={
            "pattern": list(settings.patterns),
            "task_dim": list(settings.task_dims),
            "context_length": list(settings.context_lengths),
            "omega": list(settings.omegas),
            "signal_target": list(settings.signal_targets),
        },
    )
    ds.attrs.update(provenance_attrs(settings.as_dict()))
    ds.attrs["summary"] = _check_summary(ds)
    return ds


def _check_summary(ds: xr.Dataset) -> str:
    """One clause per (task_dim, context_length): the omegas where every pattern and signal agrees,
    and those where some point fails beyond its Monte-Carlo error."""
    clauses = []
    for dim in ds["task_dim"].values:
        for length in ds["context_length"].values:
            sub = ds.sel(task_dim=dim, context_length=length)
            agree = sub["agrees"].all(dim=("pattern", "signal_target")).values
            fail = (~sub["agrees"] & sub["conclusive"]).any(dim=("pattern", "signal_target")).values
            omegas = [float(w) for w in ds["omega"].values]
            good = [w for w, flag in zip(omegas, agree) if flag]
            bad = [w for w, flag in zip(omegas, fail) if flag]
            clauses.append(
                f"d={int(dim)} L={int(length)}: agrees at omega {good}, fails at omega {bad}"
            )
    return "; ".join(clauses)
