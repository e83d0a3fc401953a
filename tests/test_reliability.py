"""Mistakes and faults a researcher meets: each bad input stops before any job with one line naming
the key; a diverged run flows through every stage into the report; a crash leaves its traceback in
the job log; damaged checkpoints and netCDF files are set aside, never deleted, and rebuilt."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from conftest import REPORT_STYLESHEET, ROOT, TINY_CONFIG, run_snakemake

from multihead_icl import io
from multihead_icl.training import DIVERGENCE_FACTOR, divergence, train

TINY = yaml.safe_load(TINY_CONFIG.read_text())


def tiny_with(**defaults) -> dict:
    return {"defaults": {**TINY["defaults"], **defaults}, "experiments": {"a": {}}}


# (name, config text or dict, the message's start after "Config error: ")
BAD_INPUTS = [
    (
        "duplicate key",
        "defaults:\n  lr: 0.5\n  lr: 0.7\nexperiments:\n  a: {}\n",
        "key 'lr' is given twice (lines 2 and 3)",
    ),
    ("nan lr", tiny_with(lr=float("nan")), "defaults.lr: must be a finite number, got nan"),
    (
        "inf noise",
        tiny_with(noise_std=float("inf")),
        "defaults.noise_std: must be a finite number, got inf",
    ),
    ("unknown device", tiny_with(device="gpu"), "defaults.device: 'gpu' does not match"),
    (
        "steps beyond bound",
        tiny_with(steps=10**12),
        "defaults.steps: 1000000000000 is greater than the maximum",
    ),
    (
        "context length beyond bound",
        tiny_with(context_length=10**9),
        "defaults.context_length: 1000000000 is greater than the maximum",
    ),
    (
        "memory",
        tiny_with(batch_size=9_000_000, context_length=200),
        "a/base: a training step needs about",
    ),
    (
        "figure typo",
        {**tiny_with(), "figures": {"allocation": "allocaton"}},
        "figures.allocation: 'allocaton' names no experiment",
    ),
    (
        "optimality figure without file",
        {**tiny_with(), "figures": {"optimality": ["a"]}},
        "figures.optimality: experiment 'a' has no optimality file",
    ),
    (
        "setting typo",
        {**tiny_with(), "settings": {"other": {"alocation": "a"}}},
        "settings.other: unknown key 'alocation'",
    ),
    (
        "empty grid",
        {**tiny_with(), "experiments": {"a": {"grid": {"seed": []}}}},
        "experiments.a.grid.seed",
    ),
]
if not torch.cuda.is_available():
    BAD_INPUTS.append(
        (
            "cuda without CUDA",
            tiny_with(device="cuda"),
            "a/base.device: cuda, but torch sees no CUDA device",
        )
    )


@pytest.mark.parametrize("name, config, message", BAD_INPUTS, ids=[case[0] for case in BAD_INPUTS])
def test_a_bad_input_stops_the_dry_run_with_one_line(name, config, message, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    proc = run_snakemake(tmp_path / "work", "-n", config=path, check=False)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Config error:")]
    assert proc.returncode != 0 and len(errors) == 1, proc.stderr[-2000:]
    assert message in errors[0], errors[0]
    assert "Traceback" not in proc.stderr and not (tmp_path / "work" / "results").exists()


def test_more_records_than_steps_is_a_one_line_warning(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(tiny_with(steps=10, record_points=50)))
    proc = run_snakemake(tmp_path / "work", "-n", config=path, check=False)
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("Config warning:")]
    assert proc.returncode == 0 and warnings == [
        "Config warning: experiments.a.base.record_points: 50 records asked for steps = 10; "
        "every step is recorded (11 records)"
    ], proc.stderr[-1500:]


def test_jobs_elsewhere_skips_the_checks_of_this_machine(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(tiny_with(batch_size=9_000_000, context_length=200)))
    env_before = os.environ.get("MULTIHEAD_ICL_JOBS_ELSEWHERE")
    os.environ["MULTIHEAD_ICL_JOBS_ELSEWHERE"] = "1"
    try:
        proc = run_snakemake(tmp_path / "work", "-n", config=path, check=False)
    finally:
        if env_before is None:
            del os.environ["MULTIHEAD_ICL_JOBS_ELSEWHERE"]
        else:
            os.environ["MULTIHEAD_ICL_JOBS_ELSEWHERE"] = env_before
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_divergence_is_a_bound_not_only_a_nan():
    assert divergence(float("nan"), 1.0) and divergence(float("inf"), None)
    assert divergence(2e19, 1.0)  # finite, but far beyond where it started (the lr = 2 case)
    assert not divergence(0.9 * DIVERGENCE_FACTOR, 1.0) and not divergence(5.0, None)


def test_a_suite_with_diverging_runs_builds_its_report(tmp_path):
    """One run diverges at step 1 (lr 1e20), one from the start (init 1e20): every stage, the
    optimality file, the figures, the verdicts and the report complete; the report names them."""
    config = {
        "defaults": {**TINY["defaults"], "steps": 20, "record_points": 8},
        "experiments": {
            "ok": {"optimality": True, "base": {"init_lead": 0.5}},
            "boom": {"optimality": True, "base": {"lr": 1e20, "init_lead": 0.5}},
            "boom0": {"base": {"init_scale": 1e20}},
        },
        "figures": {
            "runs": ["ok/base", "boom/base", "boom0/base"],
            "allocation": ["ok", "boom"],
            "optimality": ["ok", "boom"],
            "winner": None,
        },
        "flow": {
            "experiments": ["ok", "boom", "boom0"],
            "samples": 64,
            "horizon": 50,
            "record_points": 10,
            "gd_horizon": 2,
        },
        "optimality": {**TINY["optimality"]},
        "spectral": TINY["spectral"],
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    work = tmp_path / "work"
    run_snakemake(work, config=path)
    run_snakemake(
        work,
        "--report",
        str(work / "report.html"),
        "--report-stylesheet",
        str(REPORT_STYLESHEET),
        config=path,
    )
    results = work / "results"
    for run in ("boom/base", "boom0/base"):
        with io.load_dataset(results / "runs" / run / "train.nc") as ds:
            assert ds.attrs["status"] == "diverged"
    summary = json.loads((results / "figures" / "verdicts.json").read_text())
    assert [note.split()[0] for note in summary["diverged"]] == ["boom/base", "boom0/base"]
    assert "boom/base diverged at step 1" in summary["diverged"][0]
    risk = json.loads((results / "figures" / "boom" / "base" / "risk.json").read_text())
    assert "Training diverged" in risk["unavailable"]
    for kind in ("flow", "limit"):  # figures of the exact flow of an experiment whose runs diverged
        assert (
            "Training diverged"
            in json.loads((results / "figures" / "boom" / f"{kind}.json").read_text())[
                "unavailable"
            ]
        )
    optimality = json.loads((results / "figures" / "boom" / "optimality.json").read_text())
    assert "has a trained limit (every run of it diverged)" in optimality["unavailable"]
    assert (
        "diverged run(s), left out of every verdict"
        in (results / "figures" / "verdicts.html").read_text()
    )
    assert (work / "report.html").stat().st_size > 0


def test_an_uncaught_exception_lands_in_the_job_log(tmp_path):
    log = tmp_path / "job.log"
    code = (
        "from multihead_icl.logs import "
        f"setup_job_logging\nsetup_job_logging({str(log)!r})\nraise ValueError('boom in a job')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode != 0
    text = log.read_text()
    assert "the job failed: ValueError: boom in a job" in text and "Traceback" in text


def test_a_damaged_checkpoint_is_set_aside_and_training_starts_over(tmp_path, caplog):
    from conftest import SCHEMA

    from multihead_icl.config import load_suite_file
    from multihead_icl.data import TaskSpec, sample_eval_set

    params = load_suite_file(TINY_CONFIG, SCHEMA).runs["tiny/s0"]
    eval_set = sample_eval_set(TaskSpec.from_params(params), 16, 1)
    checkpoint = tmp_path / "train.ckpt"
    checkpoint.write_bytes(b"PK\x03\x04 not a checkpoint")
    with caplog.at_level("WARNING"):
        result = train(params, eval_set, checkpoint=checkpoint)
    clean = train(params, eval_set)
    assert result.status == clean.status and np.array_equal(
        result.dataset["W"].values, clean.dataset["W"].values
    )
    assert (tmp_path / "train.ckpt.damaged").read_bytes().startswith(b"PK")
    assert "cannot be resumed" in caplog.text
    # a readable checkpoint with this run's fingerprint but another layout (a missing key): set
    # aside too
    from multihead_icl.training import _fingerprint

    torch.save({"fingerprint": _fingerprint(params), "model": {}}, checkpoint)
    again = train(params, eval_set, checkpoint=checkpoint)
    assert np.array_equal(again.dataset["W"].values, clean.dataset["W"].values)
    assert (tmp_path / "train.ckpt.damaged1").exists()


def test_a_damaged_netcdf_is_set_aside_with_one_line_and_rebuilt(tmp_path):
    """Truncated: the reader names the file and moves it aside; `verify` finds such files before a
    stage trips on them; the next snakemake run rebuilds the missing output."""
    from multihead_icl import cli

    work = tmp_path / "work"
    config = {
        "defaults": {**TINY["defaults"], "steps": 10, "record_points": 4},
        "experiments": {"a": {}},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    run_snakemake(work, "--printshellcmds", "results/runs/a/base/spectral.nc", config=path)
    train_file = work / "results" / "runs" / "a" / "base" / "train.nc"
    intact = io.load_dataset(train_file)
    train_file.write_bytes(train_file.read_bytes()[:300])  # truncated
    with pytest.raises(
        io.DamagedFileError,
        match=r"train\.nc: damaged, cannot be read as netCDF .*moved to train\.nc\.damaged; run "
        r"snakemake again",
    ):
        io.load_dataset(train_file)
    assert (
        not train_file.exists()
        and (work / "results" / "runs" / "a" / "base" / "train.nc.damaged").exists()
    )
    run_snakemake(
        work, config=path
    )  # the default target: the missing output is trained again, and what reads it redone
    assert os.path.getmtime(
        work / "results" / "runs" / "a" / "base" / "spectral.nc"
    ) >= os.path.getmtime(train_file)
    np.testing.assert_array_equal(io.load_dataset(train_file)["W"].values, intact["W"].values)
    spectral = work / "results" / "runs" / "a" / "base" / "spectral.nc"
    spectral.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    assert cli.main(["verify", str(work / "results")]) == 1
    assert not spectral.exists() and cli.main(["verify", str(work / "results")]) == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--configfile", "missing.yaml"], "--configfile missing.yaml: no such file"),
        (["--config", "heads"], "--config heads: expected KEY=VALUE"),
    ],
)
def test_the_pipeline_wrapper_answers_snakemake_argument_mistakes_in_one_line(args, message):
    proc = subprocess.run(
        [str(ROOT / "bin" / "pipeline"), "-n", *args], capture_output=True, text=True, cwd=ROOT
    )
    assert (
        proc.returncode == 1 and proc.stderr.strip().splitlines()[-1] == f"Config error: {message}"
    )
