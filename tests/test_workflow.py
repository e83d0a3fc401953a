"""The workflow end to end on the tiny suite: outputs a third party can check, caching, lint."""

import re
import subprocess

import numpy as np
import pytest
import xarray as xr
import yaml
from conftest import ROOT, TINY_CONFIG, run_snakemake, snakemake_bin, tool

pytestmark = pytest.mark.slow


def softmax_predict(W, U, x, y, x_query):
    """The reduced model written independently in numpy (as a reader of the README would)."""
    scores = np.einsum("bli,hij,bj->bhl", x, W, x_query)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    return np.einsum("hij,bhj->bi", U, np.einsum("bhl,blj->bhj", weights, y))


def test_train_files_reproduce_their_eval_risk_with_independent_code(tiny_workdir):
    runs = sorted((tiny_workdir / "results" / "runs").glob("tiny/*/train.nc"))
    assert len(runs) == 2
    datasets = [
        p
        for p in (tiny_workdir / "results" / "data").glob("*.nc")
        if p.name.startswith("I2-d2-L16-")
    ]
    assert len(datasets) == 1  # both seeds share the evaluation set at the training length
    with xr.open_dataset(datasets[0]) as ev:
        assert set(ev.data_vars) >= {"x", "y", "x_query", "y_query", "coef"}
        x, y, xq, yq = (ev[v].values.astype(np.float64) for v in ("x", "y", "x_query", "y_query"))
    for path in runs:
        with xr.open_dataset(path) as run:
            W, U = run.W.isel(time=-1).values, run.U.isel(time=-1).values
            err = ((softmax_predict(W, U, x, y, xq) - yq) ** 2).mean()
            assert abs(err - float(run.eval_risk[-1])) < 1e-5 * max(1.0, err)
            assert run.attrs["status"] in ("converged", "max_steps")


def dry_run_jobs(workdir, config):
    proc = run_snakemake(workdir, "-n", config=config)
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, flags=re.M))
    return {k: int(v) for k, v in counts.items() if k != "total"}, proc.stdout


def test_nothing_to_do_after_a_run_and_one_parameter_change_reruns_only_that_run(tmp_path):
    config = {
        "defaults": yaml.safe_load(TINY_CONFIG.read_text())["defaults"],
        "experiments": {"a": {"base": {"seed": 0}}, "b": {"base": {"seed": 1}}},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    work = tmp_path / "work"
    run_snakemake(work, config=path)

    proc = run_snakemake(
        work, config=path
    )  # its speed is measured by bin/time-suite, not asserted here
    assert "Nothing to be done" in proc.stdout + proc.stderr

    config["experiments"]["b"]["base"]["lr"] = 0.25
    path.write_text(yaml.safe_dump(config))
    jobs, text = dry_run_jobs(work, path)
    assert jobs.get("train") == 1 and "eval_set" not in jobs, jobs
    assert "Training run b/base" in text and "Training run a/base" not in text
    assert "Params have changed" in text


def test_lint_and_format_are_clean():
    """Snakemake's linter and snakefmt on the workflow, ruff (lint and format) on the Python."""
    for command in (
        [snakemake_bin(), "--lint", "--cores", "1"],
        [tool("snakefmt"), "--check", "Snakefile", "workflow"],
        [tool("ruff"), "check", "."],
        [tool("ruff"), "format", "--check", "."],
    ):
        proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, " ".join(command[1:]) + "\n" + proc.stdout + proc.stderr


def test_length_generalisation_at_the_training_length_equals_the_training_eval_risk(tiny_workdir):
    for path in sorted((tiny_workdir / "results" / "runs").glob("*/*/lengths.nc")):
        with xr.open_dataset(path) as lengths, xr.open_dataset(path.with_name("train.nc")) as run:
            assert list(lengths.length.values) == [8, 16, 32]
            at_train = lengths.risk.sel(length=16).item()
            assert abs(at_train - float(run.eval_risk[-1])) < 1e-5
            assert np.all(lengths.risk_se.values > 0)
            assert np.all(np.isfinite(lengths.excess_risk.values))


def test_dry_runs_list_the_whole_chain_for_the_paper_suite_and_the_slurm_profile(tmp_path):
    from multihead_icl.config import load_suite_file
    from multihead_icl.layout import Layout

    jobs, _ = dry_run_jobs(tmp_path / "paper", ROOT / "config" / "paper.yaml")
    suite = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    paper = load_suite_file(ROOT / "config" / "paper.yaml")
    layout = Layout(paper)
    trained = len(set(paper.run_owner.values()))  # runs that train identically train once
    assert jobs["train"] == trained and jobs["spectral"] == len(layout.spectral_owners), jobs
    assert jobs.get("share_train", 0) == len(paper.runs) - trained
    assert jobs.get("share_spectral", 0) == len(layout.runs) - len(layout.spectral_owners)
    assert jobs["ablation"] == len(layout.ablation_runs) > 0
    assert jobs["optimality"] == sum(
        bool(e.get("optimality")) for e in suite["experiments"].values()
    )
    assert jobs["verdicts"] == 1 and any(name.startswith("figure_") for name in jobs)
    # an experiment's target builds that experiment only (`allocation` is also a figure kind of
    # other runs)
    default = load_suite_file(ROOT / "config.yaml")
    proc = run_snakemake(
        tmp_path / "one", "-n", "experiment_allocation", config=ROOT / "config.yaml"
    )
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, flags=re.M))
    assert int(counts["train"]) == len(default.experiments["allocation"]), counts
    # the SLURM profile parses and plans the same chain (a dry run needs no scheduler)
    proc = run_snakemake(
        tmp_path / "slurm",
        "-n",
        "--workflow-profile",
        str(ROOT / "profiles" / "slurm"),
        config=ROOT / "config.yaml",
    )
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, flags=re.M))
    trained = len(set(default.run_owner.values()))
    assert trained < len(default.runs)  # allocation/s0 = heads/H3 = context_length/L200 = ...
    owners = Layout(default).spectral_owners
    assert (
        int(counts["train"]) == trained
        and int(counts["spectral"]) == len(owners)
        and "verdicts" in counts
    ), counts
    assert int(counts["share_train"]) == len(default.runs) - trained, counts
    assert int(counts["flow"]) >= 1, counts


