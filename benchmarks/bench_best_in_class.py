"""Best-in-class search: wall time of one search and the stability of its answer across seeds.

Setting of issue 5: I=3 tasks, d_i=4, H=3 heads, L=200, sigma=0.3, reduced softmax attention, the
pipeline's default search settings (the schema defaults; override with --set key=value). For each
seed it runs what the optimality rule runs for one configuration - the single-head class, the
one-head-per-task class, then the H-head class warm-started from both - and prints the seconds of
each. Target: the H-head search <= 60 s on 2 threads.

Stability: each seed's answer is printed with its own fresh sample and SE; then every seed's best
point is re-measured on the fresh sample of the first seed (common prompts), so the difference
between seeds is the search's own variability, free of the sampling error of the report. The
search is stable when that difference is within the SE of one answer.

    .venv/bin/python benchmarks/bench_best_in_class.py [--threads 2] [--seeds 0 1] [--set
    restarts=8]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from multihead_icl.data import TaskSpec
from multihead_icl.optimality import BestInClass, SearchSettings

SPEC = TaskSpec(task_dims=(4, 4, 4), noise_std=0.3, signal=(1.0, 1.0, 1.0), context_length=200)
HEADS = 3


def parse_overrides(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, value = item.split("=", 1)
        out[key] = float(value) if "." in value or "e" in value else int(value)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument(
        "--set", nargs="*", default=[], help="search settings, e.g. samples=2048 restarts=8"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    overrides = parse_overrides(args.set)
    print(
        f"I={SPEC.num_tasks} d_i={SPEC.task_dims[0]} H={HEADS} L={SPEC.context_length} "
        f"sigma={SPEC.noise_std}; "
        f"{args.threads} threads; settings {SearchSettings.from_mapping(overrides)}"
    )

    searches, bests = [], []
    for seed in args.seeds:
        settings = SearchSettings.from_mapping({**overrides, "seed": seed})
        started = time.perf_counter()
        search = BestInClass(SPEC, settings)
        fits = search.classes(HEADS)
        total = time.perf_counter() - started
        fresh = search.fresh_excess(fits)
        print(
            f"\nseed {seed}: all three classes in {total:.1f} s "
            f"(single head {fits['single_head'].seconds:.1f} s, allocated "
            f"{fits['allocated'].seconds:.1f} s, "
            f"H={HEADS} best in class {fits['best_in_class'].seconds:.1f} s)"
        )
        for name, values in fresh.items():
            print(
                f"  excess {name:14s} {values.mean():.5f} +- "
                f"{values.std(ddof=1) / math.sqrt(len(values)):.5f}  (own fresh sample)"
            )
        best = fits["best_in_class"]
        print(
            f"  best omega (head x task):\n{np.array2string(best.omega, precision=3)}\n  "
            f"mu:\n{np.array2string(best.mu, precision=2)}"
        )
        searches.append(search)
        bests.append(best)

    common = searches[0].fresh_excess({f"seed {s}": fit for s, fit in zip(args.seeds, bests)})
    reference = common[f"seed {args.seeds[0]}"]
    se = reference.std(ddof=1) / math.sqrt(len(reference))
    print(
        f"\nbest points of every seed on the fresh sample of seed {args.seeds[0]} (SE of one "
        f"answer {se:.5f}):"
    )
    for name, values in common.items():
        diff = values - reference
        print(
            f"  {name}: {values.mean():.5f}; minus seed {args.seeds[0]}: {diff.mean():+.5f} +- "
            f"{diff.std(ddof=1) / math.sqrt(len(diff)):.5f}"
            f"  -> {'within' if abs(diff.mean()) <= se else 'OUTSIDE'} one SE"
        )


if __name__ == "__main__":
    main()
