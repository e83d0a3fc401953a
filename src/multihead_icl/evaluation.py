"""Evaluating a trained model away from its training distribution: length generalisation (C9).

The model learned at context length L is evaluated, unchanged, on fixed sets of the same prompt law
at other lengths L'. For the reduced and linear models the final (W, U) of train.nc define the
predictor completely, so this needs nothing but train.nc and the evaluation sets.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import torch
import xarray as xr

from .data import Prompts
from .model import ReducedAttention


def model_at(train: xr.Dataset, time_index: int = -1) -> ReducedAttention:
    """The reduced-view predictor of a run at one recorded time (softmax, or linear for model=linear)."""
    import json

    kind = json.loads(train.attrs["config"])["model"]
    weight = torch.tensor(train["W"].isel(time=time_index).values, dtype=torch.float64)
    value = torch.tensor(train["U"].isel(time=time_index).values, dtype=torch.float64)
    model = ReducedAttention(weight.shape[0], weight.shape[1], value.shape[1], "linear" if kind == "linear" else "softmax").double()
    with torch.no_grad():
        model.W.copy_(weight)
        model.U.copy_(value)
    return model


@torch.no_grad()
def risk_on(model: ReducedAttention, prompts: Prompts, chunk: int = 512) -> tuple[float, float]:
    """Risk (per-task MSE, noise included) on a fixed set and its Monte-Carlo standard error."""
    errors = []
    for start in range(0, len(prompts), chunk):
        part = prompts.slice(start, start + chunk).to("cpu", torch.float64)
        errors.append((model(part.x, part.y, part.x_query) - part.y_query).square().mean(dim=1))
    per_prompt = torch.cat(errors)
    return float(per_prompt.mean()), float(per_prompt.std() / math.sqrt(per_prompt.numel()))


def length_generalisation(train: xr.Dataset, eval_sets: Mapping[int, Prompts], noise_std: float) -> xr.Dataset:
    """Risk and excess risk of the final model at every evaluation length, with standard errors."""
    model = model_at(train)
    lengths = sorted(eval_sets)
    risks = [risk_on(model, eval_sets[length]) for length in lengths]
    risk = np.array([r for r, _ in risks])
    se = np.array([s for _, s in risks])
    return xr.Dataset(
        {
            "risk": ("length", risk, {"long_name": "risk of the final model (per-task MSE, noise included)"}),
            "risk_se": ("length", se, {"long_name": "Monte-Carlo standard error of risk"}),
            "excess_risk": ("length", risk - noise_std**2, {"long_name": "risk minus the noise floor sigma^2"}),
        },
        coords={"length": ("length", np.array(lengths), {"long_name": "evaluation context length L'"})},
    )
