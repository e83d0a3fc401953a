"""Head ablation: which head serves which task, read the same way for any architecture.

The spectral read-out (``spectral``) needs the one-layer model's reduced view (W, U). A transformer
has none, so the allocation is read from what each head does to the risk (docs/science.md §11):
switch one head's output off (``head_mask``), every other weight unchanged, and measure each task's
risk increase on the evaluation set,

    dR[l, h, i] = R_i(head (l, h) off) - R_i(every head on),

with the Monte-Carlo standard error of the paired per-prompt differences. The shares of a layer are
the positive parts normalised over its heads, share[l, h, i] = dR+[l, h, i] / sum_h' dR+[l, h', i],
and winner and purity follow as in the spectral read-out. For the reduced model at a stationary
point, dR[h, i] ~ mu_hi^2 E[a_hi^2] ~ (mu_hi omega_hi)^2 (x a task constant) in the small-omega
regime, which is the spectral share's weight; a head that does not write task i (mu_hi = 0)
changes nothing, exactly. Both are tested (tests/test_ablation.py) and measured on the trained
runs (``spectral_share`` beside ``share`` in ablation.nc).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import xarray as xr

from . import io
from .allocation import ablation_share, allocation_share, winner_and_purity
from .data import Prompts, TaskSpec
from .model import has_reduced_view, load_flat_parameters, model_from_params
from .spectral import semi_singular_values, to_latent

SQUARED = {"units": io.RISK_UNITS}
# penalties the tuned ridge baseline chooses from, per task, on the evaluation set itself
RIDGE_GRID = np.geomspace(1e-3, 1e3, 31)
# prompts (the evaluation set's first) of the read-out at each snapshot over training; the final
# read-out uses the whole set. 256 keeps a transformer's read-out over training to seconds.
SNAPSHOT_PROMPTS = 256


def model_at_snapshot(train: xr.Dataset, snapshot: int = -1) -> torch.nn.Module:
    """The model of a train.nc (any architecture) at one snapshot record, in float32 as it was
    trained (a read-out in float64 costs twice as much and moves no reported digit); the last
    snapshot is the trained model."""
    params = io.read_config(train)
    spec = TaskSpec.from_params(params)
    if "parameters" not in train:
        raise ValueError("train.nc keeps no parameter snapshots (written by an older version)")
    model = model_from_params(params, spec.dim, spec.num_tasks)
    layout = json.loads(train.attrs["parameter_layout"])
    flat = train["parameters"].isel(snapshot=snapshot).values
    return load_flat_parameters(model, flat, layout).eval()


@torch.no_grad()
def per_prompt_errors(
    model: torch.nn.Module,
    prompts: Prompts,
    head_mask: torch.Tensor | None = None,
    chunk: int = 512,
) -> torch.Tensor:
    """Squared error of every prompt and task, (B, I), computed in the model's dtype and
    returned in float64 (the statistics over prompts are taken in float64)."""
    out, dtype = [], next(model.parameters()).dtype
    if head_mask is not None:
        head_mask = head_mask.to(dtype)
    for start in range(0, len(prompts), chunk):
        part = prompts.slice(start, start + chunk).to("cpu", dtype)
        prediction = model(part.x, part.y, part.x_query, head_mask=head_mask)
        out.append((prediction - part.y_query).square().to(torch.float64))
    return torch.cat(out)


def risk_increase(model: torch.nn.Module, prompts: Prompts) -> dict[str, np.ndarray]:
    """Each task's risk with every head on (``risk``, ``risk_se``: (I,)) and its increase when one
    head is off (``increase``, ``increase_se``: (layers, heads, I))."""
    layers, heads = model.head_layout
    base = per_prompt_errors(model, prompts)
    n = base.shape[0]
    increase = np.zeros((layers, heads, base.shape[1]))
    increase_se = np.zeros_like(increase)
    for layer in range(layers):
        for head in range(heads):
            mask = torch.ones(layers, heads, dtype=torch.float64)
            mask[layer, head] = 0.0
            diff = per_prompt_errors(model, prompts, mask) - base
            increase[layer, head] = diff.mean(dim=0).numpy()
            increase_se[layer, head] = (diff.std(dim=0) / math.sqrt(n)).numpy()
    return {
        "risk": base.mean(dim=0).numpy(),
        "risk_se": (base.std(dim=0) / math.sqrt(n)).numpy(),
        "increase": increase,
        "increase_se": increase_se,
        "errors": base.numpy(),
    }


def spectral_share_of(train: xr.Dataset) -> np.ndarray:
    """The spectral read-out's shares (mu omega)^2 / sum at the last record, (H, I): what the
    ablation shares are compared with on the one-layer models."""
    last = train.isel(time=-1)
    weight, value = to_latent(
        last["W"].values, last["U"].values, train["basis_x"].values, train["basis_y"].values
    )
    omega, mu = semi_singular_values(weight, value, train["block_mask"].values)
    return allocation_share(omega, mu)


def baseline_errors(prompts: Prompts, spec: TaskSpec) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Squared errors (B, I) of per-prompt predictors on the same evaluation set: least squares on
    the task's own block and on all covariates (NaN with fewer context pairs than covariates),
    ridge on the own block with its penalty tuned per task on this very set (an optimistic bound:
    no model sees the evaluation set), and predicting zero (E y^2); and the chosen penalties."""
    from .baselines import predict_ols_block, predict_ols_full, predict_ridge

    prompts = prompts.to("cpu", torch.float64)

    def errors(prediction: torch.Tensor) -> np.ndarray:
        return (prediction - prompts.y_query).square().numpy()

    def least_squares(predict, covariates: int) -> np.ndarray:
        """NaN when the context has fewer pairs than covariates (no unique least squares)."""
        if prompts.x.shape[1] < covariates:
            return np.full(tuple(prompts.y_query.shape), np.nan)
        return errors(predict(prompts, spec))

    ridge = np.stack([errors(predict_ridge(prompts, spec, lam)) for lam in RIDGE_GRID])
    best = np.argmin(ridge.mean(axis=1), axis=0)  # (I,): the best penalty per task
    out = {
        "ols_block": least_squares(predict_ols_block, max(spec.task_dims)),
        "ridge_tuned": ridge[best, :, np.arange(spec.num_tasks)].T,
        "ols_full": least_squares(predict_ols_full, spec.dim),
        "zero": errors(torch.zeros_like(prompts.y_query)),
    }
    return out, RIDGE_GRID[best]