def test_dry_run_of_the_authors_full_size_suite(tmp_path):
    """config/official.yaml (made for a GPU or a cluster) plans every training, flow and the
    verdicts, in the authors' data: their blocks and kappa_i = d_i, a noiseless query."""
    from multihead_icl.config import load_suite_file
    from multihead_icl.tasks import TaskSpec

    official = load_suite_file(ROOT / "config" / "official.yaml")
    jobs, _ = dry_run_jobs(tmp_path / "official", ROOT / "config" / "official.yaml")
    assert jobs["train"] == len(set(official.run_owner.values())) and jobs["verdicts"] == 1, jobs
    flow_runs = [r for e in official.config["flow"]["experiments"] for r in official.experiments[e]]
    assert jobs["flow"] == len({official.run_owner[r] for r in flow_runs}), jobs
    for run_id, params in official.runs.items():
        spec = TaskSpec.from_params(params)
        assert spec.task_dims in ((16, 17, 17), (25, 25), (50,)) and spec.signal == tuple(
            map(float, spec.task_dims)
        ), run_id
        assert (
            spec.risk_floor == 0.0
            and params["batch_size"] == 10000
            and params["context_length"] == 100
        )


def test_the_rules_write_the_files_where_the_layout_says():
    """The rules spell their file patterns out (readable Snakemake); multihead_icl.layout is what
    the input functions and the CLI use: the two must name the same files."""
    from multihead_icl.config import load_suite_file
    from multihead_icl.layout import Layout

    layout = Layout(load_suite_file(TINY_CONFIG))
    rules = {p.stem: p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk")}
    for name in ("train", "spectral", "flow", "lengths"):
        pattern = f'"{layout.run_file("{run}", name)}"'
        assert any(pattern in text for text in rules.values()), pattern
    assert f'"{layout.optimality_file("{experiment}")}"' in rules["optimality"]
    assert f'"{layout.map_file("{experiment}")}"' in rules["regime_map"]
    assert f'"{layout.surrogate_file}"' in rules["spectral"]
    for path in layout.verdict_files.values():
        assert f'"{path}"' in rules["verdicts"], path
