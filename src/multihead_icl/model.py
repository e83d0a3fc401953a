"""One-layer multi-head attention predictors for in-context regression, batched over heads.

``reduced`` is the paper's object (docs/science.md §2): head h has a key-query matrix W_h (d x d)
and an output-value matrix U_h (I x I), and

    y_hat = sum_h U_h sum_l y_l softmax_l(x_l^T W_h x_q)        (softmax over the L context tokens)

``linear`` replaces the softmax by the plain average (1/L) x_l^T W_h x_q. ``full`` is the follow-up
code's parametrisation: per-head W_Q, W_K, W_V on tokens z = [x; y], query [x_q; 0], an output
projection O, scores scaled by 1/sqrt(d + I). ``reduced_view`` maps any of them to (W, U): the
x-x block of W_K^T W_Q / sqrt(D) and the y-y block of O W_V, with the relative size of what that
view leaves out (the y -> score and x -> value blocks). ``transformer`` is a practical pre-norm
block stack on the same tokens (``TransformerICL``); it has no reduced view, so its allocation is
read by head ablation (``ablation``).

Every model takes an optional ``head_mask`` of shape (layers, heads) that multiplies each head's
output (1 keeps it, 0 ablates it); the one-layer models have one layer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .data import TaskSpec

MODELS = ("reduced", "linear", "full", "transformer")
ONE_LAYER_MODELS = ("reduced", "linear", "full")  # those with a reduced view (W, U)
INITS = ("decomposable", "gaussian", "pytorch", "official", "official_random")


def kernel_scores(x: torch.Tensor, x_query: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Scores x_l^T W_h x_q for every head.

    x (B, L, d), x_query (B, d), weight (H, d, d) -> (B, H, L)."""
    return torch.einsum("bli,bhi->bhl", x, torch.einsum("hij,bj->bhi", weight, x_query))