def analyse_ablation(
    train: xr.Dataset, prompts: Prompts, stored: Mapping[str, Any] | None = None
) -> xr.Dataset:
    """ablation.nc of one run: risks, the head x task matrix of risk increases, shares, winners,
    purity (the trained model, on the whole evaluation set; and at every parameter snapshot over
    training, on its first ``SNAPSHOT_PROMPTS``), the spectral shares where the model has a reduced
    view, and the baselines."""
    params = io.read_config(train)
    spec = TaskSpec.from_params(params)
    model = model_at_snapshot(train)
    measured = risk_increase(model, prompts)
    share = ablation_share(measured["increase"])
    winner, purity = winner_and_purity(share)
    first = prompts.slice(0, SNAPSHOT_PROMPTS)
    over_time = [
        risk_increase(model_at_snapshot(train, k), first) for k in range(train.sizes["snapshot"])
    ]
    share_t = ablation_share(np.stack([m["increase"] for m in over_time]))
    winner_t, purity_t = winner_and_purity(share_t)
    base, ridge_lambda = baseline_errors(prompts, spec)
    names = list(base)
    n = len(prompts)
    # per-prompt risk (the mean over tasks) of the model against each baseline: paired gaps
    gaps = np.stack([(measured["errors"] - base[b]).mean(axis=1) for b in names])
    layers, heads = model.head_layout
    ds = xr.Dataset(
        {
            "risk": (
                "task",
                measured["risk"],
                {"long_name": "evaluation risk of the task, every head on", **SQUARED},
            ),
            "risk_se": (
                "task",
                measured["risk_se"],
                {"long_name": "Monte-Carlo standard error of risk", **SQUARED},
            ),
            "risk_increase": (
                ("layer", "head", "task"),
                measured["increase"],
                {"long_name": "increase of the task's evaluation risk, the head off", **SQUARED},
            ),
            "risk_increase_se": (
                ("layer", "head", "task"),
                measured["increase_se"],
                {"long_name": "Monte-Carlo standard error of risk_increase (paired)", **SQUARED},
            ),
            "share": (
                ("layer", "head", "task"),
                share,
                {"long_name": "ablation share (positive increase over the layer's)", "units": "1"},
            ),
            "winner": (
                ("layer", "task"),
                winner,
                {
                    "long_name": "head with the largest ablation share in the layer",
                    "flag_values": np.array([-1], dtype=np.int64),
                    "flag_meanings": "no_head",
                },
            ),
            "purity": (
                ("layer", "task"),
                purity,
                {"long_name": "the winner's ablation share", "units": "1"},
            ),
            "risk_mean_se": (
                (),
                float(measured["errors"].mean(axis=1).std() / math.sqrt(n)),
                {"long_name": "standard error of the risk averaged over tasks", **SQUARED},
            ),
            "baseline_risk": (
                ("baseline", "task"),
                np.stack([base[b].mean(axis=0) for b in names]),
                {"long_name": "evaluation risk of a per-prompt predictor", **SQUARED},
            ),
            "baseline_risk_se": (
                ("baseline", "task"),
                np.stack([base[b].std(axis=0) / math.sqrt(n) for b in names]),
                {"long_name": "Monte-Carlo standard error of baseline_risk", **SQUARED},
            ),
            "baseline_gap": (
                "baseline",
                gaps.mean(axis=1),
                {"long_name": "risk (mean over tasks) minus the baseline's, paired", **SQUARED},
            ),
            "baseline_gap_se": (
                "baseline",
                gaps.std(axis=1) / math.sqrt(n),
                {"long_name": "standard error of baseline_gap (paired per prompt)", **SQUARED},
            ),
            "risk_over_time": (
                ("snapshot", "task"),
                np.stack([m["risk"] for m in over_time]),
                {
                    "long_name": "evaluation risk of the task at the snapshot (first prompts)",
                    **SQUARED,
                },
            ),
            "risk_increase_over_time": (
                ("snapshot", "layer", "head", "task"),
                np.stack([m["increase"] for m in over_time]),
                {"long_name": "risk increase with the head off at the snapshot", **SQUARED},
            ),
            "risk_increase_se_over_time": (
                ("snapshot", "layer", "head", "task"),
                np.stack([m["increase_se"] for m in over_time]),
                {"long_name": "standard error of risk_increase_over_time", **SQUARED},
            ),
            "share_over_time": (
                ("snapshot", "layer", "head", "task"),
                share_t,
                {"long_name": "ablation share at the snapshot (first prompts)", "units": "1"},
            ),
            "winner_over_time": (
                ("snapshot", "layer", "task"),
                winner_t,
                {
                    "long_name": "head with the largest ablation share at the snapshot",
                    "flag_values": np.array([-1], dtype=np.int64),
                    "flag_meanings": "no_head",
                },
            ),
            "purity_over_time": (
                ("snapshot", "layer", "task"),
                purity_t,
                {"long_name": "the winner's ablation share at the snapshot", "units": "1"},
            ),
            "ridge_lambda": (
                "task",
                ridge_lambda,
                {"long_name": "ridge penalty chosen on the evaluation set", "units": "1"},
            ),
        },
        coords={
            "layer": np.arange(layers),
            "head": np.arange(heads),
            "task": np.arange(spec.num_tasks),
            "baseline": np.array(names, dtype=object),
            "snapshot_time": (
                "snapshot",
                train["snapshot_time"].values,
                train["snapshot_time"].attrs,
            ),
            "snapshot_step": (
                "snapshot",
                train["snapshot_step"].values,
                train["snapshot_step"].attrs,
            ),
        },
    )
    if has_reduced_view(str(params["model"])) and "W" in train:
        ds["spectral_share"] = (
            ("head", "task"),
            spectral_share_of(train),
            {"long_name": "spectral share (mu omega)^2 / sum at the last record", "units": "1"},
        )
    ds.attrs.update(io.provenance_attrs(stored if stored is not None else io.stored_config(train)))
    ds.attrs.update(
        eval_prompts=len(prompts),
        snapshot_prompts=len(first),
        status=str(train.attrs.get("status", "unknown")),
        share_rule="positive risk increase of the task, normalised over the heads of one layer",
    )
    return ds
