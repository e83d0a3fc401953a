"""Training throughput: the pipeline's trainer against a straightforward reference, in one run.

Setting of issue 2: I=3 tasks, d_i=4, H=3 heads, L=200, batch 1024, reduced model, plain GD.
The reference is what a first notebook would do: prompts built on the host with numpy every step,
a Python loop over heads, and a host synchronisation (loss.item()) every step. Also prints the
share of a step spent drawing its random numbers, the floor for online training.

Then the authors' setting (docs/science.md §7; issue 13): d = 50 in 3 task blocks, L = 100, H = 3,
batch 1000, Adam, the same prompt stream. Our ``full`` model forms W_K^T W_Q and O W_V once a step;
the authors' form projects every token with per-head Q, K, V (``TokenProjectionAttention`` below,
written from the description of their code). Both step times and their ratio, in one run.

    .venv/bin/python benchmarks/bench_training.py [--steps 60] [--threads 2] [--authors-steps 20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from multihead_icl.data import PromptSampler, TaskSpec
from multihead_icl.model import FullAttention, ReducedAttention, initialise
from multihead_icl.stream import PromptStream, draws_ahead_by_default
from multihead_icl.training import risk

SPEC = TaskSpec(task_dims=(4, 4, 4), noise_std=0.3, signal=(1.0, 1.0, 1.0), context_length=200)
HEADS, BATCH, LR = 3, 1024, 0.5


def timed_loop(
    spec: TaskSpec, batch: int, model: torch.nn.Module, update, steps: int, ahead: bool
) -> float:
    """Seconds a step of training.train's loop, stripped of recording: the prompt stream (drawing
    ahead in a background thread when ``ahead``, as train does on a CPU with >= 2 threads), the
    model's risk, and ``update(loss)``."""
    sampler, gen = PromptSampler(spec), torch.Generator().manual_seed(1)
    with PromptStream(sampler, batch, gen, ahead=ahead) as stream:
        start = time.perf_counter()
        for _ in range(steps):
            p = stream.next()
            update(risk(model(p.x, p.y, p.x_query), p.y_query))
        elapsed = time.perf_counter() - start
    return elapsed / steps


def pipeline_steps(steps: int, ahead: bool) -> float:
    """The pipeline's loop with plain GD (autograd, foreach update) on the reduced model."""
    model = ReducedAttention(HEADS, SPEC.dim, SPEC.num_tasks)
    initialise(model, SPEC, "decomposable", 0.01, torch.Generator().manual_seed(0))
    params = list(model.parameters())

    def update(loss: torch.Tensor) -> None:
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            torch._foreach_add_(params, grads, alpha=-LR)

    return timed_loop(SPEC, BATCH, model, update, steps, ahead)


def sampling_only(steps: int) -> float:
    sampler, gen = PromptSampler(SPEC), torch.Generator().manual_seed(1)
    start = time.perf_counter()
    for _ in range(steps):
        sampler.sample(BATCH, gen)
    return (time.perf_counter() - start) / steps


def randn_only(steps: int) -> float:
    """Just the normal draws of one step (context+query covariates, coefficients, noise): the
    floor."""
    gen, d, tasks, length = (
        torch.Generator().manual_seed(1),
        SPEC.dim,
        SPEC.num_tasks,
        SPEC.context_length,
    )
    start = time.perf_counter()
    for _ in range(steps):
        torch.randn(BATCH, length + 1, d, generator=gen)
        torch.randn(BATCH, d, generator=gen)
        torch.randn(BATCH, length + 1, tasks, generator=gen)
    return (time.perf_counter() - start) / steps


