"""Tables to take away (results/tables/): the verdicts and the optimality files as CSV and LaTeX,
and the comparison of two results folders (``multihead-icl compare``). Presentation only: every
value is read from verdicts.json and results/optimality/*.nc as the pipeline wrote them."""

from __future__ import annotations

import csv
import io as _io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

VERDICT_COLUMNS = (
    "setting",
    "claim",
    "verdict",
    "judged_on",
    "measurement",
    "threshold",
    "noise_floor",
    "statement",
)
OPTIMALITY_VALUES = (
    "excess_trained",
    "excess_trained_se",
    "excess_best_in_class",
    "excess_best_in_class_se",
    "excess_single_head",
    "excess_allocated",
    "excess_flow",
    "excess_flow_se",
    "optimality_ratio",
    "optimality_ratio_low",
    "optimality_ratio_high",
    "optimality_ratio_flow",
    "optimality_ratio_flow_low",
    "optimality_ratio_flow_high",
    "separation_ratio",
    "separation_ratio_low",
    "separation_ratio_high",
    "excess_bayes",
    "excess_linear_attention",
    "seeds",
)


def verdict_rows(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per setting and claim from verdicts.json (the reconstructed setting first)."""
    groups = [("reconstructed", summary["verdicts"])] + [
        (name, s["verdicts"]) for name, s in summary.get("settings", {}).items()
    ]
    return [
        {"setting": name, **{k: v.get(k, "") for k in VERDICT_COLUMNS if k != "setting"}}
        for name, rows in groups
        for v in rows
    ]


def optimality_rows(files: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per configuration of every optimality file (``files``: experiment -> xarray Dataset):
    its class parameters and the excess risks and ratios that exist in the file."""
    rows = []
    for experiment, ds in files.items():
        coords = [
            name for name, c in ds.coords.items() if c.dims == ("config",) and name != "config"
        ]
        for k, config in enumerate(ds["config"].values):
            row: dict[str, Any] = {"experiment": experiment, "config": str(config)}
            row.update({name: ds[name].values[k].item() for name in coords})
            row.update(
                {
                    name: ds[name].values[k].item()
                    for name in OPTIMALITY_VALUES
                    if name in ds and ds[name].dims == ("config",)
                }
            )
            rows.append(row)
    return rows


def to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """CSV with the union of the rows' keys as columns (first-seen order); missing cells are
    empty."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    out = _io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _plain(row.get(k)) for k in columns})
    return out.getvalue()


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    return value


LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: Any) -> str:
    return "".join(LATEX_SPECIALS.get(ch, ch) for ch in str(text))


def _number(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "--"
    return f"{value:.{digits}g}" if isinstance(value, float) else latex_escape(value)


def verdicts_latex(rows: Sequence[Mapping[str, Any]]) -> str:
    """A booktabs longtable: setting, claim, verdict, the object judged and the measurement."""
    body = "\n".join(
        f"{latex_escape(r['setting'])} & {latex_escape(r['claim'])} & "
        f"{latex_escape(r['verdict'])} & "
        f"{latex_escape(r['judged_on'])} & {latex_escape(r['measurement'])} \\\\"
        for r in rows
    )
    return (
        "% needs \\usepackage{booktabs,longtable}; UTF-8 text (ω, μ, ∝): LuaLaTeX or XeLaTeX; "
        "written by multihead_icl.tables\n"
        "\\begin{longtable}{llllp{0.55\\linewidth}}\n\\toprule\n"
        "setting & claim & verdict & judged on & measurement \\\\\n\\midrule\n\\endhead\n"
        f"{body}\n\\bottomrule\n\\end{{longtable}}\n"
    )


def optimality_latex(rows: Sequence[Mapping[str, Any]]) -> str:
    """Per configuration: the trained and the flow's excess over the best in class, with
    intervals."""

    def ratio(row: Mapping[str, Any], key: str) -> str:
        if key not in row or row[key] is None or not math.isfinite(float(row[key])):
            return "--"
        return (
            f"{_number(row[key])} [{_number(row.get(key + '_low'))}, "
            f"{_number(row.get(key + '_high'))}]"
        )

    body = "\n".join(
        f"{latex_escape(r['experiment'])} & {latex_escape(r['config'])} & "
        f"{_number(r.get('excess_best_in_class'))} & "
        f"{ratio(r, 'optimality_ratio')} & {ratio(r, 'optimality_ratio_flow')} & "
        f"{ratio(r, 'separation_ratio')} \\\\"
        for r in rows
    )
    return (
        "% needs \\usepackage{booktabs}; written by multihead_icl.tables from "
        "results/optimality/*.nc\n"
        "\\begin{tabular}{llrlll}\n\\toprule\n"
        "experiment & configuration & best in class & trained / best & flow / best & single / "
        "multi-head \\\\\n\\midrule\n"
        f"{body}\n\\bottomrule\n\\end{{tabular}}\n"
    )


def write_tables(
    summary_path: str | Path, optimality: Mapping[str, str | Path], folder: str | Path
) -> list[Path]:
    """results/tables/{verdicts,optimality}.{csv,tex}."""
    from .io import load_dataset

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    verdicts = verdict_rows(json.loads(Path(summary_path).read_text()))
    opt = optimality_rows({name: load_dataset(path) for name, path in optimality.items()})
    outputs = {
        "verdicts.csv": to_csv(verdicts),
        "verdicts.tex": verdicts_latex(verdicts),
        "optimality.csv": to_csv(opt),
        "optimality.tex": optimality_latex(opt),
    }
    written = []
    for name, text in outputs.items():
        path = folder / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
        written.append(path)
    return written


# ------------------------------------------------------------------------------------------------
# comparing two results folders


def _verdict_index(summary: Mapping[str, Any]) -> dict[tuple[str, str], Mapping[str, Any]]:
    return {(r["setting"], r["claim"]): r for r in verdict_rows(summary)}


def _optimality_index(folder: Path) -> dict[tuple[str, str], Mapping[str, Any]]:
    from .io import load_dataset

    files = {path.stem: load_dataset(path) for path in sorted((folder / "optimality").glob("*.nc"))}
    return {(r["experiment"], r["config"]): r for r in optimality_rows(files)}


def compare(first: str | Path, second: str | Path) -> dict[str, Any]:
    """What differs between two results folders: verdicts (and their measurements), and the key
    numbers of the optimality files (excess risks and ratios), with what only one folder has."""
    a, b = Path(first), Path(second)
    for folder in (a, b):
        if not (folder / "figures" / "verdicts.json").exists():
            raise FileNotFoundError(
                f"{folder}: no figures/verdicts.json (is it a results folder of a finished suite?)"
            )
    va, vb = (
        _verdict_index(json.loads((f / "figures" / "verdicts.json").read_text())) for f in (a, b)
    )
    verdicts = []
    for key in sorted(set(va) | set(vb)):
        ra, rb = va.get(key), vb.get(key)
        if (
            ra is None
            or rb is None
            or ra["verdict"] != rb["verdict"]
            or ra["measurement"] != rb["measurement"]
        ):
            verdicts.append(
                {
                    "setting": key[0],
                    "claim": key[1],
                    "a": ra and ra["verdict"],
                    "b": rb and rb["verdict"],
                    "changed": "verdict"
                    if ra and rb and ra["verdict"] != rb["verdict"]
                    else ("only in one" if ra is None or rb is None else "measurement"),
                    "measurement_a": ra and ra["measurement"],
                    "measurement_b": rb and rb["measurement"],
                }
            )
    oa, ob = _optimality_index(a), _optimality_index(b)
    numbers = []
    for key in sorted(set(oa) | set(ob)):
        ra, rb = oa.get(key, {}), ob.get(key, {})
        for name in OPTIMALITY_VALUES:
            x, y = ra.get(name), rb.get(name)
            if x is None and y is None:
                continue
            if not _same(x, y):
                numbers.append(
                    {"experiment": key[0], "config": key[1], "quantity": name, "a": x, "b": y}
                )
    return {"a": str(a), "b": str(b), "verdicts": verdicts, "numbers": numbers}


def _same(x: Any, y: Any, rtol: float = 1e-9) -> bool:
    if isinstance(x, float) and isinstance(y, float):
        if math.isnan(x) and math.isnan(y):
            return True
        return math.isclose(x, y, rel_tol=rtol, abs_tol=1e-15)
    return x == y


def compare_markdown(result: Mapping[str, Any]) -> str:
    lines = [f"# {result['a']} against {result['b']}", ""]
    if not result["verdicts"] and not result["numbers"]:
        return "\n".join(lines + ["No difference in the verdicts or the optimality numbers.", ""])
    lines += [
        f"## Verdicts ({len(result['verdicts'])} differ)",
        "",
        "| setting | claim | a | b | what changed |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {v['setting']} | {v['claim']} | {v['a'] or '—'} | {v['b'] or '—'} | {v['changed']} |"
        for v in result["verdicts"]
    ]
    lines += [
        "",
        f"## Optimality numbers ({len(result['numbers'])} differ)",
        "",
        "| experiment | configuration | quantity | a | b |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {n['experiment']} | {n['config']} | {n['quantity']} | {_cell(n['a'])} | "
        f"{_cell(n['b'])} |"
        for n in result["numbers"]
    ]
    return "\n".join(lines + [""])


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def jsonable_compare(result: Mapping[str, Any]) -> str:
    from .measurements import jsonable

    return json.dumps(jsonable(result), indent=1, sort_keys=True)
