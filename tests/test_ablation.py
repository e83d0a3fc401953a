"""Head ablation against the spectral read-out, exactly where it must agree and to first order
where the theory says it does (docs/science.md §11); its file and the Q1 verdict."""

import numpy as np
import pytest
import torch
import xarray as xr

from multihead_icl.ablation import analyse_ablation, model_at_snapshot, risk_increase
from multihead_icl.allocation import ablation_share, allocation_share, winner_and_purity
from multihead_icl.config import complete_run
from multihead_icl.data import TaskSpec, sample_eval_set
from multihead_icl.measurements import RunData, measure_practical
from multihead_icl.model import ReducedAttention, decomposable_weights
from multihead_icl.training import evaluate, train
from multihead_icl.verdicts import FAILS, HOLDS, INCONCLUSIVE, PARTLY, verdict_q1

SPEC = TaskSpec(task_dims=(3, 3, 3), noise_std=0.3, signal=(1.0, 1.0, 1.0), context_length=200)
TH = {"purity": 0.8}


def decomposable_model(omega, mu, normalise="softmax", spec=SPEC):
    model = ReducedAttention(omega.shape[0], spec.dim, spec.num_tasks, normalise).double()
    weight, value = decomposable_weights(spec, omega, mu)
    with torch.no_grad():
        model.W.copy_(torch.from_numpy(weight))
        model.U.copy_(torch.from_numpy(value))
    return model


def at_optimal_task_scale(omega, mu, prompts, normalise="softmax"):
    """mu with each task's writers rescaled together so that the task's prediction sits at its
    least-squares scale on ``prompts`` (where a trained model is, to first order)."""
    model = decomposable_model(omega, mu, normalise)
    with torch.no_grad():
        p = prompts.to("cpu", torch.float64)
        pred = model(p.x, p.y, p.x_query)
        scale = (pred * p.y_query).sum(0) / pred.square().sum(0)
    return mu * scale.numpy()[None, :]


def test_a_head_that_does_not_write_a_task_leaves_its_risk_unchanged_exactly():
    """mu_hi = 0: switching head h off cannot move task i's prediction, so with one writer per
    task the ablation shares are one-hot and equal the spectral shares, to the last bit."""
    rng = np.random.default_rng(0)
    omega = rng.uniform(0.2, 1.5, size=(4, 3))  # every head attends to every block
    mu = np.zeros((4, 3))
    writer = [2, 0, 3]  # task i is written by head writer[i]; head 1 writes nothing
    for task, head in enumerate(writer):
        mu[head, task] = rng.uniform(0.5, 1.5)
    prompts = sample_eval_set(SPEC, 256, seed=1)
    mu = at_optimal_task_scale(omega, mu, prompts)  # each writer then lowers its task's risk
    measured = risk_increase(decomposable_model(omega, mu), prompts)
    share = ablation_share(measured["increase"][0])
    np.testing.assert_array_equal(share, allocation_share(omega, mu))
    assert winner_and_purity(share)[0].tolist() == writer
    assert np.all(measured["increase"][0][1] == 0.0)  # the head that writes nothing


@pytest.mark.parametrize(
    "normalise,low,high",
    [("linear", 0.01, 0.05), ("softmax", 0.15, 0.3)],
    ids=["linear", "softmax"],
)
def test_ablation_shares_match_spectral_shares_at_the_optimal_task_scale(normalise, low, high):
    """Every task at its optimal output scale: dR_hi = (mu_hi omega_hi)^2 E[s_i^2] up to
    cross-block terms of order d / L, so the ablation and spectral shares agree to a few
    hundredths for a mixed allocation. Softmax adds the context mean ybar_i to every head's output
    (order L^-1/2 = 0.07 here), which the spectral share leaves out: the two agree once
    omega >> L^-1/2 and while omega^2 d_i is small (docs/science.md §11)."""
    rng = np.random.default_rng(3)
    omega = rng.uniform(low, high, size=(3, 3))
    mu = rng.uniform(0.2, 1.0, size=(3, 3))
    prompts = sample_eval_set(SPEC, 4096, seed=2)
    mu = at_optimal_task_scale(omega, mu, prompts, normalise)
    model = decomposable_model(omega, mu, normalise)
    share = ablation_share(risk_increase(model, prompts)["increase"][0])
    spectral = allocation_share(omega, mu)
    assert np.max(np.abs(share - spectral)) < 0.05, (share, spectral)
    assert not np.allclose(spectral, np.eye(3), atol=0.2)  # a genuinely mixed allocation


