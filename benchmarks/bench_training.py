"""Training throughput: the pipeline's trainer against a straightforward reference, in one run.

Setting of issue 2: I=3 tasks, d_i=4, H=3 heads, L=200, batch 1024, reduced model, plain GD.
The reference is what a first notebook would do: prompts built on the host with numpy every step,
a Python loop over heads, and a host synchronisation (loss.item()) every step. Also prints the
share of a step spent drawing its random numbers, the floor for online training.

    .venv/bin/python benchmarks/bench_training.py [--steps 60] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from multihead_icl.data import PromptSampler, TaskSpec
from multihead_icl.model import ReducedAttention, initialise
from multihead_icl.stream import PromptStream, draws_ahead_by_default
from multihead_icl.training import risk

SPEC = TaskSpec(task_dims=(4, 4, 4), noise_std=0.3, signal=(1.0, 1.0, 1.0), context_length=200)
HEADS, BATCH, LR = 3, 1024, 0.5


def pipeline_steps(steps: int, ahead: bool) -> float:
    """The loop of training.train, stripped of recording: the prompt stream (drawing ahead in a
    background thread when ``ahead``, as train does on a CPU with >= 2 threads), autograd, foreach update."""
    model = ReducedAttention(HEADS, SPEC.dim, SPEC.num_tasks)
    initialise(model, SPEC, "decomposable", 0.01, torch.Generator().manual_seed(0))
    params = list(model.parameters())
    sampler, gen = PromptSampler(SPEC), torch.Generator().manual_seed(1)
    with PromptStream(sampler, BATCH, gen, ahead=ahead) as stream:
        start = time.perf_counter()
        for _ in range(steps):
            p = stream.next()
            loss = risk(model(p.x, p.y, p.x_query), p.y_query)
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                torch._foreach_add_(params, grads, alpha=-LR)
        elapsed = time.perf_counter() - start
    return elapsed / steps


def sampling_only(steps: int) -> float:
    sampler, gen = PromptSampler(SPEC), torch.Generator().manual_seed(1)
    start = time.perf_counter()
    for _ in range(steps):
        sampler.sample(BATCH, gen)
    return (time.perf_counter() - start) / steps


def randn_only(steps: int) -> float:
    """Just the normal draws of one step (context+query covariates, coefficients, noise): the floor."""
    gen, d, tasks, length = torch.Generator().manual_seed(1), SPEC.dim, SPEC.num_tasks, SPEC.context_length
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
            y[:, :, i] = np.einsum("bld,bd->bl", x[:, :, 4 * i : 4 * i + 4], g) + 0.3 * rng.standard_normal((BATCH, length + 1))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ahead = draws_ahead_by_default(torch.device("cpu"))
    pipeline_steps(5, ahead), pipeline_steps(5, False), reference_steps(3), sampling_only(5)  # warm-up
    # interleave the measurements so machine noise hits both alike
    ours, foreground, ref, draw, normals = [], [], [], [], []
    for _ in range(3):
        ours.append(pipeline_steps(args.steps, ahead))
        foreground.append(pipeline_steps(args.steps, False))
        ref.append(reference_steps(max(args.steps // 3, 5)))
        draw.append(sampling_only(args.steps))
        normals.append(randn_only(args.steps))
    t_ours, t_fg, t_ref, t_draw, t_normals = min(ours), min(foreground), min(ref), min(draw), min(normals)
    print(f"setting: I=3, d_i=4, H={HEADS}, L=200, batch {BATCH}, reduced, GD, {args.threads} threads (best of 3)")
    print(f"pipeline trainer : {1 / t_ours:8.1f} steps/s  ({1e3 * t_ours:.2f} ms/step; draws ahead in a background thread: {ahead})")
    print(f"  same, drawing in the foreground: {1 / t_fg:8.1f} steps/s  ({1e3 * t_fg:.2f} ms/step)")
    print(f"reference trainer: {1 / t_ref:8.1f} steps/s  ({1e3 * t_ref:.2f} ms/step)")
    print(f"speed-up         : {t_ref / t_ours:8.2f} x   (goal >= 5)")
    print(f"drawing a step's random numbers (randn only): {1e3 * t_normals:.2f} ms = {100 * t_normals / t_ours:.0f}% of a step; "
          f"step / draw = {t_ours / t_normals:.2f} (goal <= 2)")
    print(f"building a step's prompts (randn + targets): {1e3 * t_draw:.2f} ms = {100 * t_draw / t_ours:.0f}% of a step")


if __name__ == "__main__":
    main()
