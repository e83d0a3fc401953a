"""Tables to take away and the comparison of two results folders, on hand-made inputs."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import xarray as xr

from multihead_icl import cli
from multihead_icl.tables import compare, compare_markdown, latex_escape, write_tables


def make_results(folder, verdict="holds", ratio=1.5, measurement="3/3 runs & 100% clean"):
    (folder / "figures").mkdir(parents=True)
    (folder / "optimality").mkdir()
    row = {
        "claim": "C5",
        "statement": "s",
        "verdict": verdict,
        "judged_on": "exact flow",
        "measurement": measurement,
        "threshold": "ratio <= 2",
        "noise_floor": "SE",
    }
    summary = {
        "verdicts": [row],
        "settings": {
            "authors": {"label": "theirs", "verdicts": [{**row, "verdict": "not measured"}]}
        },
    }
    (folder / "figures" / "verdicts.json").write_text(json.dumps(summary))
    ds = xr.Dataset(
        {
            "excess_best_in_class": ("config", np.array([0.1, 0.2])),
            "optimality_ratio": ("config", np.array([ratio, np.nan])),
            "optimality_ratio_low": ("config", np.array([ratio - 0.1, np.nan])),
            "optimality_ratio_high": ("config", np.array([ratio + 0.1, np.nan])),
        },
        coords={"config": ["H1", "H3"], "heads": ("config", [1, 3])},
    )
    ds.to_netcdf(folder / "optimality" / "heads.nc")
    return folder


def test_tables_hold_every_setting_and_configuration_in_csv_and_latex(tmp_path):
    results = make_results(tmp_path / "results")
    written = write_tables(
        results / "figures" / "verdicts.json",
        {"heads": results / "optimality" / "heads.nc"},
        results / "tables",
    )
    assert sorted(p.name for p in written) == [
        "optimality.csv",
        "optimality.tex",
        "verdicts.csv",
        "verdicts.tex",
    ]
    verdicts = list(csv.DictReader(io.StringIO((results / "tables" / "verdicts.csv").read_text())))
    assert [(v["setting"], v["verdict"]) for v in verdicts] == [
        ("reconstructed", "holds"),
        ("authors", "not measured"),
    ]
    optimality = list(
        csv.DictReader(io.StringIO((results / "tables" / "optimality.csv").read_text()))
    )
    assert [(o["config"], o["heads"], o["optimality_ratio"]) for o in optimality] == [
        ("H1", "1", "1.5"),
        ("H3", "3", ""),
    ]
    tex = (results / "tables" / "verdicts.tex").read_text()
    assert r"3/3 runs \& 100\% clean" in tex and tex.count(r"\\") >= 3
    assert (
        r"heads & H1 & 0.1 & 1.5 [1.4, 1.6] & -- & -- \\"
        in (results / "tables" / "optimality.tex").read_text()
    )
    assert latex_escape("a_b$c") == r"a\_b\$c"
    # the CLI rebuilds them from a results folder
    assert cli.main(["tables", str(results)]) == 0


def test_compare_lists_what_differs_between_two_results_folders(tmp_path, capsys):
    a = make_results(tmp_path / "a")
    b = make_results(tmp_path / "b", verdict="does not hold", ratio=2.5)
    same = compare_markdown(compare(a, a))
    assert "No difference" in same
    result = compare(a, b)
    assert [
        (v["setting"], v["claim"], v["a"], v["b"], v["changed"]) for v in result["verdicts"]
    ] == [("reconstructed", "C5", "holds", "does not hold", "verdict")]
    assert {n["quantity"] for n in result["numbers"]} == {
        "optimality_ratio",
        "optimality_ratio_low",
        "optimality_ratio_high",
    }
    assert cli.main(["compare", str(a), str(b), "--json", str(tmp_path / "diff.json")]) == 0
    assert "| reconstructed | C5 | holds | does not hold | verdict |" in capsys.readouterr().out
    assert json.loads((tmp_path / "diff.json").read_text())["verdicts"][0]["b"] == "does not hold"
    assert cli.main(["compare", str(a), str(tmp_path / "missing")]) == 2