def _tiny_run(**overrides):
    params = complete_run(
        {
            "tasks": 2,
            "task_dim": 2,
            "heads": 2,
            "context_length": 10,
            "batch_size": 16,
            "steps": 20,
            "record_points": 5,
            "optimizer": "adam",
            "lr": 0.01,
            "width": 4,
            "mlp_width": 8,
            **overrides,
        }
    )
    spec = TaskSpec.from_params(params)
    prompts = sample_eval_set(spec, 64, seed=4)
    return train(params, prompts).dataset, prompts


@pytest.mark.parametrize(
    "overrides",
    [
        {"model": "reduced"},
        {"model": "transformer", "init": "pytorch"},
        {"model": "transformer", "init": "pytorch", "data": "diabetes", "context_length": 12},
    ],
    ids=["reduced", "transformer", "transformer-real-data"],
)
def test_train_nc_keeps_parameter_snapshots_and_ablation_nc_reads_them(overrides):
    """The last parameter snapshot rebuilds the trained model: its risk on the evaluation set is
    train.nc's last eval_risk; ablation.nc has one share matrix per layer, over training too, and
    the baselines on the same set."""
    if overrides.get("data") == "diabetes":
        overrides = {**overrides, "tasks": 2, "task_dim": 4}
    ds, prompts = _tiny_run(**overrides)
    model = model_at_snapshot(ds)
    risk = float(evaluate(model, prompts)[0])
    assert risk == pytest.approx(float(ds["eval_risk"].values[-1]), rel=1e-5)
    ab = analyse_ablation(ds, prompts)
    layers = 2 if overrides["model"] == "transformer" else 1
    assert ab.sizes["layer"] == layers and ab.sizes["head"] == 2
    assert ab.sizes["snapshot"] == ds.sizes["snapshot"] and ab["snapshot_step"].values[-1] == 20
    assert float(ab["risk_over_time"].values[0].mean()) != pytest.approx(risk)  # it trained
    assert float(ab["risk"].mean()) == pytest.approx(risk, rel=1e-6)
    assert set(ab["baseline"].values) == {"ols_block", "ridge_tuned", "ols_full", "zero"}
    assert ("spectral_share" in ab) == (overrides["model"] == "reduced")
    ridge = ab["baseline_risk"].sel(baseline="ridge_tuned").values
    ols = ab["baseline_risk"].sel(baseline="ols_block").values
    assert np.all(ridge <= ols * (1 + 1e-3))  # the grid reaches lambda = 1e-3, next to OLS


