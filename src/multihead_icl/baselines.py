"""Predictors that attention is measured against (docs/science.md §6): Bayes, OLS, one-step and
debiased GD.

Each comes twice: as a predictor acting on prompts (so it can be scored like a model, and so the
tests can score it) and as its excess risk per task in closed form or exact Monte Carlo, which is
what the pipeline reports. All of them know the task blocks except ``ols_full``. Closed forms (ours,
for x ~ N(0, I), g_i ~ N(0, kappa_i/d_i I), x_q independent, so excess = E|g_hat_i - g_i|^2):

* **Bayes** = ridge with lambda_i = sigma^2 d_i / kappa_i (the posterior mean); its excess is the
  posterior variance sigma^2 E tr((X_i^T X_i + lambda_i I)^-1), a function of the eigenvalues of
  a Wishart(d_i, L) matrix, drawn by the Bartlett decomposition (no L-sized arrays).
* **OLS**: sigma^2 p / (L - p - 1) (the inverse-Wishart mean), p = d_i per block, p = d on all
  covariates; infinite for L <= p + 1.
* **One-step GD** g_hat = (eta/L) sum_l y_l x_l (= linear attention with W = eta P_i): the terms are
  iid with mean g and trace-covariance (d_i + 1)|g|^2 + sigma^2 d_i, so
  excess(eta) = (1 - eta)^2 kappa + eta^2 V, V = ((d_i + 1) kappa_i + sigma^2 d_i) / L, best at
  eta = kappa / (kappa + V) with excess kappa V / (kappa + V).
* **Debiased GD** centres the context covariates (what a +- pair of softmax heads linearises to).
  With C the centring projection, X^T C y is X'^T y' for L - 1 fresh iid pairs, so it is one-step
  GD on n = L - 1 pairs with effective step eta (L - 1) / L.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .data import Prompts, TaskSpec

BASELINES = ("bayes", "ols_block", "ols_full", "linear_attention", "debiased_gd")


# --------------------------------------------------------------------------------------------
# Excess risk per task (closed form, or exact Monte Carlo for Bayes)


@dataclass(frozen=True)
class Excess:
    """Excess risk of each task (I,) and its Monte-Carlo standard error (zeros for closed forms)."""

    per_task: np.ndarray
    se: np.ndarray

    @property
    def mean(self) -> float:
        """The risk is the average over tasks."""
        return float(np.mean(self.per_task))

    @property
    def mean_se(self) -> float:
        return float(np.sqrt(np.sum(self.se**2)) / len(self.se))


def wishart_eigenvalues(dim: int, dof: int, samples: int, rng: np.random.Generator) -> np.ndarray:
    """Eigenvalues (samples, dim) of X^T X for X an (dof x dim) standard Gaussian matrix.
    Bartlett: X^T X = A A^T, A lower triangular, A_kk^2 ~ chi^2(dof - k), A_kl ~ N(0, 1) below."""
    if dof < dim:  # singular Wishart: draw X itself (dof is small here)
        x = rng.standard_normal((samples, dof, dim))
        return np.linalg.eigvalsh(np.einsum("sld,sle->sde", x, x))
    a = np.tril(rng.standard_normal((samples, dim, dim)), k=-1)
    diag = np.sqrt(rng.chisquare(dof - np.arange(dim), size=(samples, dim)))
    a[:, np.arange(dim), np.arange(dim)] = diag
    return np.linalg.eigvalsh(a @ np.swapaxes(a, 1, 2))


def bayes_excess(spec: TaskSpec, samples: int, seed: int = 0) -> Excess:
    """Posterior variance E sum_k sigma^2 kappa / (kappa s_k + sigma^2 d) over Wishart eigenvalues
    s_k (written so that sigma = 0 stays finite: a direction with s_k = 0 keeps its prior variance).
    """
    rng = np.random.default_rng(seed)
    noise = spec.noise_std**2
    means, ses = [], []
    for dim, kappa in zip(spec.task_dims, spec.signal):
        s = wishart_eigenvalues(dim, spec.context_length, samples, rng)
        denominator = kappa * s + noise * dim
        with np.errstate(divide="ignore", invalid="ignore"):
            per_direction = np.where(denominator > 0, noise * kappa / denominator, kappa / dim)
        per_sample = per_direction.sum(axis=1)
        means.append(per_sample.mean())
        ses.append(per_sample.std(ddof=1) / math.sqrt(samples))
    return Excess(np.array(means), np.array(ses))


def ols_excess(spec: TaskSpec, on_all_covariates: bool = False) -> Excess:
    """sigma^2 p / (L - p - 1), p = d_i (per block) or d (all covariates); inf when L <= p + 1."""
    dims = np.full(spec.num_tasks, spec.dim) if on_all_covariates else np.asarray(spec.task_dims)
    spare = spec.context_length - dims - 1
    with np.errstate(divide="ignore"):
        per_task = np.where(spare > 0, spec.noise_std**2 * dims / np.maximum(spare, 1), np.inf)
    return Excess(per_task.astype(float), np.zeros(spec.num_tasks))


def _gd_pairs_and_variance(spec: TaskSpec, centred: bool) -> tuple[int, np.ndarray, np.ndarray]:
    """n (iid pairs the estimator averages), kappa_i, and V_i = ((d_i+1) kappa_i + sigma^2 d_i) /
    n."""
    pairs = spec.context_length - 1 if centred else spec.context_length
    dims, kappa = np.asarray(spec.task_dims, dtype=float), np.asarray(spec.signal, dtype=float)
    variance = (
        ((dims + 1) * kappa + spec.noise_std**2 * dims) / pairs
        if pairs > 0
        else np.full_like(kappa, np.inf)
    )
    return pairs, kappa, variance


def gd_best_step(spec: TaskSpec, centred: bool = False) -> np.ndarray:
    """The step eta_i minimising each task's excess (the scale of the (1/L) sum, as in linear
    attention)."""
    pairs, kappa, variance = _gd_pairs_and_variance(spec, centred)
    if pairs == 0:
        return np.zeros_like(kappa)
    effective = kappa / (kappa + variance)
    return effective * spec.context_length / pairs


def gd_excess(
    spec: TaskSpec, step: np.ndarray | float | None = None, centred: bool = False
) -> Excess:
    """(1 - eta')^2 kappa + eta'^2 V with eta' = eta n / L; the best step when ``step`` is None."""
    pairs, kappa, variance = _gd_pairs_and_variance(spec, centred)
    eta = (
        gd_best_step(spec, centred)
        if step is None
        else np.broadcast_to(np.asarray(step, dtype=float), kappa.shape)
    )
    if pairs == 0:
        return Excess(kappa.copy(), np.zeros_like(kappa))
    effective = eta * pairs / spec.context_length
    return Excess((1 - effective) ** 2 * kappa + effective**2 * variance, np.zeros_like(kappa))


def baseline_excess(spec: TaskSpec, samples: int, seed: int = 0) -> dict[str, Excess]:
    """Every baseline of docs/science.md §6 for one task suite (linear target), keyed as in
    ``BASELINES``."""
    if spec.target != "linear":
        raise ValueError(f"the baselines' closed forms assume a linear target, got {spec.target!r}")
    return {
        "bayes": bayes_excess(spec, samples, seed),
        "ols_block": ols_excess(spec),
        "ols_full": ols_excess(spec, on_all_covariates=True),
        "linear_attention": gd_excess(spec),
        "debiased_gd": gd_excess(spec, centred=True),
    }


# --------------------------------------------------------------------------------------------
# The predictors themselves (observed basis in, observed basis out)


def _latent(
    prompts: Prompts, spec: TaskSpec
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """x, y, x_query in the latent (task) basis, float64, and Psi (to map predictions back)."""
    phi, psi = (torch.as_tensor(m, dtype=torch.float64) for m in spec.bases())
    x = prompts.x.to(torch.float64) @ phi
    y = prompts.y.to(torch.float64) @ psi
    return x, y, prompts.x_query.to(torch.float64) @ phi, psi


def _per_block(prompts: Prompts, spec: TaskSpec, coefficients) -> torch.Tensor:
    """y_hat (B, I): task i predicts <g_hat_i, x_q,S_i> with g_hat_i = coefficients(X_i, y_i, i)."""
    x, y, xq, psi = _latent(prompts, spec)
    start, out = 0, []
    for i, dim in enumerate(spec.task_dims):
        block = slice(start, start + dim)
        g_hat = coefficients(x[:, :, block], y[:, :, i], i)
        out.append(torch.einsum("bd,bd->b", g_hat, xq[:, block]))
        start += dim
    return (torch.stack(out, dim=1) @ psi.T).to(prompts.y_query.dtype)


def _ridge(x: torch.Tensor, y: torch.Tensor, ridge: float) -> torch.Tensor:
    gram = x.transpose(1, 2) @ x + ridge * torch.eye(x.shape[-1], dtype=x.dtype)
    return torch.linalg.solve(gram, torch.einsum("bld,bl->bd", x, y))


def bayes_ridge(spec: TaskSpec) -> np.ndarray:
    """lambda_i = sigma^2 d_i / kappa_i: the ridge whose estimate is the posterior mean."""
    return (
        spec.noise_std**2
        * np.asarray(spec.task_dims, dtype=float)
        / np.asarray(spec.signal, dtype=float)
    )


def predict_ridge(prompts: Prompts, spec: TaskSpec, ridge: np.ndarray | float) -> torch.Tensor:
    """Ridge regression of y_i on its own block with penalty ridge_i."""
    ridge = np.broadcast_to(np.asarray(ridge, dtype=float), (spec.num_tasks,))
    return _per_block(prompts, spec, lambda x, y, i: _ridge(x, y, float(ridge[i])))


def predict_bayes(prompts: Prompts, spec: TaskSpec) -> torch.Tensor:
    """Posterior mean per block: ridge with lambda_i = sigma^2 d_i / kappa_i."""
    return predict_ridge(prompts, spec, bayes_ridge(spec))


def predict_ols_block(prompts: Prompts, spec: TaskSpec) -> torch.Tensor:
    """Least squares of y_i on its own block."""
    return _per_block(prompts, spec, lambda x, y, i: _ridge(x, y, 0.0))


def predict_ols_full(prompts: Prompts, spec: TaskSpec) -> torch.Tensor:
    """Least squares of every output on all d covariates (not knowing the blocks)."""
    x, y, xq, psi = _latent(prompts, spec)
    gram = x.transpose(1, 2) @ x
    coef = torch.linalg.solve(gram, x.transpose(1, 2) @ y)  # (B, d, I)
    return (torch.einsum("bd,bdi->bi", xq, coef) @ psi.T).to(prompts.y_query.dtype)


def predict_gd(
    prompts: Prompts, spec: TaskSpec, step: np.ndarray | float | None = None, centred: bool = False
) -> torch.Tensor:
    """One-step GD from zero per block, g_hat_i = (eta_i / L) sum_l y_li (x_l,S_i - [centred] mean_l
    x_l,S_i); the best step by default."""
    eta = (
        gd_best_step(spec, centred)
        if step is None
        else np.broadcast_to(np.asarray(step, dtype=float), (spec.num_tasks,))
    )

    def coefficients(x: torch.Tensor, y: torch.Tensor, i: int) -> torch.Tensor:
        if centred:
            x = x - x.mean(dim=1, keepdim=True)
        return float(eta[i]) * torch.einsum("bld,bl->bd", x, y) / x.shape[1]

    return _per_block(prompts, spec, coefficients)
