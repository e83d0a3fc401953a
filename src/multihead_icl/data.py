"""Multi-task linear-regression prompts (docs/science.md §2).

Task i reads its own block S_i of d_i covariates and writes output coordinate i. One prompt is
L context pairs (x_l, y_l) and a query (x_q, y_q), all drawn afresh:

    x ~ N(0, I_d),   g_i ~ N(0, (kappa_i / d_i) I_{d_i}),   y_i = f(<g_i, x_{S_i}>) + eps,  eps ~
    N(0, sigma^2)

with f the identity for the linear target. The query target carries noise too, so the risk has the
floor sigma^2, unless ``query_noise`` is off (the authors' generator: a noiseless query).
``signal_per: coordinate`` reads ``signal`` as the variance of each coefficient entry (kappa_i =
signal x d_i) and ``input_dim`` cuts the covariates into the authors' blocks
(``tasks.split_blocks``). With ``rotate`` the covariates and outputs are shown in random orthogonal
bases Phi, Psi (fixed by ``basis_seed``): nothing downstream may depend on the coordinate system.
Everything is drawn on the caller's device from the caller's ``torch.Generator``. Prompts from a
real dataset (``data`` other than synthetic) come from ``realdata``; ``make_sampler`` picks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .realdata import RealDataSampler
from .tasks import TARGETS, TaskSpec  # noqa: F401  (TaskSpec is part of this module's interface)


@dataclass
class Prompts:
    """A batch of prompts; shapes (B, L, d), (B, L, I), (B, d), (B, I), (B, I, d)."""

    x: torch.Tensor
    y: torch.Tensor
    x_query: torch.Tensor
    y_query: torch.Tensor
    coef: torch.Tensor

    def __len__(self) -> int:
        return self.x.shape[0]

    def slice(self, start: int, stop: int) -> Prompts:
        return Prompts(
            *(t[start:stop] for t in (self.x, self.y, self.x_query, self.y_query, self.coef))
        )

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Prompts:
        return Prompts(
            *(
                t.to(device=device, dtype=dtype)
                for t in (self.x, self.y, self.x_query, self.y_query, self.coef)
            )
        )


@dataclass
class Normals:
    """The standard normals one batch of prompts is made of: covariates (B, L+1, d), coefficients
    (B, d) and noise (B, L+1, I). Drawing them is most of an online step on the CPU, so they are
    drawn apart from the arithmetic that turns them into prompts (see ``stream.PromptStream``)."""

    x: torch.Tensor
    coef: torch.Tensor
    noise: torch.Tensor


class PromptSampler:
    """Draws batches of prompts for one ``TaskSpec`` on a device (no host round trips)."""

    def __init__(
        self, spec: TaskSpec, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ):
        if spec.data != "synthetic":
            raise ValueError(f"data = {spec.data} is drawn by make_sampler, not PromptSampler")
        self.spec = spec
        self.device = torch.device(device)
        self.dtype = dtype
        std = np.sqrt(np.array(spec.signal) / np.array(spec.task_dims))
        # per-covariate prior std of the coefficient, so one randn draw gives all g_i at once
        self._coef_std = torch.tensor(std @ spec.block_mask(), dtype=dtype, device=self.device)
        self._mask = torch.tensor(spec.block_mask(), dtype=dtype, device=self.device)
        phi, psi = spec.bases()
        self._phi = None if not spec.rotate else torch.tensor(phi, dtype=dtype, device=self.device)
        self._psi = None if not spec.rotate else torch.tensor(psi, dtype=dtype, device=self.device)

    def sample(
        self, batch: int, generator: torch.Generator, context_length: int | None = None
    ) -> Prompts:
        """``batch`` fresh prompts; ``context_length`` overrides L (for length generalisation)."""
        return self.build(self.draw(batch, generator, context_length))

    def draw(
        self, batch: int, generator: torch.Generator, context_length: int | None = None
    ) -> Normals:
        """The random part of ``sample``: every normal of ``batch`` prompts, in the generator's
        order."""
        length = self.spec.context_length if context_length is None else int(context_length)
        shape, dev, dt = (batch, length + 1), self.device, self.dtype
        x_all = torch.randn(*shape, self.spec.dim, generator=generator, device=dev, dtype=dt)
        coef = torch.randn(batch, self.spec.dim, generator=generator, device=dev, dtype=dt)
        noise = torch.randn(*shape, self.spec.num_tasks, generator=generator, device=dev, dtype=dt)
        return Normals(x_all, coef, noise)

    def build(self, normals: Normals) -> Prompts:
        """The deterministic part of ``sample``: targets, and the task bases when ``rotate``."""
        spec, x_all = self.spec, normals.x
        length = x_all.shape[1] - 1
        coef = (normals.coef * self._coef_std)[
            :, None, :
        ] * self._mask  # (B, I, d), zero off each task's block
        # latent_bli = <coef_bi, x_bl>; (I x d) @ (d x L) is twice as fast on the CPU as (L x d) @
        # (d x I)
        latent = torch.bmm(coef, x_all.transpose(1, 2)).transpose(1, 2)
        noise = normals.noise
        if not spec.query_noise:  # the authors' generator: noisy context, noiseless query target
            noise = noise.clone()
            noise[:, length] = 0.0
        y_all = torch.add(_apply_target(latent, spec.target), noise, alpha=spec.noise_std)
        if self._phi is not None:
            # observed x = Phi x_latent; observed y = Psi y_latent (noise is isotropic, so Psi eps ~
            # eps)
            x_all = x_all @ self._phi.T
            y_all = y_all @ self._psi.T
            coef = self._psi @ coef @ self._phi.T
        return Prompts(
            x=x_all[:, :length],
            y=y_all[:, :length],
            x_query=x_all[:, length],
            y_query=y_all[:, length],
            coef=coef,
        )


def _apply_target(latent: torch.Tensor, target: str) -> torch.Tensor:
    if target == "linear":
        return latent
    if target == "tanh":
        return torch.tanh(latent)
    if target == "relu":
        return torch.relu(latent)
    raise ValueError(f"unknown target {target!r}; expected one of {TARGETS}")


def make_sampler(
    spec: TaskSpec,
    split: str = "train",
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> PromptSampler | RealDataSampler:
    """The sampler of ``spec``'s prompts: Gaussian ones, or a real dataset's rows of ``split``
    ("train" for training, "eval" for the evaluation sets; the synthetic law has no split)."""
    if spec.data == "synthetic":
        return PromptSampler(spec, device=device, dtype=dtype)
    return RealDataSampler(spec, split, device=device, dtype=dtype)


def sample_eval_set(
    spec: TaskSpec, prompts: int, seed: int, context_length: int | None = None
) -> Prompts:
    """The fixed evaluation set: drawn on the CPU from its own seed so it is the same on every
    device; a real dataset's from its evaluation rows, which training never sees."""
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    sampler = make_sampler(spec, "eval", device="cpu", dtype=torch.float32)
    chunks = []
    chunk = 1024
    for start in range(0, prompts, chunk):
        chunks.append(sampler.sample(min(chunk, prompts - start), gen, context_length))
    return Prompts(
        *(
            torch.cat([getattr(c, f) for c in chunks])
            for f in ("x", "y", "x_query", "y_query", "coef")
        )
    )
