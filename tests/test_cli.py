"""The command line drives every stage of a suite without Snakemake: on the tiny suite's files it
must write what the workflow wrote (same verdicts, same optimality numbers, same figure summary)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import xarray as xr
from conftest import TINY_CONFIG

from multihead_icl import cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def copy_of_tiny(tiny_workdir, tmp_path_factory):
    """The tiny suite's results with the derived files removed, for the CLI to rebuild."""
    results = tmp_path_factory.mktemp("cli") / "results"
    shutil.copytree(tiny_workdir / "results", results)
    for folder in ("figures", "tables", "optimality", "theory"):
        shutil.rmtree(results / folder)
    return tiny_workdir / "results", results


def test_every_suite_stage_from_the_command_line_matches_the_workflow(copy_of_tiny, capsys):
    built, results = copy_of_tiny
    args = ["--results", str(results)]
    assert cli.main(["surrogate", str(TINY_CONFIG), *args]) == 0
    assert cli.main(["optimality", str(TINY_CONFIG), "tiny", *args]) == 0
    # loaded and closed: a handle left open on the shared tiny suite's files can crash HDF5 later
    ours, theirs = (xr.load_dataset(p / "optimality" / "tiny.nc") for p in (results, built))
    for name in ("excess_trained", "excess_best_in_class", "optimality_ratio"):
        assert ours[name].values.tolist() == theirs[name].values.tolist(), name
    assert cli.main(["report", str(TINY_CONFIG), *args]) == 0
    written = capsys.readouterr().out.split()
    assert str(results / "figures" / "verdicts.json") in written
    assert str(results / "tables" / "verdicts.csv") in written
    mine, workflow = (
        json.loads((p / "figures" / "verdicts.json").read_text()) for p in (results, built)
    )
    assert [(v["claim"], v["verdict"], v["measurement"]) for v in mine["verdicts"]] == [
        (v["claim"], v["verdict"], v["measurement"]) for v in workflow["verdicts"]
    ]
    for summary in sorted((built / "figures").rglob("*.json")):
        if summary.name == "verdicts.json":
            continue
        again = results / summary.relative_to(built)
        assert again.exists(), again
        strip = lambda d: {k: v for k, v in d.items() if k != "figure"}  # noqa: E731
        assert strip(json.loads(again.read_text())) == strip(json.loads(summary.read_text()))


def test_a_figure_not_in_the_plan_is_a_config_error_naming_it(copy_of_tiny, capsys):
    _, results = copy_of_tiny
    code = cli.main(["figure", str(TINY_CONFIG), "winner", "nope", "--results", str(results)])
    assert code == 2
    assert "no figure winner nope" in capsys.readouterr().err


def test_the_ablation_read_out_from_the_command_line_matches_the_workflow(copy_of_tiny, tmp_path):
    from multihead_icl.config import load_suite_file

    built, results = copy_of_tiny
    run = "tiny_real/base"
    dataset = load_suite_file(TINY_CONFIG).run_dataset[run]
    output = tmp_path / "ablation.nc"
    train, eval_set = results / "runs" / run / "train.nc", results / "data" / f"{dataset}.nc"
    assert cli.main(["ablation", str(train), str(eval_set), str(output)]) == 0
    ours, theirs = xr.load_dataset(output), xr.load_dataset(built / "runs" / run / "ablation.nc")
    for name in ("risk", "risk_increase", "share", "share_over_time", "baseline_risk"):
        np.testing.assert_array_equal(ours[name].values, theirs[name].values, err_msg=name)
