"""netCDF input/output with provenance (docs/science.md §8: every file carries its config, versions
and time)."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from . import __version__
from .config import complete_run

if TYPE_CHECKING:  # torch is imported only where tensors are made: plotting jobs never load it
    from .data import Prompts


# One unit string per quantity in every file this package writes (CF ``units``); writers use these
# rather than spelling them, so that the same quantity never carries two unit strings.
TIME_UNITS = "lr x steps"  # gradient-flow time t = learning rate x optimizer steps
RATE_UNITS = "1 / (lr x steps)"
RISK_UNITS = "squared output units"
OUTPUT_UNITS = "output units"
DIMENSIONLESS = "1"
# the units of quantities left without explicit units by their writer: by variable name; any
# other numeric variable without units is a dimensionless number, index, count or flag
NAMED_UNITS = {
    "grad_norm": RISK_UNITS,  # gradient of the risk over dimensionless parameters
    "final_grad_norm": RISK_UNITS,
    "median_grad_norm_last_tenth": RISK_UNITS,
    "noise_std": OUTPUT_UNITS,
    "context_length": "tokens",
    "length": "tokens",
    "step": "optimizer steps",
}
NONE_HEAD = -1  # a winner index of -1: no head (no winner, no emergence)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def provenance_attrs(config: Mapping[str, Any]) -> dict[str, str]:
    """The attrs every file carries: the resolved parameters as JSON, versions and creation time,
    and the CF global attributes (Conventions, source, references, history)."""
    created = datetime.now(UTC).isoformat(timespec="seconds")
    return {
        "Conventions": "CF-1.10",
        "source": f"multihead-icl {__version__}",
        "references": "Chen, Sheen, Wang, Yang, Training Dynamics of Multi-Head Softmax Attention "
        "for In-Context Learning, COLT 2024, arXiv:2402.19442",
        "history": f"{created} written by multihead-icl {__version__}",
        "config": json.dumps(dict(config), sort_keys=True, default=str),
        "package_version": __version__,
        "created": created,
        "torch_version": _version("torch"),
        "xarray_version": xr.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
    }


def stored_config(ds: xr.Dataset) -> dict[str, Any]:
    """The parameters exactly as a file recorded them (what a file derived from it records)."""
    return json.loads(ds.attrs["config"])


def read_config(ds: xr.Dataset) -> dict[str, Any]:
    """The resolved parameters stored in a file's ``config`` attribute (the schema's defaults under
    them, for files written before a key existed)."""
    return complete_run(stored_config(ds))


def cf_attributes(ds: xr.Dataset) -> xr.Dataset:
    """Complete the CF attributes of every numeric variable (data and auxiliary coordinates) in
    place: ``units`` where the writer gave none (``NAMED_UNITS``, else dimensionless),
    ``flag_values``/``flag_meanings`` on booleans (stored as int8) and on head indices that use
    ``NONE_HEAD``. The sentinel is a flag value, not a ``_FillValue``/``missing_value``: xarray
    would decode those to float NaN, and the readers index heads with the ints. Dimension
    coordinates that only number positions (0, 1, ...) get no units; those that hold values (a
    context length, an init scale) do."""
    for name, var in ds.variables.items():
        if var.dtype.kind not in "biuf":
            continue
        if name in ds.dims and np.array_equal(var.values, np.arange(var.size)):
            continue
        var.attrs.setdefault("units", NAMED_UNITS.get(str(name), DIMENSIONLESS))
        if var.dtype.kind == "b":
            var.attrs.setdefault("flag_values", np.array([0, 1], dtype=np.int8))
            var.attrs.setdefault("flag_meanings", "false true")
        elif var.dtype.kind == "i" and "winner" in str(name):
            var.attrs.setdefault("flag_values", np.array([NONE_HEAD], dtype=var.dtype))
            var.attrs.setdefault("flag_meanings", "no_head")
    return ds


def write_netcdf(ds: xr.Dataset, path: str | os.PathLike) -> None:
    """Write atomically: a temporary file renamed into place, so a killed job leaves no partial
    output. The CF attributes are completed first (``cf_attributes``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cf_attributes(ds)
    if "title" not in ds.attrs:  # CF: a short description of what is in the file
        ds.attrs["title"] = str(ds.attrs.get("description", f"multihead-icl {path.stem}")).split(
            ";"
        )[0][:200]
    tmp = path.with_name(f".{path.name}.tmp")
    ds.to_netcdf(tmp)
    os.replace(tmp, path)


class DamagedFileError(RuntimeError):
    """An input that cannot be read; the message is one line naming the file and what to do."""


def set_aside(path: str | os.PathLike) -> Path:
    """Move a damaged file to ``<name>.damaged`` (kept, never deleted): Snakemake then sees the
    output missing and rebuilds it, and the bytes stay there for a look."""
    path = Path(path)
    target, k = path.with_name(path.name + ".damaged"), 1
    while target.exists():  # an earlier damaged copy is kept too
        target, k = path.with_name(f"{path.name}.damaged{k}"), k + 1
    os.replace(path, target)
    return target


def load_dataset(path: str | os.PathLike) -> xr.Dataset:
    """Open and load fully into memory, closing the file (never read and write one file in a job).
    Every stage reads its netCDF inputs here: a truncated or corrupt file is set aside
    (``set_aside``) and the job stops with one line saying so and what to run."""
    try:
        with xr.open_dataset(path) as ds:
            return ds.load()
    except (FileNotFoundError, PermissionError, MemoryError, ImportError):
        raise  # not the file's fault: leave it where it is
    except Exception as error:  # noqa: BLE001 (HDF5, netCDF and decoding errors all mean "damaged")
        where = set_aside(path)
        raise DamagedFileError(
            f"{path}: damaged, cannot be read as netCDF ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}); "
            f"moved to {where.name}; run snakemake again to rebuild it"
        ) from None


def verify_tree(root: str | os.PathLike) -> list[str]:
    """Open every netCDF file below ``root``; set the damaged ones aside (``set_aside``) so that the
    next ``snakemake`` rebuilds them, and return one line about each."""
    if not Path(root).is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    damaged = []
    for path in sorted(Path(root).rglob("*.nc")):
        try:
            load_dataset(path)
        except DamagedFileError as error:
            damaged.append(str(error))
    return damaged


def prompts_to_dataset(prompts: Prompts, attrs: Mapping[str, Any]) -> xr.Dataset:
    """The evaluation-set contract: x, y, x_query, y_query, coef."""
    return xr.Dataset(
        data_vars={
            "x": (
                ("prompt", "position", "feature"),
                prompts.x.numpy(),
                {"long_name": "context covariates", "units": DIMENSIONLESS},
            ),
            "y": (
                ("prompt", "position", "task"),
                prompts.y.numpy(),
                {"long_name": "context outputs (noisy)", "units": OUTPUT_UNITS},
            ),
            "x_query": (
                ("prompt", "feature"),
                prompts.x_query.numpy(),
                {"long_name": "query covariates", "units": DIMENSIONLESS},
            ),
            "y_query": (
                ("prompt", "task"),
                prompts.y_query.numpy(),
                {"long_name": "query targets (noisy)", "units": OUTPUT_UNITS},
            ),
            "coef": (
                ("prompt", "task", "feature"),
                prompts.coef.numpy(),
                {
                    "long_name": "task coefficients g_i in the observed basis (zero off each task "
                    "block unless the data are rotated)",
                    "units": OUTPUT_UNITS,  # output per unit covariate, covariates dimensionless
                },
            ),
        },
        attrs=dict(attrs),
    )


def dataset_to_prompts(ds: xr.Dataset) -> Prompts:
    import torch

    from .data import Prompts

    def tensor(name: str) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(ds[name].values, dtype=np.float32))

    return Prompts(tensor("x"), tensor("y"), tensor("x_query"), tensor("y_query"), tensor("coef"))