class ReducedAttention(nn.Module):
    """The paper's reduced multi-head softmax attention (``normalise='softmax'``) or linear
    attention."""

    def __init__(self, heads: int, dim: int, tasks: int, normalise: str = "softmax"):
        super().__init__()
        if normalise not in ("softmax", "linear"):
            raise ValueError(f"normalise must be 'softmax' or 'linear', got {normalise!r}")
        self.normalise = normalise
        self.W = nn.Parameter(torch.zeros(heads, dim, dim))
        self.U = nn.Parameter(torch.zeros(heads, tasks, tasks))

    def attention(self, x: torch.Tensor, y: torch.Tensor, x_query: torch.Tensor) -> torch.Tensor:
        """Weights of each head on the context tokens, (B, H, L)."""
        scores = kernel_scores(x, x_query, self.W)
        if self.normalise == "softmax":
            return torch.softmax(scores, dim=-1)
        return scores / x.shape[1]

    @property
    def head_layout(self) -> tuple[int, int]:
        """(layers, heads): the shape of ``head_mask``."""
        return 1, self.W.shape[0]

    def forward(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        x_query: torch.Tensor,
        head_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        head_out = torch.einsum("bhl,blj->bhj", self.attention(x, y, x_query), y)
        if head_mask is not None:
            head_out = head_out * head_mask.reshape(-1)[:, None]
        return torch.einsum("hij,bhj->bi", self.U, head_out)


class FullAttention(nn.Module):
    """Per-head W_Q, W_K, W_V (D x D) on tokens [x; y] and an output projection O_h (I x D)."""

    def __init__(self, heads: int, dim: int, tasks: int):
        super().__init__()
        width = dim + tasks
        self.dim, self.tasks = dim, tasks
        self.W_Q = nn.Parameter(torch.zeros(heads, width, width))
        self.W_K = nn.Parameter(torch.zeros(heads, width, width))
        self.W_V = nn.Parameter(torch.zeros(heads, width, width))
        self.O = nn.Parameter(torch.zeros(heads, tasks, width))

    def key_query(self) -> torch.Tensor:
        """W_K^T W_Q / sqrt(D), (H, D, D): rows index key features, columns query features."""
        return self.W_K.transpose(1, 2) @ self.W_Q / math.sqrt(self.dim + self.tasks)

    def output_value(self) -> torch.Tensor:
        """O_h W_V^h, (H, I, D)."""
        return self.O @ self.W_V

    def attention(self, x: torch.Tensor, y: torch.Tensor, x_query: torch.Tensor) -> torch.Tensor:
        """Weights of each head on the context tokens, (B, H, L); the query's y-slot is 0."""
        tokens = torch.cat([x, y], dim=-1)
        return torch.softmax(
            kernel_scores(tokens, x_query, self.key_query()[:, :, : self.dim]), dim=-1
        )

    @property
    def head_layout(self) -> tuple[int, int]:
        """(layers, heads): the shape of ``head_mask``."""
        return 1, self.W_Q.shape[0]

    def forward(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        x_query: torch.Tensor,
        head_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        tokens = torch.cat([x, y], dim=-1)
        mean_token = torch.einsum("bhl,blk->bhk", self.attention(x, y, x_query), tokens)
        if head_mask is not None:
            mean_token = mean_token * head_mask.reshape(-1)[:, None]
        return torch.einsum("hik,bhk->bi", self.output_value(), mean_token)


class TransformerBlock(nn.Module):
    """Pre-norm block: z + Attn(LN(z)), then z + MLP(LN(z)); multi-head self-attention written out
    so that one head's output can be masked (head ablation)."""

    def __init__(self, width: int, heads: int, mlp_width: int, causal: bool):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads, self.causal = heads, causal
        self.attn_norm = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.mlp_norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, mlp_width), nn.GELU(), nn.Linear(mlp_width, width)
        )

    def forward(self, z: torch.Tensor, head_mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, tokens, width = z.shape
        q, k, v = (
            part.reshape(batch, tokens, self.heads, -1).transpose(1, 2)
            for part in self.qkv(self.attn_norm(z)).chunk(3, dim=-1)
        )  # (B, H, T, width / H) each
        heads = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        if head_mask is not None:
            heads = heads * head_mask[:, None, None]
        z = z + self.out(heads.transpose(1, 2).reshape(batch, tokens, width))
        return z + self.mlp(self.mlp_norm(z))


class TransformerICL(nn.Module):
    """A small pre-norm transformer on the one-layer models' tokens: z_l = [x_l; y_l] for the
    context, [x_q; 0] for the query (last), embedded to ``width``; ``layers`` blocks; a final
    LayerNorm; the prediction read from the query position by a linear map to the I outputs."""

    def __init__(
        self,
        heads: int,
        dim: int,
        tasks: int,
        layers: int,
        width: int,
        mlp_width: int,
        causal: bool = False,
    ):
        super().__init__()
        self.dim, self.tasks = dim, tasks
        self.embed = nn.Linear(dim + tasks, width)
        self.blocks = nn.ModuleList(
            TransformerBlock(width, heads, mlp_width, causal) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(width)
        self.readout = nn.Linear(width, tasks)

    @property
    def head_layout(self) -> tuple[int, int]:
        """(layers, heads): the shape of ``head_mask``."""
        return len(self.blocks), self.blocks[0].heads

    def forward(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        x_query: torch.Tensor,
        head_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        query = torch.cat([x_query, torch.zeros_like(y[:, 0])], dim=-1)[:, None]
        z = self.embed(torch.cat([torch.cat([x, y], dim=-1), query], dim=1))
        for layer, block in enumerate(self.blocks):
            z = block(z, None if head_mask is None else head_mask[layer])
        return self.readout(self.norm(z[:, -1]))


def build_model(kind: str, heads: int, dim: int, tasks: int, **transformer: Any) -> nn.Module:
    """One of ``MODELS``; ``transformer`` takes ``layers``, ``width``, ``mlp_width``, ``causal``."""
    if kind == "transformer":
        return TransformerICL(heads, dim, tasks, **transformer)
    if kind == "reduced":
        return ReducedAttention(heads, dim, tasks, "softmax")
    if kind == "linear":
        return ReducedAttention(heads, dim, tasks, "linear")
    if kind == "full":
        return FullAttention(heads, dim, tasks)
    raise ValueError(f"unknown model {kind!r}; expected one of {MODELS}")


TRANSFORMER_KEYS = ("layers", "width", "mlp_width", "causal")  # run parameters of the transformer


def model_from_params(params: Mapping[str, Any], dim: int, tasks: int) -> nn.Module:
    """The run's model (at zero or PyTorch's init) from its parameters."""
    kind = str(params["model"])
    extra = {key: params[key] for key in TRANSFORMER_KEYS} if kind == "transformer" else {}
    return build_model(kind, int(params["heads"]), dim, tasks, **extra)


@dataclass
class ReducedView:
    """(W, U) of any model, and what that view leaves out (zero for reduced/linear)."""

    W: torch.Tensor  # (H, d, d)
    U: torch.Tensor  # (H, I, I)
    score_leak: torch.Tensor  # (H,) |y -> score block| / |key-query columns used|
    value_leak: torch.Tensor  # (H,) |x -> value block| / |output-value|


@torch.no_grad()
def reduced_view(model: nn.Module) -> ReducedView:
    if isinstance(model, ReducedAttention):
        zeros = torch.zeros(model.W.shape[0], device=model.W.device)
        return ReducedView(model.W.detach().clone(), model.U.detach().clone(), zeros, zeros.clone())
    if isinstance(model, FullAttention):
        d = model.dim
        kq, ov = model.key_query()[:, :, :d], model.output_value()
        tiny = torch.finfo(kq.dtype).tiny
        score_leak = kq[:, d:].flatten(1).norm(dim=1) / kq.flatten(1).norm(dim=1).clamp_min(tiny)
        value_leak = ov[:, :, :d].flatten(1).norm(dim=1) / ov.flatten(1).norm(dim=1).clamp_min(tiny)
        return ReducedView(kq[:, :d].clone(), ov[:, :, d:].clone(), score_leak, value_leak)
    raise TypeError(f"no reduced view for {type(model).__name__}")


def initial_spectrum(
    spec: TaskSpec, heads: int, scale: float, generator: torch.Generator, lead: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Draw omega(0), mu(0) as scale * U(0.5, 1.5), shape (H, I); with ``lead`` > 0 head (i mod H)
    is the designated leader of task i and its values are multiplied by (1 + lead)."""
    omega = scale * (
        0.5 + torch.rand(heads, spec.num_tasks, generator=generator, dtype=torch.float64)
    )
    mu = scale * (0.5 + torch.rand(heads, spec.num_tasks, generator=generator, dtype=torch.float64))
    if lead > 0:
        for task in range(spec.num_tasks):
            omega[task % heads, task] *= 1 + lead
            mu[task % heads, task] *= 1 + lead
    return omega.numpy(), mu.numpy()


def decomposable_weights(
    spec: TaskSpec, omega: np.ndarray, mu: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """W_h = Phi (sum_i omega_hi P_i) Phi^T and U_h = Psi diag(mu_h) Psi^T, as float64 arrays."""
    phi, psi = spec.bases()
    latent_w = np.einsum("hi,ijk->hjk", omega, spec.block_projections())
    weight = phi @ latent_w @ phi.T
    value = psi @ np.einsum("hi,ij->hij", mu, np.eye(spec.num_tasks)) @ psi.T
    return weight, value


@dataclass
class OfficialInit:
    """The authors' decomposable init (docs/science.md §7) as factors: Q_h = q_h I, K_h = k_h I
    (D x D), and the y-block diagonal v_h of V_h (O_h = its transpose). c = L^-0.75, q_h = k_h = c
    (``official``) or c times one N(0, 1) draw each (``official_random``, October); v_h = c on every
    task and 2c on task h (heads h >= I lead none: their code needs H = I there)."""

    query: np.ndarray  # (H,)
    key: np.ndarray  # (H,)
    value: np.ndarray  # (H, I)

    @classmethod
    def draw(
        cls, spec: TaskSpec, heads: int, scheme: str, generator: torch.Generator
    ) -> OfficialInit:
        c = spec.context_length**-0.75
        query, key = np.full(heads, c), np.full(heads, c)
        if scheme == "official_random":
            query = query * torch.randn(heads, generator=generator, dtype=torch.float64).numpy()
            key = key * torch.randn(heads, generator=generator, dtype=torch.float64).numpy()
        value = np.full((heads, spec.num_tasks), c)
        for h in range(min(heads, spec.num_tasks)):
            value[h, h] = 2 * c
        return cls(query, key, value)

    def spectrum(self, spec: TaskSpec) -> tuple[np.ndarray, np.ndarray]:
        """The reduced view (omega, mu), (H, I): omega = q k / sqrt(D) on every task, mu = v^2."""
        width = spec.dim + spec.num_tasks
        omega = np.repeat(
            (self.query * self.key / math.sqrt(width))[:, None], spec.num_tasks, axis=1
        )
        return omega, self.value**2


@torch.no_grad()
def _pytorch_default(model: FullAttention, generator: torch.Generator) -> None:
    """nn.Linear's default: entries U(-1/sqrt(fan_in), 1/sqrt(fan_in)); the authors' o_proj reads
    all H concatenated heads, so O's fan-in is H D."""
    heads, _, width = model.W_Q.shape
    for param, fan_in in (
        (model.W_Q, width),
        (model.W_K, width),
        (model.W_V, width),
        (model.O, heads * width),
    ):
        bound = 1 / math.sqrt(fan_in)
        param.copy_((torch.rand(param.shape, generator=generator) * 2 - 1) * bound)


@torch.no_grad()
def _pytorch_linear_default(model: nn.Module, generator: torch.Generator) -> None:
    """nn.Linear's default (weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in))) drawn from the
    run's generator, so the init is fixed by the seed; LayerNorms keep their ones and zeros."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            bound = 1 / math.sqrt(module.in_features)
            for param in (module.weight, module.bias):
                param.copy_((torch.rand(param.shape, generator=generator) * 2 - 1) * bound)


@torch.no_grad()
def initialise(
    model: nn.Module,
    spec: TaskSpec,
    scheme: str,
    scale: float,
    generator: torch.Generator,
    omega: np.ndarray | None = None,
    mu: np.ndarray | None = None,
    lead: float = 0.0,
) -> None:
    """Set the parameters in place (the transformer: ``pytorch`` only). ``decomposable``: explicit
    or drawn omega(0), mu(0) (docs/science.md §2); ``gaussian``: every entry N(0, scale^2 /
    fan_in); ``pytorch``: nn.Linear's default (full model, transformer); ``official``,
    ``official_random``: the authors' decomposable init (``OfficialInit``)."""
    if isinstance(model, TransformerICL):
        if scheme != "pytorch":
            raise ValueError(f"model transformer starts from init 'pytorch', got {scheme!r}")
        _pytorch_linear_default(model, generator)
        return
    heads = model.head_layout[1]
    d, tasks = spec.dim, spec.num_tasks
    if scheme == "pytorch":
        if not isinstance(model, FullAttention):
            raise ValueError(
                "init 'pytorch' is nn.Linear's default and needs model full, got "
                f"{type(model).__name__}"
            )
        _pytorch_default(model, generator)
        return
    if scheme in ("official", "official_random"):
        factors = OfficialInit.draw(spec, heads, scheme, generator)
        if isinstance(model, ReducedAttention):
            weight, value = decomposable_weights(spec, *factors.spectrum(spec))
            model.W.copy_(torch.as_tensor(weight))
            model.U.copy_(torch.as_tensor(value))
            return
        _, psi = spec.bases()
        width = d + tasks
        eye = torch.eye(width, dtype=torch.float64)
        model.W_Q.copy_(torch.as_tensor(factors.query)[:, None, None] * eye)
        model.W_K.copy_(torch.as_tensor(factors.key)[:, None, None] * eye)
        value_yy = torch.as_tensor(
            psi @ np.einsum("hi,ij->hij", factors.value, np.eye(tasks)) @ psi.T
        )
        model.W_V.zero_()
        model.W_V[:, d:, d:] = value_yy
        model.O.zero_()
        model.O[:, :, d:] = value_yy.transpose(1, 2)
        return
    if scheme == "decomposable":
        if omega is None or mu is None:
            drawn_omega, drawn_mu = initial_spectrum(spec, heads, scale, generator, lead)
            omega = drawn_omega if omega is None else omega
            mu = drawn_mu if mu is None else mu
        omega, mu = np.asarray(omega, dtype=float), np.asarray(mu, dtype=float)
        if omega.shape != (heads, tasks) or mu.shape != (heads, tasks):
            raise ValueError(
                f"init_omega and init_mu must have shape (heads, tasks) = {(heads, tasks)}"
            )
        weight, value = decomposable_weights(spec, omega, mu)
        weight = torch.as_tensor(weight, dtype=torch.float32)
        value = torch.as_tensor(value, dtype=torch.float32)
        if isinstance(model, ReducedAttention):
            model.W.copy_(weight)
            model.U.copy_(value)
        else:
            width = d + tasks
            eye = torch.eye(width)
            model.W_K.copy_(eye.expand(heads, width, width))
            model.W_Q.zero_()
            model.W_Q[:, :d, :d] = weight * math.sqrt(width)
            model.W_V.zero_()
            model.W_V[:, d:, d:] = torch.eye(tasks)
            model.O.zero_()
            model.O[:, :, d:] = value
        return
    if scheme == "gaussian":
        for param in model.parameters():
            fan_in = param.shape[-1]
            param.copy_(torch.randn(param.shape, generator=generator) * (scale / math.sqrt(fan_in)))
        return
    raise ValueError(f"unknown init {scheme!r}; expected one of {INITS}")


def has_reduced_view(kind: str) -> bool:
    """The one-layer models have a reduced view (W, U), which train.nc records along the run."""
    return kind in ONE_LAYER_MODELS


def flat_parameters_of(model: nn.Module) -> tuple[torch.Tensor, list[list]]:
    """Every parameter flattened into one float64 vector, and the layout ([name, shape] in order)
    that ``load_flat_parameters`` needs to put them back: train.nc keeps the final model this way
    so that any architecture can be rebuilt and read out (head ablation, other lengths)."""
    named = list(model.named_parameters())
    flat = torch.cat([p.detach().reshape(-1).to(torch.float64) for _, p in named])
    return flat, [[name, list(p.shape)] for name, p in named]


@torch.no_grad()
def load_flat_parameters(model: nn.Module, flat: np.ndarray, layout: list[list]) -> nn.Module:
    """Put a ``flat_parameters_of`` vector back into ``model`` (ValueError on a layout mismatch)."""
    named = dict(model.named_parameters())
    expected = [[name, list(p.shape)] for name, p in named.items()]
    if [[str(n), list(s)] for n, s in layout] != expected:
        raise ValueError(
            f"the stored parameter layout does not fit a {type(model).__name__} of this shape"
        )
    start = 0
    for name, shape in expected:
        size = int(np.prod(shape, dtype=np.int64))
        named[name].copy_(torch.as_tensor(flat[start : start + size]).reshape(shape))
        start += size
    return model
