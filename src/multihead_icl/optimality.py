"""The best multi-head attention in its class: a search over the population risk (docs/science.md
§6, C5, C6).

The population risk is minimised on a fixed Monte-Carlo sample of covariates (common random
numbers: every candidate sees the same prompts) by L-BFGS with torch gradients, from many starts,
and every reported number is re-measured on a fresh, independent sample. Three facts keep this
cheap and precise enough to run inside the pipeline (derivations ours):

* **Rao-Blackwellisation.** The reduced model's attention depends on the covariates only, and its
  prediction is linear in y = <g, x> + eps. So the coefficients g, the context noise and the query
  noise integrate out in closed form: given the covariates, the excess of output i is
  sum_j (kappa_j/d_j) ||sum_h U_h,ij u_h,S_j - delta_ij x_q,S_j||^2 + sigma^2 sum_j U_.ij^T P U_.ij,
  with u_h = sum_l pi_hl x_l and P_hh' = sum_l pi_hl pi_h'l. Only the covariates are sampled.
* **Variable projection.** That excess is quadratic in the output values U. For output i and
  input j != i it has no linear term, so the optimal U is diagonal for every W; its diagonal
  mu_.i solves an H x H linear system. The quasi-Newton search therefore runs over the key-query
  weights only (omega, H*I scalars, or the full W when polishing) with mu minimised exactly, which
  is the minimum over all 2*H*I decomposable scalars (and over the full U).
* **Reduction to one direction per block.** For decomposable W_h = sum_i omega_hi P_i the scores
  depend on block i only through z_li = <x_l,S_i, x_q,S_i> / |x_q,S_i| and r_i = |x_q,S_i|; the
  parts of x_l,S_i orthogonal to x_q,S_i are independent of the attention and integrate out too
  (they add (d_i - 1) P to the quadratic form). The decomposable search works on (z, r) alone.

Everything is in the latent (task) basis; with ``rotate`` the risk of (Phi W Phi^T, Psi U Psi^T)
is the same, so the best in class does not depend on the basis.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
import xarray as xr
from scipy.optimize import minimize
from scipy.stats import norm

from . import io
from .baselines import BASELINES, baseline_excess
from .config import with_defaults
from .data import TaskSpec
from .model import decomposable_weights
from .spectral import to_latent

log = logging.getLogger(__name__)

NORMALISATIONS = ("softmax", "linear")
DTYPE = torch.float64


@dataclass(frozen=True)
class SearchSettings:
    """How hard to search: the config's ``optimality`` section (the schema documents each key and
    holds its default; ``from_mapping`` fills them)."""

    samples: int  # prompts in the fixed optimisation sample
    fresh_samples: int  # prompts in each fresh sample (selection, then report)
    restarts: int  # starting points of the decomposable search (structured first, then random)
    screen_samples: int  # the first prompts of the optimisation sample, used to screen the starts
    screen_iterations: int  # L-BFGS iterations per start while screening
    finalists: int  # best screened starts refined on the whole optimisation sample
    iterations: int  # L-BFGS iterations per finalist
    polish_iterations: int  # L-BFGS iterations in the full W space (0: no polish)
    polish_perturbation: float  # relative size of the symmetry-breaking kick before polishing
    tolerance: float  # a start "reaches the best" when within this relative excess of it
    chunk: int  # prompts per block when evaluating the fresh samples (memory bound)
    seed: int

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None = None) -> SearchSettings:
        filled = with_defaults("optimality", values)
        return cls(**{f.name: filled[f.name] for f in fields(cls)})


def normalisation_of(model: str) -> str:
    """The attention class a trained model belongs to: linear attention for ``linear``, the reduced
    softmax class otherwise (``full`` is compared with the reduced class, the paper's object)."""
    return "linear" if model == "linear" else "softmax"


# --------------------------------------------------------------------------------------------
# Samples


@dataclass
class Covariates:
    """Context covariates x (B, L, d) and queries x_query (B, d), latent basis, float64."""

    x: torch.Tensor
    x_query: torch.Tensor

    def __len__(self) -> int:
        return self.x.shape[0]

    def block_projections(self, spec: TaskSpec) -> tuple[torch.Tensor, torch.Tensor]:
        """(z (B, L, I), r (B, I)): each context block projected on its query direction, and
        |x_q,S_i|."""
        mask = torch.as_tensor(spec.block_mask(), dtype=DTYPE)
        r = torch.sqrt((self.x_query.square() @ mask.T).clamp_min(1e-300))
        z = torch.einsum("bld,bd,id->bli", self.x, self.x_query, mask) / r[:, None, :]
        return z, r


def draw_covariates(spec: TaskSpec, prompts: int, generator: torch.Generator) -> Covariates:
    """x_l, x_q ~ N(0, I_d): the only random inputs left after Rao-Blackwellisation."""
    x = torch.randn(prompts, spec.context_length + 1, spec.dim, generator=generator, dtype=DTYPE)
    return Covariates(x[:, :-1].contiguous(), x[:, -1].contiguous())


def covariate_chunks(spec: TaskSpec, prompts: int, seed: int, chunk: int) -> Iterator[Covariates]:
    """A sample of ``prompts`` drawn chunk by chunk from one seed (never all in memory)."""
    generator = torch.Generator().manual_seed(int(seed))
    for start in range(0, prompts, chunk):
        yield draw_covariates(spec, min(chunk, prompts - start), generator)


# --------------------------------------------------------------------------------------------
# The conditional excess as a quadratic form in the output values


@dataclass
class QuadraticTerms:
    """Per-prompt conditional excess for diagonal U = diag(mu):
    e_b(mu) = (1/I) sum_i [mu_.i^T Q_bi mu_.i - 2 b_bi . mu_.i + c_bi]; Q (B, I, H, H), b (B, I,
    H), c (B, I)."""

    Q: torch.Tensor
    b: torch.Tensor
    c: torch.Tensor

    def excess(self, mu: torch.Tensor) -> torch.Tensor:
        """(B,) conditional excess of every prompt for output values mu (H, I)."""
        quad = torch.einsum("hi,bihg,gi->bi", mu, self.Q, mu)
        lin = torch.einsum("bih,hi->bi", self.b, mu)
        return (quad - 2 * lin + self.c).mean(dim=1)

    def optimal_values(self, allowed: torch.Tensor | None = None) -> torch.Tensor:
        """mu (H, I) minimising the sample-mean excess; ``allowed`` (H, I) bool restricts which head
        may serve which task (entries not allowed are 0). A tiny ridge handles duplicate heads."""
        Q, b = self.Q.mean(dim=0), self.b.mean(dim=0)
        heads, tasks = Q.shape[1], Q.shape[0]
        mu = torch.zeros(heads, tasks, dtype=Q.dtype)
        for i in range(tasks):
            idx = torch.arange(heads) if allowed is None else torch.nonzero(allowed[:, i]).flatten()
            if idx.numel() == 0:
                continue
            q = Q[i][idx][:, idx]
            ridge = 1e-12 * (torch.diagonal(q).sum() / idx.numel() + 1e-300)
            mu[idx, i] = torch.linalg.solve(
                q + ridge * torch.eye(idx.numel(), dtype=Q.dtype), b[i][idx]
            )
        return mu


def _attention(scores: torch.Tensor, normalise: str) -> torch.Tensor:
    """Weights over the context (dim 1) from scores (B, L, H)."""
    if normalise == "softmax":
        return torch.softmax(scores, dim=1)
    if normalise == "linear":
        return scores / scores.shape[1]
    raise ValueError(f"normalise must be one of {NORMALISATIONS}, got {normalise!r}")


def _task_weights(spec: TaskSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """kappa_i / d_i and d_i as float64 tensors."""
    dims = torch.tensor(spec.task_dims, dtype=DTYPE)
    return torch.tensor(spec.signal, dtype=DTYPE) / dims, dims


def decomposable_terms(
    omega: torch.Tensor,
    z: torch.Tensor,
    r: torch.Tensor,
    spec: TaskSpec,
    normalise: str,
    zr: torch.Tensor | None = None,
) -> QuadraticTerms:
    """Quadratic terms for W_h = sum_i omega_hi P_i from the block projections (z, r): the
    orthogonal parts of the context blocks are integrated out (they add (d_i - 1) P). ``zr`` is
    z * r, passed in when it is reused."""
    weight, dims = _task_weights(spec)
    zr = z * r[:, None, :] if zr is None else zr
    pi = _attention(zr @ omega.T, normalise)  # (B, L, H)
    u = torch.bmm(pi.transpose(1, 2), z)  # (B, H, I): sum_l pi_hl z_li
    P = torch.bmm(pi.transpose(1, 2), pi)  # (B, H, H)
    uu = torch.einsum("bhi,bgi->bihg", u, u)
    noise = spec.noise_std**2
    Q = (
        weight[None, :, None, None] * (uu + (dims - 1)[None, :, None, None] * P[:, None])
        + noise * P[:, None]
    )
    b = weight[None, :, None] * (r[:, :, None] * u.transpose(1, 2))
    c = weight[None, :] * r.square()
    return QuadraticTerms(Q, b, c)


def general_terms(
    W: torch.Tensor, covariates: Covariates, spec: TaskSpec, normalise: str
) -> QuadraticTerms:
    """Quadratic terms for any key-query weights W (H, d, d) (diagonal U; the optimal U is
    diagonal)."""
    weight, _ = _task_weights(spec)
    mask = torch.as_tensor(spec.block_mask(), dtype=DTYPE)  # (I, d)
    x, xq = covariates.x, covariates.x_query
    scores = torch.bmm(x, torch.einsum("hij,bj->bih", W, xq))  # (B, L, H)
    pi = _attention(scores, normalise)
    u = torch.bmm(pi.transpose(1, 2), x)  # (B, H, d)
    P = torch.bmm(pi.transpose(1, 2), pi)
    uu = torch.einsum("bhk,bgk,ik->bihg", u, u, mask)
    noise = spec.noise_std**2
    Q = weight[None, :, None, None] * uu + noise * P[:, None]
    b = weight[None, :, None] * torch.einsum("bhk,bk,ik->bih", u, xq, mask)
    c = weight[None, :] * (xq.square() @ mask.T)
    return QuadraticTerms(Q, b, c)


def conditional_excess(
    W: torch.Tensor,
    U: torch.Tensor,
    covariates: Covariates,
    spec: TaskSpec,
    normalise: str = "softmax",
) -> torch.Tensor:
    """(B,) excess E[(1/I)|y_hat - y_q|^2 | covariates] - sigma^2 for any W (H, d, d), U (H, I, I),
    latent basis. The reference form (no shortcut): the search's quadratic terms must agree with
    it."""
    weight, _ = _task_weights(spec)
    mask = torch.as_tensor(spec.block_mask(), dtype=DTYPE)
    x, xq = covariates.x, covariates.x_query
    pi = _attention(torch.bmm(x, torch.einsum("hij,bj->bih", W, xq)), normalise)
    u = torch.bmm(pi.transpose(1, 2), x)  # (B, H, d)
    P = torch.bmm(pi.transpose(1, 2), pi)  # (B, H, H)
    per_coordinate = weight @ mask  # kappa/d of the block each coordinate belongs to
    # v[b, i, j, k] = sum_h U_h,ij u_h,k restricted to block j, minus the query's block when i == j
    v = torch.einsum("hij,bhk,jk->bijk", U, u, mask)
    v = v - torch.einsum("ij,bk,jk->bijk", torch.eye(spec.num_tasks, dtype=DTYPE), xq, mask)
    signal = torch.einsum("bijk,k->bi", v.square(), per_coordinate)
    noise = spec.noise_std**2 * torch.einsum("hij,bhg,gij->bi", U, P, U)
    return (signal + noise).mean(dim=1)


# --------------------------------------------------------------------------------------------
# The search


@dataclass
class Fit:
    """The best point found in one attention class (latent basis)."""

    heads: int
    W: np.ndarray  # (H, d, d)
    mu: np.ndarray  # (H, I): U_h = diag(mu_h)
    omega: np.ndarray  # (H, I): block traces tr(P_i W_h P_i) / d_i
    sample_excess: float  # on the optimisation sample (biased low; never reported)
    polished: bool = (
        False  # True when the full-W polish beat the decomposable optimum on validation
    )
    starts: int = 0
    starts_at_best: int = 0  # how many starts were within `tolerance` of the best after screening
    seconds: float = 0.0
    allowed: np.ndarray | None = None  # (H, I) allocation mask, None for the unrestricted class

    def decomposable(self) -> bool:
        return not self.polished


def structured_starts(heads: int, spec: TaskSpec) -> list[np.ndarray]:
    """omega starts for the shapes the theory and our runs point at (docs/science.md §4, §6),
    distinct:
    one head per task, the sign-flipped superposition our trained runs end in, paired +- heads
    (debiasing), and heads that all serve every task (at different scales: identical heads would
    stay identical under any gradient method)."""
    tasks = spec.num_tasks
    scale = 0.5 / np.sqrt(np.asarray(spec.task_dims, dtype=float))
    own = np.array(
        [
            [1.0 if i % heads == h or h % tasks == i else 0.0 for i in range(tasks)]
            for h in range(heads)
        ]
    )
    allocated = own * scale
    superposed = np.where(own > 0, 1.0, -0.8) * scale
    paired = (
        np.array(
            [
                [
                    (1.0 if h % 2 == 0 else -1.0) if (h // 2) % tasks == i else 0.0
                    for i in range(tasks)
                ]
                for h in range(heads)
            ]
        )
        * scale
    )
    shared = (1.0 + 0.25 * np.arange(heads))[:, None] * scale
    starts: list[np.ndarray] = []
    for start in (allocated, superposed, paired, shared):
        if not any(np.allclose(start, other) for other in starts):
            starts.append(start)
    return starts


def _lbfgs(
    objective: Callable[[torch.Tensor], torch.Tensor], start: np.ndarray, iterations: int
) -> tuple[float, np.ndarray]:
    """scipy L-BFGS-B on a torch objective (exact gradients by autograd)."""

    def value_and_grad(flat: np.ndarray) -> tuple[float, np.ndarray]:
        point = torch.tensor(flat, dtype=DTYPE, requires_grad=True)
        value = objective(point)
        (grad,) = torch.autograd.grad(value, point)
        return float(value.detach()), grad.numpy().astype(np.float64)

    if iterations <= 0:
        return value_and_grad(start.ravel())[0], start.ravel().copy()
    result = minimize(
        value_and_grad,
        start.ravel(),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": int(iterations), "ftol": 1e-12, "gtol": 1e-9},
    )
    return float(result.fun), np.asarray(result.x)


def block_traces(W: np.ndarray, spec: TaskSpec) -> np.ndarray:
    """omega_hi = tr(P_i W_h P_i) / d_i, (H, I)."""
    mask = spec.block_mask()
    return np.einsum("hkk,ik->hi", W, mask) / np.asarray(spec.task_dims, dtype=float)


def latent(spec: TaskSpec) -> TaskSpec:
    """The same task suite in its own (latent) basis: the search's coordinates."""
    return dataclasses.replace(spec, rotate=False, basis_seed=0)


def rao_blackwell_spec(spec: TaskSpec, normalise: str, user: str) -> TaskSpec:
    """The latent task suite of a Rao-Blackwellised risk, after checking that it applies: the
    coefficients are integrated out exactly only for a linear target."""
    if spec.target != "linear":
        raise ValueError(
            f"{user} integrates a linear target out exactly; target {spec.target!r} is not "
            "supported"
        )
    if normalise not in NORMALISATIONS:
        raise ValueError(f"normalise must be one of {NORMALISATIONS}, got {normalise!r}")
    return latent(spec)


def decomposable_W(omega: np.ndarray, spec: TaskSpec) -> np.ndarray:
    """W_h = sum_i omega_hi P_i (H, d, d), latent basis."""
    return decomposable_weights(latent(spec), omega, np.zeros_like(omega))[0]


class BestInClass:
    """Searches of one task suite: shares the optimisation, validation and fresh samples between the
    classes it is asked about (H heads, one head, one head per task), so their comparisons are
    paired."""

    def __init__(self, spec: TaskSpec, settings: SearchSettings, normalise: str = "softmax"):
        self.spec = rao_blackwell_spec(spec, normalise, "the best-in-class search")
        self.settings = settings
        self.normalise = normalise
        seeds = np.random.SeedSequence(int(settings.seed)).spawn(3)
        self._seed_opt, self._seed_validation, self._seed_fresh = (
            int(s.generate_state(1)[0]) for s in seeds
        )
        self.sample = draw_covariates(
            self.spec, settings.samples, torch.Generator().manual_seed(self._seed_opt)
        )
        self._z, self._r = self.sample.block_projections(self.spec)
        self._zr = self._z * self._r[:, None, :]  # the scores are zr @ omega^T
        self._fits: dict[tuple, Fit] = {}

    # -- objectives on (a prefix of) the optimisation sample
    def _decomposable_objective(
        self, heads: int, allowed: torch.Tensor | None, prompts: int
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        tasks = self.spec.num_tasks
        z, r, zr = self._z[:prompts], self._r[:prompts], self._zr[:prompts]

        def objective(flat: torch.Tensor) -> torch.Tensor:
            terms = decomposable_terms(flat.view(heads, tasks), z, r, self.spec, self.normalise, zr)
            with (
                torch.no_grad()
            ):  # envelope theorem: d/d omega at mu*(omega) needs no d mu*/d omega
                mu = terms.optimal_values(allowed)
            return terms.excess(mu).mean()

        return objective

    def _general_objective(
        self, heads: int, allowed: torch.Tensor | None
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        d = self.spec.dim

        def objective(flat: torch.Tensor) -> torch.Tensor:
            terms = general_terms(flat.view(heads, d, d), self.sample, self.spec, self.normalise)
            with torch.no_grad():
                mu = terms.optimal_values(allowed)
            return terms.excess(mu).mean()

        return objective

    def _generator(self, heads: int, allocated: bool, purpose: int = 0) -> np.random.Generator:
        """The random starts of one class depend on the seed and the class only (not on which
        other classes were searched before), so adding a configuration changes no other result."""
        return np.random.default_rng(
            np.random.SeedSequence(
                int(self.settings.seed), spawn_key=(heads, int(allocated), purpose)
            )
        )

    def _random_start(self, heads: int, rng: np.random.Generator) -> np.ndarray:
        scale = 0.5 / np.sqrt(np.asarray(self.spec.task_dims, dtype=float))
        return rng.normal(size=(heads, self.spec.num_tasks)) * scale

    def fit(
        self, heads: int, allowed: np.ndarray | None = None, warm_starts: Sequence[np.ndarray] = ()
    ) -> Fit:
        """Best point of the class with ``heads`` heads (and the allocation mask ``allowed``, (H,
        I)).

        Every start (warm, structured, random) gets a few L-BFGS iterations on the first
        ``screen_samples`` prompts; the best ``finalists`` are refined on the whole optimisation
        sample; the winner is polished in the full W space, and the polish is kept only if it is
        lower on an independent validation sample."""
        started = time.monotonic()
        s, tasks = self.settings, self.spec.num_tasks
        rng = self._generator(heads, allowed is not None)
        mask = None if allowed is None else torch.as_tensor(np.asarray(allowed, dtype=bool))
        starts = [np.asarray(w, dtype=float).reshape(heads, tasks) for w in warm_starts]
        starts += structured_starts(heads, self.spec)[: max(s.restarts, 1)]
        while len(starts) < len(warm_starts) + max(s.restarts, 1):
            starts.append(self._random_start(heads, rng))
        screen = self._decomposable_objective(heads, mask, min(s.screen_samples, s.samples))
        screened = [_lbfgs(screen, start, s.screen_iterations) for start in starts]
        screen_values = np.array([v for v, _ in screened])
        best_screen = screen_values.min()
        at_best = int(np.sum(screen_values <= best_screen + s.tolerance * abs(best_screen)))
        order = np.argsort(screen_values)[: max(s.finalists, 1)]
        objective = self._decomposable_objective(heads, mask, s.samples)
        finals = [_lbfgs(objective, screened[k][1], s.iterations) for k in order]
        value, flat = min(finals, key=lambda item: item[0])
        omega = flat.reshape(heads, tasks)
        log.info(
            "H=%d%s: %d starts screened (%.4g..%.4g, %d within %.0e of the best), %d refined: "
            "sample excess %.5g",
            heads,
            " allocated" if allowed is not None else "",
            len(starts),
            screen_values.min(),
            screen_values.max(),
            at_best,
            s.tolerance,
            len(finals),
            value,
        )
        with torch.no_grad():
            terms = decomposable_terms(
                torch.as_tensor(omega), self._z, self._r, self.spec, self.normalise
            )
            mu = terms.optimal_values(mask).numpy()
        fit = Fit(
            heads,
            decomposable_W(omega, self.spec),
            mu,
            omega,
            float(value),
            False,
            len(starts),
            at_best,
            0.0,
            None if allowed is None else np.asarray(allowed, dtype=bool),
        )
        if s.polish_iterations > 0:
            fit = self._polish(fit, mask, rng)
        fit.seconds = time.monotonic() - started
        return fit

    def classes(self, heads: int) -> dict[str, Fit]:
        """The three classes a configuration is compared with, each searched once per suite:
        ``single_head`` (H = 1), ``allocated`` (I heads, head i serves task i only; only for H >= I)
        and ``best_in_class`` (H heads), the last warm-started from the other two (their heads
        padded with small random ones, so that they can separate), so that the nesting of the
        classes holds on the optimisation sample."""
        tasks = self.spec.num_tasks
        single = self._memo(("single", 1), lambda: self.fit(1))
        out = {"single_head": single}
        if heads >= tasks:
            out["allocated"] = self._memo(
                ("allocated", tasks), lambda: self.fit(tasks, allocation_mask(tasks, tasks))
            )
        if heads == 1:
            out["best_in_class"] = single
            return out
        rng = self._generator(heads, False, purpose=1)
        warm = [self._pad(single.omega, heads, rng)]
        if "allocated" in out:
            warm.append(self._pad(out["allocated"].omega, heads, rng))
        out["best_in_class"] = self._memo(
            ("best", heads), lambda: self.fit(heads, warm_starts=warm)
        )
        return out

    def _memo(self, key: tuple, compute: Callable[[], Fit]) -> Fit:
        if key not in self._fits:
            self._fits[key] = compute()
        return self._fits[key]

    def _pad(self, omega: np.ndarray, heads: int, rng: np.random.Generator) -> np.ndarray:
        """omega (h, I) extended to ``heads`` rows by small random heads (nearly uniform
        attention)."""
        extra = heads - omega.shape[0]
        if extra <= 0:
            return omega[:heads]
        return np.vstack([omega, 0.05 * self._random_start(extra, rng)])

    def _polish(self, fit: Fit, mask: torch.Tensor | None, rng: np.random.Generator) -> Fit:
        """L-BFGS over the full W from the decomposable optimum, nudged off the symmetric point (a
        decomposable critical point is also critical in the full space, so without the nudge the
        polish could not leave it even where the full space has a descent direction)."""
        start = fit.W + self.settings.polish_perturbation * np.abs(fit.W).max() * rng.normal(
            size=fit.W.shape
        )
        objective = self._general_objective(fit.heads, mask)
        value, flat = _lbfgs(objective, start, self.settings.polish_iterations)
        W = flat.reshape(fit.W.shape)
        with torch.no_grad():
            mu = (
                general_terms(torch.as_tensor(W), self.sample, self.spec, self.normalise)
                .optimal_values(mask)
                .numpy()
            )
        polished = Fit(
            fit.heads,
            W,
            mu,
            block_traces(W, self.spec),
            value,
            True,
            fit.starts,
            fit.starts_at_best,
            0.0,
            fit.allowed,
        )
        kept, other = self._validation_excess([fit, polished])
        log.info(
            "H=%d polish: sample %.5g -> %.5g; validation %.5g (decomposable) vs %.5g (polished): "
            "keep %s",
            fit.heads,
            fit.sample_excess,
            value,
            kept,
            other,
            "polished" if other < kept else "decomposable",
        )
        return polished if other < kept else fit

    def _validation_excess(self, fits: Sequence[Fit]) -> list[float]:
        """Mean excess of each fit on the validation sample, all by the same (general) estimator."""
        totals = np.zeros(len(fits))
        chunks = covariate_chunks(
            self.spec, self.settings.fresh_samples, self._seed_validation, self.settings.chunk
        )
        with torch.no_grad():
            for part in chunks:
                for k, fit in enumerate(fits):
                    totals[k] += float(
                        conditional_excess(
                            torch.as_tensor(fit.W),
                            _diagonal_U(fit.mu),
                            part,
                            self.spec,
                            self.normalise,
                        ).sum()
                    )
        return list(totals / self.settings.fresh_samples)

    def fresh_excess(
        self, fits: Mapping[str, Fit | tuple[np.ndarray, np.ndarray]]
    ) -> dict[str, np.ndarray]:
        """Per-prompt conditional excess on the fresh sample of each fit, or of any (W, U) given in
        the latent basis (the same prompts for all, so differences and ratios are paired).
        Decomposable fits use the lower-variance block estimator."""
        per_prompt: dict[str, list[np.ndarray]] = {name: [] for name in fits}
        chunks = covariate_chunks(
            self.spec, self.settings.fresh_samples, self._seed_fresh, self.settings.chunk
        )
        with torch.no_grad():
            for part in chunks:
                z, r = part.block_projections(self.spec)
                for name, fit in fits.items():
                    if not isinstance(fit, Fit):
                        W, U = (torch.as_tensor(np.asarray(m), dtype=DTYPE) for m in fit)
                        values = conditional_excess(W, U, part, self.spec, self.normalise)
                    elif fit.decomposable():
                        terms = decomposable_terms(
                            torch.as_tensor(fit.omega), z, r, self.spec, self.normalise
                        )
                        values = terms.excess(torch.as_tensor(fit.mu))
                    else:
                        values = conditional_excess(
                            torch.as_tensor(fit.W),
                            _diagonal_U(fit.mu),
                            part,
                            self.spec,
                            self.normalise,
                        )
                    per_prompt[name].append(values.numpy())
        return {name: np.concatenate(v) for name, v in per_prompt.items()}


def _diagonal_U(mu: np.ndarray) -> torch.Tensor:
    """U_h = diag(mu_h,.) as an (H, I, I) tensor."""
    return torch.diag_embed(torch.as_tensor(mu, dtype=DTYPE))


def allocation_mask(heads: int, tasks: int) -> np.ndarray | None:
    """Head h may serve task h only (heads beyond I serve none); None when H < I (not defined)."""
    if heads < tasks:
        return None
    return np.eye(heads, tasks, dtype=bool)


# --------------------------------------------------------------------------------------------
# One experiment's optimality file: the trained limit against the classes and the baselines

REPORTED = ("trained", "best_in_class", "single_head", "allocated") + BASELINES


@dataclass(frozen=True)
class MeasureSettings:
    """The config's ``optimality`` section beyond the search: baseline sample, interval level."""

    search: SearchSettings
    baseline_samples: int
    confidence: float
    sanity_sigmas: float

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None = None) -> MeasureSettings:
        filled = with_defaults("optimality", values)
        names = [f.name for f in fields(cls) if f.name != "search"]
        return cls(SearchSettings.from_mapping(filled), **{k: filled[k] for k in names})


def final_state(train: xr.Dataset) -> tuple[tuple[float, float], tuple[np.ndarray, np.ndarray]]:
    """From one train.nc: (final eval risk, its SE) - the risk NaN for a diverged run - and the
    final (W, U) taken to the latent basis (observed = Phi latent Phi^T, Psi for U)."""
    risk = float(train["eval_risk"].values[-1])
    if train.attrs.get("status") == "diverged":
        risk = math.nan
    latent = to_latent(
        train["W"].values[-1],
        train["U"].values[-1],
        train["basis_x"].values,
        train["basis_y"].values,
    )
    return (risk, float(train["eval_risk_se"].values[-1])), latent


def trained_limit(finals: Sequence[tuple[float, float]], noise_var: float) -> tuple[float, float]:
    """Mean over seeds of (final eval risk - sigma^2), and its standard error. The runs of one
    configuration share one evaluation set, so its sampling error is common to them and is not
    divided by the number of seeds; the seed-to-seed spread adds in quadrature."""
    usable = [(r, e) for r, e in finals if math.isfinite(r)]
    if not usable:
        return math.nan, math.nan
    excess = np.array([r for r, _ in usable]) - noise_var
    within = float(np.mean([e for _, e in usable]))
    between = float(np.std(excess, ddof=1) / math.sqrt(len(excess))) if len(excess) > 1 else 0.0
    return float(excess.mean()), math.hypot(within, between)


def ratio_interval(
    num: float,
    num_se: float,
    den: float,
    den_se: float,
    covariance: float = 0.0,
    *,
    confidence: float,
) -> tuple[float, float, float]:
    """num / den with a delta-method interval on the log scale (a ratio's interval is skewed and
    must stay positive); ``covariance`` of num and den when they share a sample. NaN unless both >
    0."""
    if not (num > 0 and den > 0 and math.isfinite(num) and math.isfinite(den)):
        return math.nan, math.nan, math.nan
    variance = (num_se / num) ** 2 + (den_se / den) ** 2 - 2 * covariance / (num * den)
    half = norm.ppf(0.5 + confidence / 2) * math.sqrt(max(variance, 0.0))
    ratio = num / den
    return ratio, ratio * math.exp(-half), ratio * math.exp(half)


def sanity_flags(
    excess: Mapping[str, float],
    se: Mapping[str, float],
    paired_gap: Mapping[str, tuple[float, float]],
    sigmas: float = 2.0,
) -> dict[str, bool]:
    """Invariants that must hold up to Monte-Carlo error (True = violated):
    best in class <= trained; Bayes <= every other predictor; the H-head class contains the single
    head and the allocated class (``paired_gap``: name -> (mean of best - name, its paired SE))."""

    def above(a: str, b: str) -> bool:
        if not (math.isfinite(excess[a]) and math.isfinite(excess[b])):
            return False
        return excess[a] > excess[b] + sigmas * math.hypot(se[a], se[b])

    return {
        "best_above_trained": above("best_in_class", "trained"),
        "bayes_not_lowest": any(above("bayes", other) for other in REPORTED if other != "bayes"),
        "class_not_nested": any(gap > sigmas * gap_se for gap, gap_se in paired_gap.values()),
    }


def _mean_se(values: np.ndarray) -> tuple[float, float]:
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))


def paired_ratio(num: np.ndarray, den: np.ndarray, confidence: float) -> tuple[float, float, float]:
    """mean(num) / mean(den) of per-prompt excesses on one fresh sample, with the interval of
    ``ratio_interval`` paired by their covariance (the same prompts)."""
    (a, a_se), (b, b_se) = _mean_se(num), _mean_se(den)
    return ratio_interval(a, a_se, b, b_se, covariance=_paired(num, den)[2], confidence=confidence)


def _paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Mean of a - b, its SE, and the covariance of the two means (same prompts)."""
    diff = a - b
    covariance = float(np.cov(a, b, ddof=1)[0, 1] / len(a))
    return float(diff.mean()), float(diff.std(ddof=1) / math.sqrt(len(a))), covariance


def group_configurations(runs: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """Runs that differ only by their seed form one configuration, labelled by the first run's grid
    point without its seed part (``allocation/H3-s0`` -> ``H3``; ``base`` when only the seed
    varies)."""
    groups: dict[str, list[str]] = {}
    for run_id, params in runs.items():
        key = json.dumps(
            {k: v for k, v in params.items() if k != "seed"}, sort_keys=True, default=str
        )
        groups.setdefault(key, []).append(run_id)
    labels = {}
    for ids in groups.values():
        point, seed = ids[0].split("/", 1)[-1], f"s{runs[ids[0]].get('seed', '')}"
        label = "-".join(part for part in point.split("-") if part != seed) or "base"
        labels[label if label not in labels else f"{label}#{len(labels)}"] = ids
    return labels


def _coordinate_value(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float, str)) or value is None:
        return math.nan if value is None else value
    return json.dumps(value)


def measure_experiment(
    runs: Mapping[str, Mapping[str, Any]],
    finals: Mapping[str, tuple[float, float]],
    settings: Mapping[str, Any] | None = None,
    weights: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    flow_ends: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> xr.Dataset:
    """The optimality file of one experiment (docs/science.md §8): one row per configuration.

    ``runs`` maps run id -> resolved parameters, ``finals`` run id -> (final eval risk, its SE)
    from train.nc: that is the trained limit of the ratios. ``weights`` (run id -> final (W, U) in
    the latent basis, optional) adds a cross-check, the trained models re-measured on the fresh
    sample. ``flow_ends`` (run id -> (omega, mu) of the exact flow at its long horizon, optional)
    adds the gradient-flow end state's excess and its ratio to best in class, on the same fresh
    sample. Classes sharing a task suite are searched once (e.g. across a heads sweep)."""
    from .io import provenance_attrs

    measure = MeasureSettings.from_mapping(settings)
    configurations = group_configurations(runs)
    searches: dict[tuple, BestInClass] = {}
    baselines: dict[tuple, dict] = {}
    rows = []
    for label, ids in configurations.items():
        params = runs[ids[0]]
        spec = TaskSpec.from_params(params)
        if spec.target != "linear":
            raise ValueError(
                f"optimality needs a linear target (configuration {label!r}: target "
                f"{spec.target!r})"
            )
        heads, normalise = (
            int(params["heads"]),
            normalisation_of(str(params["model"])),
        )
        suite_key = (spec.task_dims, spec.noise_std, spec.signal, spec.context_length)
        started = time.monotonic()
        if suite_key + (normalise,) not in searches:  # built once: it draws the optimisation sample
            searches[suite_key + (normalise,)] = BestInClass(spec, measure.search, normalise)
        search = searches[suite_key + (normalise,)]
        fits = search.classes(heads)
        per_prompt = search.fresh_excess(fits)
        if suite_key not in baselines:
            baselines[suite_key] = baseline_excess(
                spec, measure.baseline_samples, measure.search.seed
            )
        excess, se = {}, {}
        excess["trained"], se["trained"] = trained_limit([finals[r] for r in ids], spec.risk_floor)
        for name in ("best_in_class", "single_head", "allocated"):
            excess[name], se[name] = (
                _mean_se(per_prompt[name]) if name in per_prompt else (math.nan, math.nan)
            )
        trained_fresh = _trained_on_fresh(
            search,
            [(weights or {}).get(r) for r in ids],
            [finals[r][0] for r in ids],
            str(params["model"]),
        )
        ends = [
            (decomposable_W(w, spec), np.apply_along_axis(np.diag, 1, m))
            for w, m in ((flow_ends or {}).get(r, (None, None)) for r in ids)
            if w is not None and np.all(np.isfinite(w))
        ]
        flow_end, flow_covariance = _flows_on_fresh(search, ends, per_prompt["best_in_class"])
        for name, value in baselines[suite_key].items():
            excess[name], se[name] = value.mean, value.mean_se
        best = per_prompt["best_in_class"]
        paired = {
            name: _paired(best, per_prompt[name])
            for name in ("single_head", "allocated")
            if name in per_prompt
        }
        flags = sanity_flags(
            excess, se, {k: v[:2] for k, v in paired.items()}, measure.sanity_sigmas
        )
        gap = ratio_interval(
            excess["trained"],
            se["trained"],
            excess["best_in_class"],
            se["best_in_class"],
            confidence=measure.confidence,
        )
        covariance = paired["single_head"][2] if heads > 1 else 0.0
        separation = ratio_interval(
            excess["single_head"],
            se["single_head"],
            excess["best_in_class"],
            se["best_in_class"],
            covariance=covariance,
            confidence=measure.confidence,
        )
        if heads == 1:
            separation = (
                1.0,
                1.0,
                1.0,
            )  # the same fit: no uncertainty in a ratio of a number with itself
        for name, violated in flags.items():
            if violated:
                log.warning(
                    "sanity check failed in configuration %s: %s (excess %s)",
                    label,
                    name,
                    {k: round(v, 6) for k, v in excess.items()},
                )
        log.info(
            "configuration %s (%d runs): trained %.4g +- %.2g, best %.4g +- %.2g, ratio %.3g "
            "[%.3g, %.3g], separation %.3g",
            label,
            len(ids),
            excess["trained"],
            se["trained"],
            excess["best_in_class"],
            se["best_in_class"],
            *gap,
            separation[0],
        )
        flow_gap = ratio_interval(
            flow_end[0],
            flow_end[1],
            excess["best_in_class"],
            se["best_in_class"],
            covariance=flow_covariance,
            confidence=measure.confidence,
        )
        rows.append(
            dict(
                label=label,
                ids=ids,
                params=params,
                spec=spec,
                heads=heads,
                excess=excess,
                se=se,
                flags=flags,
                trained_fresh=trained_fresh,
                flow_end=flow_end,
                flow_gap=flow_gap,
                flows=len(ends),
                gap=gap,
                separation=separation,
                best=fits["best_in_class"],
                seconds=time.monotonic() - started,
            )
        )
    ds = _to_dataset(rows)
    ds.attrs.update(
        provenance_attrs(
            {
                "optimality": {
                    **asdict(measure.search),
                    "baseline_samples": measure.baseline_samples,
                    "confidence": measure.confidence,
                    "sanity_sigmas": measure.sanity_sigmas,
                },
                "runs": dict(runs),
            }
        )
    )
    violations = [
        f"{row['label']}: {name}" for row in rows for name, bad in row["flags"].items() if bad
    ]
    ds.attrs.update(
        description="Excess risk (risk - sigma^2) of the trained limit against the best attention "
        "in its class, "
        "the best single head, one head per task, and baselines; every class re-measured on a "
        "fresh sample.",
        attention_class="reduced softmax attention (linear attention for model: linear), "
        "decomposable search + full-W polish",
        confidence=float(measure.confidence),
        sanity_violations="; ".join(violations) if violations else "none",
        # timings are attributes, not data: they differ between machines and runs
        search_seconds=json.dumps({row["label"]: round(row["seconds"], 2) for row in rows}),
    )
    return ds


def _trained_on_fresh(
    search: BestInClass,
    weights: Sequence[tuple[np.ndarray, np.ndarray] | None],
    risks: Sequence[float],
    model: str,
) -> tuple[float, float]:
    """The trained (W, U) of every usable seed on the fresh sample: mean over seeds and prompts, and
    its SE (prompt sampling of the seed average, and the seed-to-seed spread, in quadrature). Only
    for the reduced and linear models, whose (W, U) is the whole model."""
    usable = [w for w, risk in zip(weights, risks) if w is not None and math.isfinite(risk)]
    if model == "full" or not usable:
        return math.nan, math.nan
    per_prompt = np.stack(
        list(search.fresh_excess({str(k): w for k, w in enumerate(usable)}).values())
    )
    seed_means = per_prompt.mean(axis=1)
    sampling = _mean_se(per_prompt.mean(axis=0))[1]
    between = (
        float(seed_means.std(ddof=1) / math.sqrt(len(seed_means))) if len(seed_means) > 1 else 0.0
    )
    return float(seed_means.mean()), math.hypot(sampling, between)


def _flows_on_fresh(
    search: BestInClass, ends: Sequence[tuple[np.ndarray, np.ndarray]], best: np.ndarray
) -> tuple[tuple[float, float], float]:
    """The flows' end states (W, U) on the fresh sample: (mean over flows and prompts, its SE with
    the flow-to-flow spread in quadrature), and the covariance of that mean with the best in class's
    (the same prompts), so that their ratio's interval is paired."""
    if not ends:
        return (math.nan, math.nan), 0.0
    per_prompt = np.stack(
        list(search.fresh_excess({str(k): end for k, end in enumerate(ends)}).values())
    )
    pooled = per_prompt.mean(axis=0)
    mean, sampling = _mean_se(pooled)
    means = per_prompt.mean(axis=1)
    between = float(means.std(ddof=1) / math.sqrt(len(means))) if len(means) > 1 else 0.0
    return (mean, math.hypot(sampling, between)), _paired(pooled, best)[2]


def _to_dataset(rows: Sequence[dict]) -> xr.Dataset:
    units = "squared output units"
    labels = {
        "trained": "trained models at their last record (mean over seeds)",
        "best_in_class": "best attention with the same H (fresh sample)",
        "single_head": "best single head (fresh sample)",
        "allocated": "best one-head-per-task attention (fresh sample)",
        "bayes": "Bayes optimal: per-block ridge, lambda = sigma^2 d_i / kappa_i (exact Monte "
        "Carlo)",
        "ols_block": "least squares per block (closed form)",
        "ols_full": "least squares on all covariates (closed form)",
        "linear_attention": "linear attention = one-step GD per block, best step (closed form)",
        "debiased_gd": "debiased (context-centred) one-step GD per block, best step (closed form)",
    }
    n = len(rows)
    data: dict[str, tuple] = {}
    for name in REPORTED:
        data[f"excess_{name}"] = (
            ("config",),
            np.array([r["excess"][name] for r in rows], dtype=float),
            {"long_name": f"excess risk of the {labels[name]}", "units": units},
        )
        data[f"excess_{name}_se"] = (
            ("config",),
            np.array([r["se"][name] for r in rows], dtype=float),
            {"long_name": f"standard error of excess_{name} (0 for closed forms)", "units": units},
        )
    for key, title in (("gap", "optimality_ratio"), ("separation", "separation_ratio")):
        what = (
            "excess(trained) / excess(best in class)"
            if key == "gap"
            else "excess(best single head) / excess(best in class)"
        )
        for k, suffix in enumerate(("", "_low", "_high")):
            data[f"{title}{suffix}"] = (
                ("config",),
                np.array([r[key][k] for r in rows], dtype=float),
                {
                    "long_name": what
                    + ("" if not suffix else f", {suffix[1:]} end of the interval"),
                    "units": "1",
                },
            )
    for flag, text in (
        ("best_above_trained", "best in class above trained + 2 SE"),
        ("bayes_not_lowest", "Bayes above another predictor + 2 SE"),
        ("class_not_nested", "best in class above the single-head or allocated class + 2 SE"),
    ):
        data[f"flag_{flag}"] = (
            ("config",),
            np.array([int(r["flags"][flag]) for r in rows], dtype=np.int8),
            {
                "long_name": f"sanity check violated: {text}",
                "units": io.DIMENSIONLESS,
                "flag_values": np.array([0, 1], dtype=np.int8),
                "flag_meanings": "not_violated violated",
            },
        )
    data["excess_trained_fresh"] = (
        ("config",),
        np.array([r["trained_fresh"][0] for r in rows]),
        {
            "long_name": "cross-check: the trained models' final (W, U) re-measured on the fresh "
            "sample "
            "(mean over seeds; NaN for model full)",
            "units": units,
        },
    )
    data["excess_trained_fresh_se"] = (
        ("config",),
        np.array([r["trained_fresh"][1] for r in rows]),
        {"long_name": "standard error of excess_trained_fresh", "units": units},
    )
    data["excess_flow"] = (
        ("config",),
        np.array([r["flow_end"][0] for r in rows]),
        {
            "long_name": "excess risk of the exact gradient flow's end state at its long horizon "
            "(flow.nc), re-measured on "
            "the fresh sample (mean over the configuration's flows; NaN: no flow)",
            "units": units,
        },
    )
    data["excess_flow_se"] = (
        ("config",),
        np.array([r["flow_end"][1] for r in rows]),
        {
            "long_name": "standard error of excess_flow (prompts and flow-to-flow spread)",
            "units": units,
        },
    )
    for k, suffix in enumerate(("", "_low", "_high")):
        data[f"optimality_ratio_flow{suffix}"] = (
            ("config",),
            np.array([r["flow_gap"][k] for r in rows], dtype=float),
            {
                "long_name": "excess(exact flow at its horizon) / excess(best in class)"
                + ("" if not suffix else f", {suffix[1:]} end of the interval"),
                "units": "1",
            },
        )
    data["flows"] = (
        ("config",),
        np.array([r["flows"] for r in rows], dtype=np.int64),
        {"long_name": "exact flows averaged in excess_flow"},
    )
    data["noise_floor"] = (
        ("config",),
        np.array([r["spec"].risk_floor for r in rows]),
        {
            "long_name": "risk floor, sigma^2 or 0 for a noiseless query (risk = excess + "
            "noise_floor)",
            "units": units,
        },
    )
    data["seeds"] = (
        ("config",),
        np.array([len(r["ids"]) for r in rows], dtype=np.int64),
        {"long_name": "trained runs averaged"},
    )
    data["runs"] = (
        ("config",),
        np.array([",".join(r["ids"]) for r in rows], dtype=object),
        {"long_name": "run ids of the configuration"},
    )
    data["best_in_class_polished"] = (
        ("config",),
        np.array([int(r["best"].polished) for r in rows], dtype=np.int8),
        {
            "long_name": "the full-W polish beat the decomposable optimum on the validation sample",
            "units": io.DIMENSIONLESS,
            "flag_values": np.array([0, 1], dtype=np.int8),
            "flag_meanings": "decomposable polished",
        },
    )
    data["best_in_class_starts_at_best"] = (
        ("config",),
        np.array([r["best"].starts_at_best for r in rows], dtype=np.int64),
        {"long_name": "starts within the tolerance of the best after screening"},
    )
    heads, tasks = max(r["heads"] for r in rows), max(r["spec"].num_tasks for r in rows)
    for name, attr in (("best_omega", "omega"), ("best_mu", "mu")):
        values = np.full((n, heads, tasks), np.nan)
        for k, r in enumerate(rows):
            block = getattr(r["best"], attr)
            values[k, : block.shape[0], : block.shape[1]] = block
        what = (
            "key-query value omega_hi = tr(P_i W_h P_i)/d_i"
            if attr == "omega"
            else "output value mu_hi = (U_h)_ii"
        )
        data[name] = (
            ("config", "head", "task"),
            values,
            {"long_name": f"best in class: {what}, latent basis (NaN: no such head/task)"},
        )
    coords = {
        "config": (
            "config",
            np.array([r["label"] for r in rows], dtype=object),
            {"long_name": "configuration (parameters that vary)"},
        ),
        "head": np.arange(heads),
        "task": np.arange(tasks),
        "heads": (
            "config",
            np.array([r["heads"] for r in rows], dtype=np.int64),
            {"long_name": "heads H"},
        ),
        "tasks": (
            "config",
            np.array([r["spec"].num_tasks for r in rows], dtype=np.int64),
            {"long_name": "tasks I"},
        ),
        "task_dim": (
            "config",
            np.array([np.mean(r["spec"].task_dims) for r in rows]),
            {"long_name": "covariates per task d_i (mean)"},
        ),
        "context_length": (
            "config",
            np.array([r["spec"].context_length for r in rows], dtype=np.int64),
            {"long_name": "context length L"},
        ),
        "noise_std": (
            "config",
            np.array([r["spec"].noise_std for r in rows]),
            {"long_name": "noise standard deviation sigma", "units": "output units"},
        ),
        "signal": (
            "config",
            np.array([np.mean(r["spec"].signal) for r in rows]),
            {"long_name": "signal kappa_i (mean)", "units": "squared output units"},
        ),
        "model": (
            "config",
            np.array([str(r["params"]["model"]) for r in rows], dtype=object),
            {"long_name": "trained model"},
        ),
    }
    shared = set(coords) | {"seed", "task_dim", "signal"}
    varying = sorted(
        {
            k
            for r in rows
            for k in r["params"]
            if k not in shared
            and len({json.dumps(q["params"].get(k), default=str) for q in rows}) > 1
        }
    )
    for key in varying:
        coords[key] = (
            "config",
            np.array([_coordinate_value(r["params"].get(key)) for r in rows]),
            {"long_name": f"run parameter {key}"},
        )
    return xr.Dataset(data_vars=data, coords=coords)
