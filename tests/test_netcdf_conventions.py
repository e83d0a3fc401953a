"""CF conventions of the netCDF files the pipeline writes (issue 16): every variable says what it
is and in which units, one unit string per quantity, flags that say what their values mean."""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np
import xarray as xr

from multihead_icl import io

TIME_WORDS = ("time", "lr x")  # unit strings of gradient-flow time (steps alone are counts)
# names that mean different quantities in different files (so may carry different units)
HOMONYMS = {"signal": "the task signal p_i in read-outs, the signal kappa_i in optimality files"}


def scan(path: Path, units_by_name: dict[str, set[str]] | None = None):
    """Problems of one file (read raw, as any netCDF tool sees it) and its time-like unit strings
    (units that mention time or steps) with the variables that carry them; every variable's unit
    string is also collected by name into ``units_by_name``."""
    problems, time_units = [], {}
    with netCDF4.Dataset(path) as nc:
        nc.set_auto_mask(False)
        for name, var in nc.variables.items():
            attrs = {k: var.getncattr(k) for k in var.ncattrs()}
            where = f"{path.name}:{name}"
            units = str(attrs.get("units", ""))
            if any(word in units for word in TIME_WORDS):
                time_units.setdefault(units, set()).add(where)
            if units and units_by_name is not None:
                units_by_name.setdefault(name, set()).add(units)
            if name in nc.dimensions:  # a coordinate (an index): no data of its own
                continue
            if "long_name" not in attrs:
                problems.append(f"{where} has no long_name")
            if getattr(var.dtype, "kind", "O") in "biuf" and "units" not in attrs:
                problems.append(f"{where} has no units")
            if var.dtype == np.int8 and not {"flag_values", "flag_meanings"} <= attrs.keys():
                problems.append(f"{where} is int8 without flag_values and flag_meanings")
            if "flag_values" in attrs:
                values = np.atleast_1d(attrs["flag_values"])
                meanings = str(attrs.get("flag_meanings", "")).split()
                if len(values) != len(meanings):
                    problems.append(f"{where}: {len(values)} flag values, meanings {meanings}")
    return problems, time_units


def test_cf_attributes_keep_the_values_readers_use(tmp_path):
    """Booleans read back as booleans and a winner of -1 as the int -1 (a _FillValue would turn
    the ints into float NaN), both with flag attributes on disk."""
    ds = xr.Dataset(
        {
            "winner": ("task", np.array([0, io.NONE_HEAD, 2])),
            "clean": ("task", np.array([True, False, True])),
            "grad_norm": ("step", np.array([1.0, 0.5])),
        }
    )
    for name in ds.data_vars:
        ds[name].attrs["long_name"] = name
    io.write_netcdf(ds, tmp_path / "a.nc")
    back = io.load_dataset(tmp_path / "a.nc")
    assert back.winner.dtype.kind == "i" and back.winner.values.tolist() == [0, -1, 2]
    assert back.clean.dtype == bool and back.clean.values.tolist() == [True, False, True]
    assert back.grad_norm.attrs["units"] == io.RISK_UNITS
    problems, _ = scan(tmp_path / "a.nc")
    assert problems == [], "\n".join(problems)
    with netCDF4.Dataset(tmp_path / "a.nc") as nc:
        assert nc["clean"].dtype == np.int8 and nc["clean"].flag_meanings == "false true"
        assert (
            nc["winner"].flag_meanings == "no_head" and "_FillValue" not in nc["winner"].ncattrs()
        )


def test_scan_catches_what_it_checks(tmp_path):
    bad = xr.Dataset({"x": ("a", np.array([1, 0], dtype=np.int8))})
    bad.to_netcdf(tmp_path / "bad.nc")  # not through io.write_netcdf: no attributes added
    problems, _ = scan(tmp_path / "bad.nc")
    assert len(problems) == 3, problems  # no long_name, no units, int8 without flags


def test_every_file_of_the_tiny_suite_follows_the_conventions(tiny_workdir):
    files = sorted((tiny_workdir / "results").rglob("*.nc"))
    names = {f.name for f in files}
    assert {"train.nc", "spectral.nc"} <= names, names
    problems, time_units, units_by_name = [], {}, {}
    for path in files:
        found, units = scan(path, units_by_name)
        problems += [f"{path.relative_to(tiny_workdir)}: {p}" for p in found]
        for unit, where in units.items():
            time_units.setdefault(unit, set()).update(where)
    assert problems == [], "\n".join(problems)
    # gradient-flow time carries one unit string in every file (and its inverse for rates)
    assert set(time_units) <= {io.TIME_UNITS, io.RATE_UNITS}, {
        u: sorted(w)[:3] for u, w in time_units.items()
    }
    assert any("train.nc:time" in w for w in time_units.get(io.TIME_UNITS, ()))
    # one quantity, one unit string: a name carries the same units in every file
    mixed = {n: u for n, u in units_by_name.items() if len(u) > 1 and n not in HOMONYMS}
    assert not mixed, mixed
