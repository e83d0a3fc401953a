"""Training: determinism, resume after a kill, divergence, the record schedule, the risk's floor."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import xarray as xr
from conftest import ROOT, SCHEMA

from multihead_icl.config import load_schema, load_suite
from multihead_icl.data import TaskSpec, sample_eval_set
from multihead_icl.training import record_steps, train


def tiny_params(**overrides):
    run = {
        "tasks": 2,
        "task_dim": 2,
        "context_length": 12,
        "heads": 2,
        "init_scale": 0.05,
        "init_lead": 0.5,
        "batch_size": 32,
        "steps": 60,
        "record_points": 10,
        "eval_prompts": 64,
    }
    run.update(overrides)
    suite = load_suite({"experiments": {"t": {"base": run}}}, load_schema(SCHEMA))
    return suite.train_params("t/base")


def eval_set(params):
    return sample_eval_set(
        TaskSpec.from_params(params), params["eval_prompts"], params["eval_seed"]
    )


def data_only(ds):
    return ds.drop_attrs()


def test_same_seed_gives_identical_records_and_other_seed_differs():
    params = tiny_params()
    a = train(params, eval_set(params)).dataset
    b = train(params, eval_set(params)).dataset
    xr.testing.assert_identical(data_only(a), data_only(b))
    c = train({**params, "seed": 1}, eval_set(params)).dataset
    assert not np.allclose(a.W.values[-1], c.W.values[-1])


def test_contract_of_train_dataset():
    params = tiny_params(model="full", init="gaussian", init_scale=0.5)
    result = train(params, eval_set(params))
    ds = result.dataset
    assert ds.W.dims == ("time", "head", "x_row", "x_col") and ds.U.dims == (
        "time",
        "head",
        "y_row",
        "y_col",
    )
    for name in ("train_risk", "eval_risk", "eval_risk_se", "grad_norm"):
        assert ds[name].dims == ("time",) and np.isfinite(ds[name].values).all()
    np.testing.assert_allclose(ds.time.values, params["lr"] * ds.step.values)
    assert ds.step.values[0] == 0 and ds.step.values[-1] == params["steps"]
    assert json.loads(ds.attrs["config"]) == json.loads(json.dumps(params))
    assert ds.attrs["status"] in ("converged", "max_steps") and ds.attrs["device"] == "cpu"
    assert (ds.score_leak.values > 0).all()  # the full model's left-out blocks are reported


def test_eval_risk_has_the_noise_floor_at_zero_prediction():
    # W = U = 0 predicts 0, so the risk is E y_q^2 / task = kappa + sigma^2 = 1 + 0.09
    params = tiny_params(
        init_omega=[[0, 0], [0, 0]], init_mu=[[0, 0], [0, 0]], steps=1, eval_prompts=4000
    )
    ds = train(params, eval_set(params)).dataset
    risk, se = float(ds.eval_risk[0]), float(ds.eval_risk_se[0])
    assert abs(risk - 1.09) < 4 * se, (risk, se)


def test_record_schedule_is_log_spaced_and_complete():
    steps = record_steps(1000, 20)
    assert steps[0] == 0 and steps[-1] == 1000 and np.all(np.diff(steps) > 0)
    ratios = steps[2:] / steps[1:-1]
    assert ratios.max() < 2.5  # roughly geometric, no big gaps


def test_divergence_stops_cleanly_with_a_status_and_a_log_line(caplog):
    params = tiny_params(lr=1e4, init_scale=1.0, steps=200, record_points=200)
    with caplog.at_level("ERROR"):
        result = train(params, eval_set(params))
    assert result.status == "diverged" and result.dataset.attrs["status"] == "diverged"
    assert np.isfinite(result.dataset.eval_risk.values).all()  # never a file full of NaN
    assert any("diverged" in r.message for r in caplog.records)


def test_training_reduces_the_risk():
    params = tiny_params(steps=300, record_points=20)
    ds = train(params, eval_set(params)).dataset
    assert ds.eval_risk.values[-1] < 0.8 * ds.eval_risk.values[0]


def test_drawing_ahead_with_two_threads_trains_the_same_run():
    # two threads: batches are drawn in a background thread (stream.py); one: in the loop
    params = tiny_params()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        foreground = train(params, eval_set(params)).dataset
        torch.set_num_threads(2)
        ahead = train(params, eval_set(params)).dataset
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    xr.testing.assert_identical(data_only(foreground), data_only(ahead))


@pytest.mark.slow
@pytest.mark.parametrize(
    "threads", ["1", "2"]
)  # 2: the checkpoint is taken while the next batch is drawn ahead
def test_killed_run_resumes_from_checkpoint_and_ends_with_the_same_numbers(tmp_path, threads):
    params = tiny_params(steps=4000, record_points=40, batch_size=64)
    params_file = tmp_path / "run.json"
    params_file.write_text(json.dumps(params))
    data = tmp_path / "data.nc"
    cli = [sys.executable, "-m", "multihead_icl"]
    subprocess.run([*cli, "eval-set", str(params_file), str(data)], check=True, cwd=ROOT)

    reference = tmp_path / "reference.nc"
    subprocess.run(
        [*cli, "train", str(params_file), str(data), str(reference), "--threads", threads],
        check=True,
        cwd=ROOT,
    )

    output, checkpoint = tmp_path / "train.nc", tmp_path / "train.ckpt"
    train_cmd = [
        *cli,
        "--log",
        str(tmp_path / "log1"),
        "train",
        str(params_file),
        str(data),
        str(output),
        "--checkpoint",
        str(checkpoint),
        "--checkpoint-seconds",
        "0.2",
        "--threads",
        threads,
    ]
    proc = subprocess.Popen(train_cmd, cwd=ROOT)
    deadline = time.monotonic() + 60
    while not checkpoint.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    assert proc.poll() is None, "training finished before it could be killed; make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert checkpoint.exists() and not output.exists()
    saved_step = torch.load(checkpoint, weights_only=False)["step"]
    assert 0 < saved_step < params["steps"]

    train_cmd[4] = str(tmp_path / "log2")
    subprocess.run(train_cmd, check=True, cwd=ROOT)
    assert "resumed from checkpoint" in (tmp_path / "log2").read_text()
    assert not checkpoint.exists()  # removed once the output is complete
    with xr.open_dataset(output) as resumed, xr.open_dataset(reference) as uninterrupted:
        xr.testing.assert_identical(data_only(resumed.load()), data_only(uninterrupted.load()))