def reference_steps(steps: int) -> float:
    """Host-side numpy prompts, a Python loop over heads, loss.item() every step."""
    rng = np.random.default_rng(0)
    d, tasks, length = SPEC.dim, SPEC.num_tasks, SPEC.context_length
    heads_w = [torch.nn.Parameter(0.01 * torch.eye(d)) for _ in range(HEADS)]
    heads_u = [torch.nn.Parameter(0.01 * torch.eye(tasks)) for _ in range(HEADS)]
    opt = torch.optim.SGD(heads_w + heads_u, lr=LR)
    start = time.perf_counter()
    for _ in range(steps):
        x = rng.standard_normal((BATCH, length + 1, d))
        y = np.zeros((BATCH, length + 1, tasks))
        for i in range(tasks):
            g = rng.standard_normal((BATCH, 4)) * np.sqrt(1 / 4)
            y[:, :, i] = np.einsum(
                "bld,bd->bl", x[:, :, 4 * i : 4 * i + 4], g
            ) + 0.3 * rng.standard_normal((BATCH, length + 1))
        x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
        xc, yc, xq, yq = x[:, :length], y[:, :length], x[:, length], y[:, length]
        pred = 0
        for w, u in zip(heads_w, heads_u):
            attn = torch.softmax(torch.einsum("bld,de,be->bl", xc, w, xq), dim=-1)
            pred = pred + (attn[:, :, None] * yc).sum(1) @ u.T
        loss = ((pred - yq) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()
    return (time.perf_counter() - start) / steps


AUTHORS_SPEC = TaskSpec.from_params(
    {
        "tasks": 3,
        "input_dim": 50,
        "signal": 1.0,
        "signal_per": "coordinate",
        "noise_std": 0.0,
        "query_noise": False,
        "context_length": 100,
    }
)
AUTHORS_BATCH = 1000


class TokenProjectionAttention(torch.nn.Module):
    """The authors' form of the same predictor: every token [x; y] projected by per-head Q, K, V
    (nn.Linear, no bias), logits scaled by D^-1/2, softmax over the context, the H heads'
    outputs concatenated and projected to the I outputs."""

    def __init__(self, heads: int, dim: int, tasks: int):
        super().__init__()
        self.heads, self.width, self.tasks = heads, dim + tasks, tasks
        self.q, self.k, self.v = (
            torch.nn.Linear(self.width, heads * self.width, bias=False) for _ in range(3)
        )
        self.o = torch.nn.Linear(heads * self.width, tasks, bias=False)

    def forward(self, x: torch.Tensor, y: torch.Tensor, x_query: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        tokens = torch.cat([x, y], dim=-1)
        query = torch.cat([x_query, x_query.new_zeros(batch, self.tasks)], dim=-1)
        q = self.q(query).view(batch, self.heads, self.width)
        k = self.k(tokens).view(batch, length, self.heads, self.width)
        v = self.v(tokens).view(batch, length, self.heads, self.width)
        weights = torch.softmax(torch.einsum("bhk,blhk->bhl", q, k) / self.width**0.5, dim=-1)
        return self.o(torch.einsum("bhl,blhk->bhk", weights, v).reshape(batch, -1))


def authors_steps(steps: int, model: torch.nn.Module, ahead: bool) -> float:
    """The pipeline's loop with Adam at lr 1e-3 on the authors' setting."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def update(loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return timed_loop(AUTHORS_SPEC, AUTHORS_BATCH, model, update, steps, ahead)


def compare_with_token_projection(steps: int, threads: int, ahead: bool) -> None:
    ours = FullAttention(3, AUTHORS_SPEC.dim, AUTHORS_SPEC.num_tasks)
    initialise(ours, AUTHORS_SPEC, "pytorch", 1.0, torch.Generator().manual_seed(0))
    theirs = TokenProjectionAttention(3, AUTHORS_SPEC.dim, AUTHORS_SPEC.num_tasks)
    with torch.no_grad():  # the same weights give the same predictions: both time one predictor
        for linear, stacked in ((theirs.q, ours.W_Q), (theirs.k, ours.W_K), (theirs.v, ours.W_V)):
            linear.weight.copy_(stacked.reshape(-1, stacked.shape[-1]))
        theirs.o.weight.copy_(torch.cat(list(ours.O), dim=1))
        p = PromptSampler(AUTHORS_SPEC).sample(8, torch.Generator().manual_seed(2))
        torch.testing.assert_close(
            theirs(p.x, p.y, p.x_query), ours(p.x, p.y, p.x_query), rtol=1e-4, atol=1e-5
        )
    authors_steps(2, ours, ahead), authors_steps(2, theirs, ahead)  # warm-up
    t_ours, t_theirs = [], []
    for _ in range(3):  # interleaved, best of 3
        t_ours.append(authors_steps(steps, ours, ahead))
        t_theirs.append(authors_steps(max(steps // 4, 3), theirs, ahead))
    a, b = min(t_ours), min(t_theirs)
    print(
        f"authors' setting: d=50 (16/17/17), I=3, H=3, L=100, batch {AUTHORS_BATCH}, full model, "
        f"Adam, {threads} threads (best of 3)"
    )
    print(f"ours (W_K^T W_Q and O W_V formed once a step): {1e3 * a:8.2f} ms/step")
    print(f"authors' form (per-token Q, K, V projections): {1e3 * b:8.2f} ms/step")
    print(f"ratio                                        : {b / a:8.2f} x   (goal >= 8)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--authors-steps",
        type=int,
        default=20,
        help="steps per measurement in the authors' setting (0: skip it)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ahead = draws_ahead_by_default(torch.device("cpu"))
    (
        pipeline_steps(5, ahead),
        pipeline_steps(5, False),
        reference_steps(3),
        sampling_only(5),
    )  # warm-up
    # interleave the measurements so machine noise hits both alike
    ours, foreground, ref, draw, normals = [], [], [], [], []
    for _ in range(3):
        ours.append(pipeline_steps(args.steps, ahead))
        foreground.append(pipeline_steps(args.steps, False))
        ref.append(reference_steps(max(args.steps // 3, 5)))
        draw.append(sampling_only(args.steps))
        normals.append(randn_only(args.steps))
    t_ours, t_fg, t_ref, t_draw, t_normals = (
        min(ours),
        min(foreground),
        min(ref),
        min(draw),
        min(normals),
    )
    print(
        f"setting: I=3, d_i=4, H={HEADS}, L=200, batch {BATCH}, reduced, GD, {args.threads} "
        "threads (best of 3)"
    )
    print(
        f"pipeline trainer : {1 / t_ours:8.1f} steps/s  ({1e3 * t_ours:.2f} ms/step; draws ahead "
        f"in a background thread: {ahead})"
    )
    print(f"  same, drawing in the foreground: {1 / t_fg:8.1f} steps/s  ({1e3 * t_fg:.2f} ms/step)")
    print(f"reference trainer: {1 / t_ref:8.1f} steps/s  ({1e3 * t_ref:.2f} ms/step)")
    print(f"speed-up         : {t_ref / t_ours:8.2f} x   (goal >= 5)")
    print(
        f"drawing a step's random numbers (randn only): {1e3 * t_normals:.2f} ms = "
        f"{100 * t_normals / t_ours:.0f}% of a step; "
        f"step / draw = {t_ours / t_normals:.2f} (goal <= 2)"
    )
    print(
        f"building a step's prompts (randn + targets): {1e3 * t_draw:.2f} ms = "
        f"{100 * t_draw / t_ours:.0f}% of a step"
    )
    if args.authors_steps > 0:
        compare_with_token_projection(args.authors_steps, args.threads, ahead)


if __name__ == "__main__":
    main()
