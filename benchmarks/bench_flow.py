"""Speed and Monte-Carlo error of the exact spectral flow (flow.py), measured in one run.

The setting of the default suite's allocation runs: I = 3 tasks of d_i = 4, L = 200, sigma = 0.3,
H = 3, init s = 0.01 with leaders (1.5x). On one thread it prints, for each sample size:
- the time of one risk gradient (hand-written chain rule) and of autograd on the same risk;
- the time of the flow through emergence (t <= 100) and to the long horizon (t = 1e4);
- the Monte-Carlo error: the largest |p_i(sample a) - p_i(sample b)| over t <= 100 between
  independent samples (all pairs of ``--seeds`` samples).

Goals (issue 12): through emergence <= 10 s, to 1e4 <= 120 s, with the sample size that puts the
Monte-Carlo error below 0.02 in p_i.

    python benchmarks/bench_flow.py [--samples 2048 4096] [--seeds 3]
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import torch

from multihead_icl.data import TaskSpec
from multihead_icl.flow import ExactRisk, flow_times, integrate_flow
from multihead_icl.model import initial_spectrum


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, nargs="+", default=[2048, 4096])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--horizon", type=float, default=1e4)
    parser.add_argument("--rtol", type=float, default=1e-3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = TaskSpec((4, 4, 4), 0.3, (1.0, 1.0, 1.0), 200)
    omega0, mu0 = initial_spectrum(spec, 3, 0.01, torch.Generator().manual_seed(1), lead=0.5)
    run_times = np.concatenate([[0.0], np.geomspace(0.5, 100.0, 60)])
    long_times = flow_times(run_times, args.horizon, 120)
    print(f"I = 3, d_i = 4, L = 200, H = 3, one thread, rtol {args.rtol:g}")
    for prompts in args.samples:
        risk = ExactRisk(spec, "softmax", prompts, seed=0)
        started = time.perf_counter()
        for _ in range(10):
            risk.gradient(omega0 * 10, mu0 * 10)
        hand = (time.perf_counter() - started) / 10
        w = torch.tensor(omega0 * 10, requires_grad=True)
        m = torch.tensor(mu0 * 10, requires_grad=True)
        started = time.perf_counter()
        for _ in range(3):
            torch.autograd.grad(risk.risk_tensor(w, m), (w, m))
        auto = (time.perf_counter() - started) / 3
        signals, short = [], []
        for seed in range(args.seeds):
            flow = integrate_flow(
                ExactRisk(spec, "softmax", prompts, seed=seed),
                omega0,
                mu0,
                run_times,
                args.rtol,
                args.rtol * 1e-3,
            )
            signals.append(flow.signal)
            short.append(flow.seconds)
        gaps = [float(np.abs(a - b).max()) for a, b in itertools.combinations(signals, 2)]
        long = integrate_flow(risk, omega0, mu0, long_times, args.rtol, args.rtol * 1e-3)
        print(
            f"{prompts:6d} prompts: gradient {hand * 1e3:6.1f} ms (autograd {auto * 1e3:6.1f} ms, "
            f"{auto / hand:.1f}x); "
            f"flow to t = 100 {np.median(short):5.1f} s (median of {len(short)}), to t = "
            f"{args.horizon:g} {long.seconds:6.1f} s "
            f"({long.evaluations} gradients); Monte-Carlo gap in p_i: median "
            f"{np.median(gaps):.3f}, largest {max(gaps):.3f} "
            f"over {len(gaps)} pairs"
        )


if __name__ == "__main__":
    main()
