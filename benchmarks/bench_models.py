"""What a training step costs for each model of question Q1, in one run: the one-layer model
against the pre-norm transformer at 1 and 2 layers, and what one evaluation of the fixed set and
one head-ablation read-out cost beside it (the suite's budget is spent on these).

Sizes: the default suite's `transformer` experiment (I = 3, d_i = 4, H = 3, L = 50, batch 64,
width 24) and the paper suite's (L = 200, batch 256, width 66), on the CPU, `torch.set_num_threads`
as given. Prints milliseconds a step and the ratio to the one-layer model.

    .venv/bin/python benchmarks/bench_models.py [--steps 20] [--threads 1] [--paper]
"""

from __future__ import annotations

import argparse
import time

import torch

from multihead_icl.ablation import risk_increase
from multihead_icl.config import complete_run
from multihead_icl.data import PromptSampler, TaskSpec, sample_eval_set
from multihead_icl.model import initialise, model_from_params
from multihead_icl.training import evaluate, risk


def step_ms(params: dict, spec: TaskSpec, batch: int, steps: int) -> float:
    """Milliseconds an Adam step of the model takes on fresh prompts (prompts drawn outside)."""
    params = complete_run(params)
    model = model_from_params(params, spec.dim, spec.num_tasks)
    initialise(model, spec, str(params["init"]), 0.01, torch.Generator().manual_seed(0))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    sampler, gen = PromptSampler(spec), torch.Generator().manual_seed(1)
    batches = [sampler.sample(batch, gen) for _ in range(steps + 2)]
    for k, p in enumerate(batches):
        if k == 2:
            start = time.perf_counter()
        optimizer.zero_grad()
        risk(model(p.x, p.y, p.x_query), p.y_query).backward()
        optimizer.step()
    return 1000 * (time.perf_counter() - start) / steps


def readout_ms(params: dict, spec: TaskSpec, prompts: int) -> tuple[float, float]:
    """Milliseconds of one evaluation of ``prompts`` evaluation prompts and of one head-ablation
    read-out of them (every head off in turn), in float32 as the pipeline does both."""
    params = complete_run(params)
    model = model_from_params(params, spec.dim, spec.num_tasks)
    initialise(model, spec, str(params["init"]), 0.01, torch.Generator().manual_seed(0))
    eval_set = sample_eval_set(spec, prompts, seed=3)
    start = time.perf_counter()
    evaluate(model, eval_set)
    middle = time.perf_counter()
    risk_increase(model, eval_set)
    return 1000 * (middle - start), 1000 * (time.perf_counter() - middle)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--paper", action="store_true", help="also the paper suite's sizes")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [("default suite", 50, 64, 24, 2048)]
    if args.paper:
        sizes.append(("paper suite", 200, 256, 66, 8192))
    for label, length, batch, width, prompts in sizes:
        spec = TaskSpec((4, 4, 4), 0.3, (1.0, 1.0, 1.0), length)
        models = {
            "one-layer (reduced)": {"model": "reduced", "init": "decomposable"},
            "transformer, 1 layer": {"model": "transformer", "init": "pytorch", "layers": 1},
            "transformer, 2 layers": {"model": "transformer", "init": "pytorch", "layers": 2},
        }
        print(f"\n{label}: I = 3, d_i = 4, H = 3, L = {length}, batch {batch}, width {width}")
        print(
            f"{'model':24s} {'ms/step':>9s} {'x one-layer':>12s} {'eval ms':>9s} {'ablate ms':>10s}"
        )
        base = None
        for name, params in models.items():
            params = {**params, "width": width, "mlp_width": 4 * width, "heads": 3}
            ms = step_ms(params, spec, batch, args.steps)
            base = base or ms
            evaluation, ablation = readout_ms(params, spec, prompts)
            print(f"{name:24s} {ms:9.1f} {ms / base:12.1f} {evaluation:9.0f} {ablation:10.0f}")


if __name__ == "__main__":
    main()
