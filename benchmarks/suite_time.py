"""Wall time of the suite per rule, from the benchmark files that every rule writes.

    .venv/bin/python benchmarks/suite_time.py [--root .]

Snakemake writes one `benchmarks/<rule>/<wildcards>.tsv` per job (columns s, max_rss, cpu_time,
...). This sums them per rule, so the slowest stage of a suite is visible; the suite's own wall time
is printed by bin/time-suite, which wraps a clean run with this table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd


def per_rule(root: Path) -> pd.DataFrame:
    rows = []
    for path in sorted((root / "benchmarks").glob("*/**/*.tsv")):
        rule = path.relative_to(root / "benchmarks").parts[0]
        table = pd.read_csv(path, sep="\t")
        rows.append(
            {
                "rule": rule,
                "job": str(path.relative_to(root / "benchmarks" / rule)),
                "s": float(table["s"].iloc[-1]),
                "cpu_s": float(table["cpu_time"].iloc[-1]),
                "max_rss_mb": float(table["max_rss"].iloc[-1]),
            }
        )
    if not rows:
        raise SystemExit(f"no benchmark files under {root / 'benchmarks'}: run the workflow first")
    jobs = pd.DataFrame(rows)
    summary = jobs.groupby("rule").agg(
        jobs=("s", "size"),
        wall_s_sum=("s", "sum"),
        wall_s_max=("s", "max"),
        cpu_s_sum=("cpu_s", "sum"),
        max_rss_mb=("max_rss_mb", "max"),
    )
    return summary.sort_values("wall_s_sum", ascending=False)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--root", type=Path, default=Path("."), help="the workflow's working directory"
    )
    args = parser.parse_args()
    summary = per_rule(args.root)
    print(summary.round(1).to_string())
    print(
        f"\nall jobs: {int(summary.jobs.sum())}, summed job wall time "
        f"{summary.wall_s_sum.sum():.0f} s, "
        f"summed CPU time {summary.cpu_s_sum.sum():.0f} s"
    )


if __name__ == "__main__":
    main()