def _ablation_file(increase, se, over_time=None, risk=0.2):
    increase = np.asarray(increase, dtype=float)
    increase = increase[None] if increase.ndim == 2 else increase  # (layer, head, task)
    se = np.broadcast_to(np.asarray(se, dtype=float), increase.shape)
    share = ablation_share(increase)
    winner, purity = winner_and_purity(share)
    dims = ("layer", "head", "task")
    extra = {}
    if over_time is not None:  # increases at each snapshot over training
        increase_t = np.asarray(over_time, dtype=float)[:, None]
        share_t = ablation_share(increase_t)
        winner_t, purity_t = winner_and_purity(share_t)
        at = ("snapshot", "layer", "head", "task")
        extra = {
            "risk_increase_over_time": (at, increase_t),
            "risk_increase_se_over_time": (at, np.broadcast_to(se[:1], increase_t.shape)),
            "winner_over_time": (("snapshot", "layer", "task"), winner_t),
            "purity_over_time": (("snapshot", "layer", "task"), purity_t),
            "risk_over_time": (("snapshot", "task"), np.full(increase_t.shape[::3], 0.2)),
            "snapshot_time": ("snapshot", np.arange(1.0, len(over_time) + 1)),
        }
    return xr.Dataset(
        {
            "risk": ("task", np.full(increase.shape[-1], risk)),
            "risk_se": ("task", np.full(increase.shape[-1], 0.01)),
            "risk_increase": (dims, increase),
            "risk_increase_se": (dims, se),
            "baseline_gap_se": ("baseline", np.full(3, 0.004)),
            "share": (dims, share),
            "winner": (("layer", "task"), winner),
            "purity": (("layer", "task"), purity),
            "baseline_risk": (
                ("baseline", "task"),
                np.array([[v] * increase.shape[-1] for v in (0.1, 0.12, 1.0)]),
            ),
            **extra,
        },
        coords={"baseline": ["ridge_tuned", "ols_block", "zero"]},
    )


def _run(name, increase, se, over_time=None, risk_over_time=None, risk=0.2):
    params = {"model": "transformer", "layers": 1, "data": "synthetic", "context_length": 10}
    ab = _ablation_file(increase, se, over_time, risk)
    if risk_over_time is not None:  # mean risk of each snapshot (zero predictor: 1, end: 0.2)
        ab["risk_over_time"] = (("snapshot", "task"), np.repeat(np.c_[risk_over_time], 2, axis=1))
    return RunData(name, None, None, params, ablation=ab)


SPLIT = [[0.5, 0.01], [0.02, 0.6]]  # head 0 serves task 0, head 1 task 1
SHARED = [[0.3, 0.3], [0.3, 0.3]]  # both heads serve both tasks


@pytest.mark.parametrize(
    "runs,verdict",
    [
        ([("a/x", SPLIT, 0.01), ("a/y", SPLIT, 0.01)], HOLDS),
        ([("a/x", SPLIT, 0.01), ("a/y", SHARED, 0.01)], PARTLY),
        ([("a/x", SHARED, 0.001)], FAILS),
        ([("a/x", SHARED, 0.001, [SHARED, SHARED])], FAILS),
        ([("a/x", SHARED, 0.001, [SHARED, SPLIT])], PARTLY),  # clean during training only
        ([("a/x", SHARED, 0.001, [SHARED, SPLIT], [0.2, 0.9])], FAILS),  # ... before it learned
        ([("a/x", SPLIT, 1.0)], INCONCLUSIVE),  # the winners are within the noise
        ([("a/x", SPLIT, 0.05)], INCONCLUSIVE),  # purity 0.96 but 0.78 two errors down
        ([("a/x", [[0.5, -1e-4], [0.01, -2e-4]], 1e-3)], INCONCLUSIVE),  # task 1: no head, noise
        ([("a/x", [SHARED, SPLIT], [[[0.001]], [[1.0]]])], INCONCLUSIVE),  # one layer undecided
        ([("a/x", [SHARED, SHARED], 0.001)], FAILS),  # every layer decided
        ([("a/x", SPLIT, 0.01, None, None, 0.99)], INCONCLUSIVE),  # not learned: not judged
    ],
)
def test_q1_verdict_counts_runs_that_split_the_tasks_and_respects_the_noise(runs, verdict):
    data = [_run(*r) for r in runs]
    row = verdict_q1(data, TH)
    assert row.verdict == verdict, row.measurement
    assert "× tuned ridge" in row.measurement
    m = measure_practical(data, TH["purity"])
    assert m["runs"][0]["ridge_ratio"] == pytest.approx(data[0].ablation["risk"].values[0] / 0.1)
    assert m["runs"][0]["ridge_ratio_se"] == pytest.approx(0.04)  # the paired gap's error / ridge
