"""Evaluating a trained model away from its training distribution: length generalisation (C9).

The model learned at context length L is evaluated, unchanged, on fixed sets of the same prompt law
at other lengths L'. For the reduced and linear models the final (W, U) of train.nc define the
predictor completely, so this needs nothing but train.nc and the evaluation sets.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import xarray as xr

from .data import Prompts
from .io import read_config
from .model import ReducedAttention
from .training import evaluate

SQUARED = {"units": "squared output units"}


def model_at(train: xr.Dataset, time_index: int = -1) -> ReducedAttention:
    """The reduced-view predictor of a run at one recorded time (softmax, or linear for
    model=linear)."""
    kind = read_config(train)["model"]
    if kind not in ("reduced", "linear"):
        raise ValueError(
            "the reduced view (W, U) in train.nc is the whole predictor only for model = reduced "
            f"or linear, not {kind!r}"
        )
    weight = torch.tensor(train["W"].isel(time=time_index).values, dtype=torch.float64)
    value = torch.tensor(train["U"].isel(time=time_index).values, dtype=torch.float64)
    model = ReducedAttention(
        weight.shape[0],
        weight.shape[1],
        value.shape[1],
        "linear" if kind == "linear" else "softmax",
    ).double()
    with torch.no_grad():
        model.W.copy_(weight)
        model.U.copy_(value)
    return model


def length_generalisation(
    train: xr.Dataset, eval_sets: Mapping[int, Prompts], risk_floor: float
) -> xr.Dataset:
    """Risk and excess risk of the final model at every evaluation length, with standard errors."""
    model = model_at(train)
    lengths = sorted(eval_sets)
    risks = [
        evaluate(model, eval_sets[length])[:2] for length in lengths
    ]  # as train.nc's eval_risk, in float64
    risk = np.array([float(r) for r, _ in risks])
    se = np.array([float(s) for _, s in risks])
    return xr.Dataset(
        {
            "risk": (
                "length",
                risk,
                {"long_name": "risk of the final model (per-task MSE, noise included)", **SQUARED},
            ),
            "risk_se": (
                "length",
                se,
                {"long_name": "Monte-Carlo standard error of risk", **SQUARED},
            ),
            "excess_risk": (
                "length",
                risk - risk_floor,
                {
                    "long_name": "risk minus its floor (sigma^2, or 0 for a noiseless query)",
                    **SQUARED,
                },
            ),
        },
        coords={
            "length": ("length", np.array(lengths), {"long_name": "evaluation context length L'"})
        },
    )
