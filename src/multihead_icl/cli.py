"""Command line for every stage without Snakemake (debugging one run, notebooks, other drivers).

One run:
  multihead-icl runs config.yaml                     # list run ids with their datasets
  multihead-icl params config.yaml RUN_ID > run.json # one run's resolved parameters
  multihead-icl eval-set run.json data.nc
  multihead-icl train run.json data.nc train.nc [--checkpoint train.ckpt]
  multihead-icl spectral train.nc data.nc spectral.nc [--config config.yaml]
  multihead-icl flow spectral.nc flow.nc [--config config.yaml]   # the exact spectral flow
  multihead-icl ablation train.nc data.nc ablation.nc   # head ablation, any model (question Q1)
A suite's results folder (the workflow's layout: results/runs/<run>/train.nc, ...):
  multihead-icl surrogate config.yaml [--results results]          # the surrogate check
  multihead-icl optimality config.yaml EXPERIMENT [--results results]
  multihead-icl figure config.yaml KIND [TARGET] [--results results]
  multihead-icl verdicts config.yaml [--results results]           # verdict table and JSON
  multihead-icl report config.yaml [--results results]   # every figure, the verdicts, the tables
  multihead-icl tables [results]                     # verdicts and optimality as CSV and LaTeX
  multihead-icl verify [results]                     # set damaged netCDF files aside for a rebuild
  multihead-icl compare results_a results_b [--json diff.json]   # what differs between two suites
The HTML report with captions is Snakemake's: snakemake --report results/report.html.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .config import SCHEMA_PATH, ConfigError, load_suite_file, load_yaml_strictly, with_defaults
from .io import DamagedFileError
from .logs import setup_job_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="multihead-icl",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--schema",
        type=Path,
        default=SCHEMA_PATH,
        help="config schema (default: the one shipped with the package)",
    )
    parser.add_argument("--log", type=Path, default=None, help="log file (default: stderr)")
    sub = parser.add_subparsers(dest="command", required=True)
    runs = sub.add_parser("runs", help="list the runs of a config")
    runs.add_argument("config", type=Path)
    params = sub.add_parser("params", help="print one run's resolved parameters as JSON")
    params.add_argument("config", type=Path)
    params.add_argument("run_id")
    ev = sub.add_parser("eval-set", help="write the evaluation set for a run's parameters")
    ev.add_argument("params", type=Path)
    ev.add_argument("output", type=Path)
    tr = sub.add_parser("train", help="train one run")
    tr.add_argument("params", type=Path)
    tr.add_argument("eval_set", type=Path)
    tr.add_argument("output", type=Path)
    tr.add_argument("--checkpoint", type=Path, default=None)
    tr.add_argument("--checkpoint-seconds", type=float, default=60.0)
    tr.add_argument("--threads", type=int, default=1)
    sp = sub.add_parser("spectral", help="the spectral read-out of one run (spectral.nc)")
    sp.add_argument("train", type=Path)
    sp.add_argument("eval_set", type=Path)
    sp.add_argument("output", type=Path)
    sp.add_argument(
        "--config",
        type=Path,
        default=None,
        help="take the `spectral` section from this config (default: the schema's defaults)",
    )
    ab = sub.add_parser("ablation", help="the head-ablation read-out of one run (ablation.nc)")
    ab.add_argument("train", type=Path)
    ab.add_argument("eval_set", type=Path)
    ab.add_argument("output", type=Path)
    ab.add_argument("--threads", type=int, default=1)
    fl = sub.add_parser(
        "flow", help="the exact spectral flow of one run (flow.nc) from its spectral.nc"
    )
    fl.add_argument("spectral", type=Path)
    fl.add_argument("output", type=Path)
    fl.add_argument(
        "--config",
        type=Path,
        default=None,
        help="take the `flow` section from this config (default: the schema's defaults)",
    )
    fl.add_argument("--threads", type=int, default=1)
    tb = sub.add_parser(
        "tables", help="the verdict and optimality tables (CSV, LaTeX) of a results folder"
    )
    tb.add_argument("results", type=Path, nargs="?", default=Path("results"))
    cmp_ = sub.add_parser(
        "compare", help="what differs between two results folders (Markdown; --json for JSON)"
    )
    cmp_.add_argument("first", type=Path)
    cmp_.add_argument("second", type=Path)
    cmp_.add_argument(
        "--json", type=Path, default=None, help="also write the comparison as JSON here"
    )
    for name, help_text in (
        ("surrogate", "the Monte-Carlo check of the finite-L risk surrogate"),
        ("optimality", "one experiment's optimality file from its runs' train.nc (and flow.nc)"),
        ("figure", "one figure of the report plan and its JSON summary"),
        ("verdicts", "the verdict table (HTML) and verdicts.json from every run's files"),
        ("report", "every figure of the plan, the verdicts and the tables from the run files"),
    ):
        stage = sub.add_parser(name, help=help_text)
        stage.add_argument("config", type=Path, help="the suite's config file")
        if name == "optimality":
            stage.add_argument("experiment")
        if name == "figure":
            stage.add_argument("kind")
            stage.add_argument(
                "target", nargs="?", default="suite", help="run, experiment or suite"
            )
        stage.add_argument("--results", type=Path, default=Path("results"))
        if name in ("surrogate", "optimality"):  # the stages that compute with torch threads
            stage.add_argument("--threads", type=int, default=1)
    ve = sub.add_parser(
        "verify",
        help="open every netCDF file below a folder; set damaged ones aside so that snakemake "
        "rebuilds them",
    )
    ve.add_argument("folder", type=Path, nargs="?", default=Path("results"))
    args = parser.parse_args(argv)
    setup_job_logging(args.log)

    from . import stages  # torch import only for the commands that need it

    try:
        if args.command in ("runs", "params"):
            suite = load_suite_file(args.config, args.schema)
            if args.command == "runs":
                for run_id in suite.runs:
                    print(run_id, suite.run_dataset[run_id])
            elif args.run_id not in suite.runs:
                raise ConfigError(
                    f"no run {args.run_id!r} in {args.config}; see `multihead-icl runs`"
                )
            else:
                print(json.dumps(suite.runs[args.run_id], indent=2))
        elif args.command in ("spectral", "flow"):
            config = (load_yaml_strictly(args.config) or {}) if args.config else {}
            settings = with_defaults(args.command, config.get(args.command))
            if args.command == "spectral":
                stages.spectral(args.train, args.eval_set, args.output, settings)
            else:
                stages.flow(args.spectral, args.output, settings, args.threads)
        elif args.command == "ablation":
            stages.ablation(args.train, args.eval_set, args.output, args.threads)
        elif args.command in ("surrogate", "optimality", "figure", "verdicts", "report"):
            for path in _suite_stage(args, stages):
                print(path)
        elif args.command == "tables":
            from .tables import write_tables

            optimality = {
                path.stem: path for path in sorted((args.results / "optimality").glob("*.nc"))
            }
            for path in write_tables(
                args.results / "figures" / "verdicts.json", optimality, args.results / "tables"
            ):
                print(path)
        elif args.command == "compare":
            from .tables import compare, compare_markdown, jsonable_compare

            result = compare(args.first, args.second)
            print(compare_markdown(result))
            if args.json:
                args.json.write_text(jsonable_compare(result))
        elif args.command == "verify":
            from .io import verify_tree

            damaged = verify_tree(args.folder)
            for line in damaged:
                print(line)
            print(
                f"{len(damaged)} damaged netCDF file(s) below {args.folder}"
                + ("; run snakemake to rebuild them" if damaged else "")
            )
            return 1 if damaged else 0
        elif args.command == "eval-set":
            stages.make_eval_set(json.loads(args.params.read_text()), args.output)
        elif args.command == "train":
            status = stages.train_run(
                json.loads(args.params.read_text()),
                args.eval_set,
                args.output,
                args.threads,
                args.checkpoint,
                args.checkpoint_seconds,
            )
            print(status)
    except ConfigError as error:
        print(f"Config error: {error}", file=sys.stderr)
        return 2
    except DamagedFileError as error:
        print(f"Damaged input: {error}", file=sys.stderr)
        return 2
    except FileNotFoundError as error:
        print(f"Not found: {error.filename or error}", file=sys.stderr)
        return 2
    return 0


def _suite_stage(args: argparse.Namespace, stages: Any) -> list[str]:
    """Run a stage of a whole suite on its results folder; returns the files written."""
    from .layout import Layout

    try:  # a config that names what it does not have: one line, like the workflow's
        layout = Layout(load_suite_file(args.config, args.schema), str(args.results))
        plan = layout.figure_plan()
        if args.command == "optimality":
            call = layout.optimality_call(args.experiment)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if args.command == "surrogate":
        stages.surrogate_check(
            layout.suite.config["spectral"]["surrogate_check"], layout.surrogate_file, args.threads
        )
        return [layout.surrogate_file]
    if args.command == "optimality":
        stages.optimality(**call, threads=args.threads)
        return [call["output"]]
    all_figures = plan
    if args.command == "figure":
        plan = [s for s in plan if s.kind == args.kind and s.target == args.target]
        if not plan:
            known = ", ".join(f"{s.kind} {s.target}" for s in all_figures)
            raise ConfigError(
                f"no figure {args.kind} {args.target} in this config's plan ({known})"
            )
    written = []
    if args.command in ("figure", "report"):
        for spec in plan:
            stages.plot_figure(**layout.figure_call(spec))
            written += [spec.path, spec.summary]
    if args.command in ("verdicts", "report"):
        stages.write_verdicts(**layout.verdict_call(all_figures))
        written += list(layout.verdict_files.values())
    if args.command == "report":
        from .tables import write_tables

        optimality = {n: layout.optimality_file(n) for n in layout.optimality_experiments}
        written += [
            str(p)
            for p in write_tables(
                layout.verdict_files["summary"], optimality, Path(layout.root) / "tables"
            )
        ]
    return written


if __name__ == "__main__":
    sys.exit(main())
