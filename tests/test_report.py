"""The HTML report of the tiny suite, checked as a person would read it.

`snakemake --report` renders the report of the shared tiny run; the tests then read it like a
reader: every planned figure is there under its claim with a caption, the captions' numbers are
the ones a reader recomputes from the netCDF files with their own code, every embedded figure
shows data in every axes, and the page renders in headless Chromium (screenshots of the landing
page, a figure with its caption, and the verdict table are saved and checked for content).
"""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
import subprocess
import urllib.parse
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from conftest import REPORT_STYLESHEET, SCHEMA, TINY_CONFIG, rendering_defects, run_snakemake

from multihead_icl import report as plan_module
from multihead_icl.measurements import fmt

pytestmark = pytest.mark.slow

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# ---------------------------------------------------------------------------------------------
# the report and its embedded data


@pytest.fixture(scope="module")
def report_path(tiny_workdir) -> Path:
    path = tiny_workdir / "results" / "report.html"
    if not path.exists():
        run_snakemake(
            tiny_workdir,
            "--report",
            "results/report.html",
            "--report-stylesheet",
            str(REPORT_STYLESHEET),
        )
    return path


def embedded(html: str, name: str, script_id: str | None = None):
    """A JSON value the report defines in its own ``<script id=...>var name = ...;</script>``."""
    match = re.search(
        rf'<script id="{script_id or name}">\s*var {name} = (.*?);\s*</script>', html, re.S
    )
    assert match, f"no `var {name}` in the report"
    return json.loads(match.group(1))


@pytest.fixture(scope="module")
def report_data(report_path):
    html = report_path.read_text()
    return {
        "results": embedded(html, "results"),
        "categories": embedded(html, "categories"),
        "html": html,
    }


@pytest.fixture(scope="module")
def plan():
    from multihead_icl.config import load_suite_file
    from multihead_icl.layout import Layout

    return Layout(load_suite_file(TINY_CONFIG, SCHEMA)).figure_plan()


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def caption(report_data, path: str) -> str:
    return text_of(report_data["results"][path]["caption"])


def decode(data_uri: str) -> bytes:
    head, _, payload = data_uri.partition(",")
    return (
        base64.b64decode(payload) if ";base64" in head else urllib.parse.unquote(payload).encode()
    )


# ---------------------------------------------------------------------------------------------
# contents


def category_named(categories, plain: str) -> str:
    """The report's name of a claim's category: the plain name, with its verdict after a dash."""
    names = [name for name in categories if name == plain or name.startswith(f"{plain} — ")]
    assert len(names) == 1, (plain, list(categories))
    return names[0]


def test_every_planned_figure_is_in_the_report_under_its_claim(report_data, plan):
    results, categories = report_data["results"], report_data["categories"]
    assert (
        len(plan) >= 10
    )  # tiny: convergence, surrogate, 4 per-run figures, winner, length, optimality, baselines
    for spec in plan:
        assert spec.path in results, spec.path
        category = category_named(categories, spec.category)
        assert any(spec.path in files for files in categories[category].values()), (
            spec.category,
            spec.path,
        )
        assert len(caption(report_data, spec.path)) > 200, spec.path
        assert "system-message" not in results[spec.path]["caption"], (
            spec.path
        )  # docutils found no error
        assert results[spec.path]["labels"]["figure"] == plan_module.FIGURE_KINDS[spec.kind].title
    assert "results/figures/verdicts.html" in categories[plan_module.VERDICT_CATEGORY]["Other"]


def test_categories_show_their_verdict_and_experiments_keep_the_suite_order(
    report_data, tiny_workdir
):
    """A reader sees each claim's verdict in the menu, and the experiments in the order the suite
    gives them (the report sorts names; a plain "adam" would come before "allocation")."""
    categories = report_data["categories"]
    summary = json.loads((tiny_workdir / "results" / "figures" / "verdicts.json").read_text())
    measured = {name for name in categories if re.match(r"(C\d|Q\d) ", name)}
    assert measured, list(categories)
    expected = {
        f"{row['category']} — {row['verdict']}" for row in summary["verdicts"] if row["figures"]
    }
    assert measured == expected
    order = [*yaml.safe_load(TINY_CONFIG.read_text())["experiments"]]
    for name in measured:
        numbered = [sub for sub in categories[name] if re.match(r"\d+ ", sub)]
        assert numbered, (name, list(categories[name]))
        for sub in numbered:
            position, experiment = sub.split(" ", 1)
            assert order.index(experiment) + 1 == int(position), (name, sub, order)
    assert "Setting and definitions" in categories


def test_category_names_fall_back_to_plain_names_without_a_usable_verdict_file(tmp_path):
    """The category is named when the report is built: a missing, damaged or stale verdicts.json
    must leave the plain name rather than break the report."""
    path = tmp_path / "verdicts.json"
    assert plan_module.claim_category("C3", path) == "C3 Task allocation"  # missing
    path.write_text("{not json")
    assert plan_module.claim_category("C3", path) == "C3 Task allocation"  # damaged
    path.write_text(json.dumps({"by_claim": {"C1": "holds"}}))
    assert plan_module.claim_category("C3", path) == "C3 Task allocation"  # silent on C3
    path.write_text(json.dumps({"by_claim": {"C3": "holds: `x`"}}))
    assert plan_module.claim_category("C3", path) == "C3 Task allocation"  # not a link target
    path.write_text(json.dumps({"by_claim": {"C3": "holds partly"}}))
    assert plan_module.claim_category("C3", path) == "C3 Task allocation — holds partly"
    order = ["allocation", "adam"]
    assert [plan_module.ordered_subcategory(n, order) for n in order] == [
        "01 allocation",
        "02 adam",
    ]
    assert plan_module.ordered_subcategory("all runs", order) == "all runs"


def test_captions_and_landing_page_render_cleanly(report_data):
    """No sentence run into the next and no list swallowed by a paragraph, in any caption or on
    the landing page (Snakemake renders them with Jinja's trim_blocks)."""
    pages = {path: result["caption"] for path, result in report_data["results"].items()}
    pages["landing page"] = embedded(report_data["html"], "workflow_desc", "workflow-desc")
    for path, page in pages.items():
        assert "system-message" not in page, path
        assert rendering_defects(page) == [], path


def test_every_embedded_figure_shows_data_in_every_axes(report_data, plan):
    for spec in plan:
        svg = decode(report_data["results"][spec.path]["data_uri"])
        root = ET.fromstring(svg)
        axes = [
            g
            for g in root.iter("{http://www.w3.org/2000/svg}g")
            if re.fullmatch(r"axes_\d+", g.get("id", ""))
        ]
        assert axes, spec.path
        for g in axes:
            assert any((e.get("id") or "").startswith("data") for e in g.iter()), (
                f"{spec.path}: {g.get('id')} shows no data"
            )


def test_captions_quote_the_numbers_in_the_netcdf_files(report_data, plan, tiny_workdir):
    """Each number is recomputed here from the files with xarray/numpy, not with the package."""
    results = tiny_workdir / "results"
    for spec in plan:
        text = caption(report_data, spec.path)
        if spec.kind == "risk":
            with xr.open_dataset(results / "runs" / spec.target / "train.nc") as train:
                risk, floor = train.eval_risk.values, float(train.attrs["noise_floor"])
                for value in (risk[0], risk[-1], risk[-1] - floor):
                    assert fmt(value) in text, (fmt(value), text)
        elif spec.kind == "allocation":
            with xr.open_dataset(results / "runs" / spec.target / "spectral.nc") as sp:
                share = sp.share.transpose("time", "head", "task").values[-1]
                purity = share.max(axis=0)
                assert f"lowest purity {fmt(purity.min())}" in text, text
                for i in range(purity.size):
                    assert (
                        f"head {int(share[:, i].argmax())} with {fmt(purity[i])} at the end of "
                        "training" in text
                    )
        elif spec.kind == "trajectories":
            with xr.open_dataset(results / "runs" / spec.target / "spectral.nc") as sp:
                p = (sp.omega * sp.mu).sum("head")
                p_ode = (sp.omega_ode * sp.mu_ode).sum("head")
                gap = float(np.nanmax(np.abs(p - p_ode).values))
                assert fmt(gap) in text, (fmt(gap), text)
        elif spec.kind == "winner":
            agree = total = 0
            for run in spec.runs:
                with xr.open_dataset(results / "runs" / run / "spectral.nc") as sp:
                    total += sp.sizes["task"]
                    agree += int((sp.winner_at_cleanest.values == sp.predicted_winner.values).sum())
            assert f"{agree} of {total}" in text, text
        elif spec.kind == "length":
            for run in spec.runs:
                with xr.open_dataset(results / "runs" / run / "lengths.nc") as ln:
                    for L, excess in zip(ln.length.values, ln.excess_risk.values):
                        assert f"{fmt(excess)} at L' = {int(L)}" in text, (run, L, text)
        elif spec.kind in ("optimality", "baselines"):
            with xr.open_dataset(results / "optimality" / f"{spec.experiment}.nc") as opt:
                if spec.kind == "optimality":
                    for r, lo, hi in zip(
                        opt.optimality_ratio.values,
                        opt.optimality_ratio_low.values,
                        opt.optimality_ratio_high.values,
                    ):
                        assert f"ratio {fmt(r)} (interval {fmt(lo)} – {fmt(hi)})" in text, text
                else:
                    for name in ("bayes", "trained", "best_in_class"):
                        for value, L in zip(
                            opt[f"excess_{name}"].values, opt.context_length.values
                        ):
                            assert f"{fmt(value)} at {fmt(L)}" in text, (name, text)
        elif spec.kind == "surrogate":
            with xr.open_dataset(results / "theory" / "surrogate_check.nc") as check:
                agree, total = int(check.agrees.values.sum()), int(check.agrees.size)
            assert f"agrees at {agree} of {total} grid points" in text, text
        elif spec.kind == "convergence":
            changes, rtols = [], []
            for run in spec.runs:
                with xr.open_dataset(results / "runs" / run / "train.nc") as train:
                    rtols.append(json.loads(train.attrs["config"])["converged_rtol"])
                    t = train.time.values
                    k = min(max(np.searchsorted(t, 0.9 * t[-1], side="right") - 1, 0), len(t) - 2)
                    theta = np.concatenate(
                        [train.W.values.reshape(len(t), -1), train.U.values.reshape(len(t), -1)],
                        axis=1,
                    )
                    changes.append(np.linalg.norm(theta[-1] - theta[k]) / np.linalg.norm(theta[-1]))
            below = sum(c < r for c, r in zip(changes, rtols))
            assert f"{below} of {len(changes)}" in text
            assert "converged_rtol = " + ", ".join(f"{r:g}" for r in sorted(set(rtols))) in text
            assert fmt(np.median(changes)) in text
        elif spec.kind == "heatmaps":  # the snapshots are record times of the run
            with xr.open_dataset(results / "runs" / spec.target / "train.nc") as train:
                times = {fmt(t) for t in train.time.values}
            shown = re.findall(r"\(t = ([^)]+)\)", text)
            assert shown and set(shown) <= times, (shown, text)
        elif spec.kind in ("limit", "flow"):
            for run in spec.runs:
                path = results / "runs" / run / "flow.nc"
                if not path.exists():  # runs that share another run's flow
                    continue
                with xr.open_dataset(path) as flow:
                    if spec.kind == "limit":
                        expected = fmt(float(flow.relative_change_last_decade), 2)
                    else:
                        expected = fmt(float(flow.train_flow_gap), 2)
                    assert f"{run}:" in text and expected in text, (run, expected, text)
        elif spec.kind == "regime_map":
            with xr.open_dataset(results / "maps" / f"{spec.experiment}.nc") as gathered:
                assert f"Of {gathered.sizes['point']} flows" in text, text
        elif spec.kind == "practical":  # each run's risk and its ratio to the tuned ridge
            for run in spec.runs:
                with xr.open_dataset(results / "runs" / run / "ablation.nc") as ab:
                    risk = float(ab.risk.values.mean())
                    ridge = float(ab.baseline_risk.sel(baseline="ridge_tuned").values.mean())
                    winners = ab.winner.values[-1].tolist()
                expected = f"risk {risk:.3g}"
                assert f"{run} (" in text and expected in text, (run, expected, text)
                assert f"{risk / ridge:.3g} ± " in text and "× tuned ridge" in text, (run, text)
                assert "winners " + ", ".join(map(str, winners)) in text, (run, winners, text)
        else:  # a new kind must say here how its caption's numbers are checked
            raise AssertionError(f"caption numbers of figure kind {spec.kind!r} are not checked")


def test_verdict_table_is_complete_and_agrees_with_the_files(report_data, tiny_workdir):
    results = tiny_workdir / "results"
    table = decode(report_data["results"]["results/figures/verdicts.html"]["data_uri"]).decode()
    assert (
        "system-message" not in report_data["results"]["results/figures/verdicts.html"]["caption"]
    )
    table, side = table.split(
        '<h3 id="settings">'
    )  # this setting's table, then the side-by-side one
    rows = re.findall(
        r"<tr><td class='c'>(C\d|Q\d)</td>.*?<span class='v'[^>]*>([^<]+)</span>", table, re.S
    )
    assert len(re.findall(r"<tr>", table)) == 11  # header, nine claims and question Q1
    assert [c for c, _ in rows] == [f"C{k}" for k in range(1, 10)] + ["Q1"]
    verdict = dict(rows)
    assert verdict["C6"] == verdict["C8"] == "not measured"  # no such experiment in tiny
    with xr.open_dataset(
        results / "optimality" / "tiny.nc"
    ) as opt:  # C5 on the exact flow's end state
        ratio, low, high = (opt[f"optimality_ratio_flow{s}"].values for s in ("", "_low", "_high"))
    assert high.size == 1
    expected_c5 = (
        "holds" if 1 <= high[0] <= 2 else ("does not hold" if low[0] > 2 else "inconclusive")
    )
    assert verdict["C5"] == expected_c5
    assert f"flow {fmt(ratio[0])} [{fmt(low[0])}, {fmt(high[0])}]" in table
    # C4 recomputed from the spectral files: agreement of predicted and observed winners
    agree = total = 0
    for path in sorted((results / "runs" / "tiny").glob("*/spectral.nc")):
        with xr.open_dataset(path) as sp:
            agree += int((sp.winner_at_cleanest.values == sp.predicted_winner.values).sum())
            total += sp.sizes["task"]
    expected = (
        "holds"
        if agree / total >= 0.9
        else ("holds partly" if agree / total > 0.5 else "does not hold")
    )
    assert verdict["C4"] == expected
    assert f"{agree}/{total} (run, task) pairs" in table
    # the second setting (config `settings`) is judged on its own experiment alone, side by side
    summary = json.loads((results / "figures" / "verdicts.json").read_text())
    other = summary["settings"]["authors"]
    assert [v["claim"] for v in other["verdicts"]] == [f"C{k}" for k in range(1, 10)] + ["Q1"]
    assert other["verdicts"][-1]["verdict"] == "not measured"  # Q1 reads the practical runs only
    q1 = next(v for v in summary["verdicts"] if v["claim"] == "Q1")
    for run in ("tiny_practical/reduced", "tiny_practical/transformer", "tiny_real/base"):
        with xr.open_dataset(results / "runs" / run / "ablation.nc") as ab:
            risk = float(ab.risk.values.mean())
        assert f"{run}: " in q1["measurement"] and f"risk {fmt(risk)}" in q1["measurement"], q1
    assert {f["run"] for f in summary["verdicts"][0]["numbers"]["per_flow"]} == {
        "tiny/s0",
        "tiny/s1",
    }
    assert {f["run"] for f in other["verdicts"][0]["numbers"]["per_flow"]} == {"tiny_authors/base"}
    assert (
        "the authors&#x27; kind of setting, in miniature" in side
        and len(re.findall(r"<tr>", side)) == 11
    )
    assert all(f"<td class='c'>C{k}</td>" in side for k in range(1, 10))
    # the landing page leads with the same verdicts, each a coloured badge
    raw = embedded(report_data["html"], "workflow_desc", "workflow-desc")
    assert "system-message" not in raw and "Verdicts of this run" in text_of(raw)
    landing = landing_rows(raw)
    assert [row[0] for row in landing] == [f"C{k}" for k in range(1, 10)] + ["Q1"]
    for claim, badges, link in landing:
        assert badges[0] == ("-".join(verdict[claim].split()), verdict[claim]), claim
        assert badges[1][1] == summary["settings"]["authors"]["by_claim"][claim], claim
        # a claim with figures links to its category, named with its verdict
        category = next(v["category"] for v in summary["verdicts"] if v["claim"] == claim)
        if verdict[claim] == "not measured":
            assert link is None, claim
        else:
            target = urllib.parse.quote(f"{category} — {verdict[claim]}")
            assert link == f"javascript:app.showCategory('{target}')", (claim, link)


def landing_rows(raw: str) -> list[tuple[str, list[tuple[str, str]], str | None]]:
    """The landing page's verdict table: per row the claim, its badges (class, text) and the
    link of the claim cell (None without one)."""
    table = re.search(r"<table [^>]*verdict-summary.*?<tbody[^>]*>(.*?)</tbody>", raw, re.S)
    assert table, "no verdict table on the landing page"
    rows = []
    for row in re.findall(r"<tr>(.*?)</tr>", table.group(1), re.S):
        first = re.search(r"<td>(.*?)</td>", row, re.S).group(1)
        link = re.search(r'href="([^"]+)"', first)
        badges = re.findall(r'<span class="([a-z-]+)">([^<]+)</span>', row)
        rows.append((text_of(first).strip(), badges, link and html.unescape(link.group(1))))
    return rows


# ---------------------------------------------------------------------------------------------
# rendered in a browser


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    pytest.skip(
        "headless Chromium is not installed (Debian: apt-get install --no-install-recommends "
        "chromium, as root)"
    )


def with_view(report_path: Path, out: Path, view_js: str) -> Path:
    """A copy of the report that opens ``view_js`` (a call on the report's own `app`) once
    loaded."""
    html = report_path.read_text()
    script = (
        f"<script>window.addEventListener('load', function () {{ setTimeout(function () {{ "
        f"{view_js} }}, 200); }});</script>"
    )
    at = html.rindex("</body>")
    out.write_text(html[:at] + script + html[at:])
    return out


def browse(
    page: Path, tmp: Path, screenshot: Path | None = None, size: tuple[int, int] = (1500, 1000)
) -> str:
    args = [
        chromium(),
        *CHROMIUM_FLAGS,
        f"--user-data-dir={tmp / 'chromium-profile'}",
        f"--window-size={size[0]},{size[1]}",
        "--virtual-time-budget=8000",
    ]
    args += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    proc = subprocess.run([*args, page.as_uri()], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def ink(png: Path, box=None) -> float:
    """Fraction of pixels (in ``box``) that differ clearly from the page's most common colour."""
    from PIL import Image

    image = np.asarray(
        Image.open(png).convert("RGB").crop(box) if box else Image.open(png).convert("RGB"),
        dtype=int,
    )
    flat = image.reshape(-1, 3)
    values, counts = np.unique(flat, axis=0, return_counts=True)
    background = values[counts.argmax()]
    return float((np.abs(flat - background).sum(axis=1) > 60).mean())


@pytest.fixture(scope="module")
def shots(report_path, tmp_path_factory):
    """Screenshots and rendered DOMs of three views; kept under results/screenshots for a person."""
    tmp = tmp_path_factory.mktemp("chromium")
    out = report_path.parent / "screenshots"
    out.mkdir(exist_ok=True)
    risk = "results/figures/tiny/s0/risk.svg"
    table = "results/figures/verdicts.html"
    views = {
        "landing": "",
        "figure": f"app.setView({{navbarMode: 'resultinfo', resultPath: '{risk}', content: 'img', "
        f"contentPath: results['{risk}'].data_uri}});",
        "verdicts": f"app.setView({{navbarMode: 'resultinfo', resultPath: '{table}', content: "
        f"'html', contentPath: results['{table}'].data_uri}});",
    }
    taken = {}
    for name, js in views.items():
        page = with_view(report_path, tmp / f"{name}.html", js)
        png = out / f"{name}.png"
        browse(page, tmp, screenshot=png)
        taken[name] = (png, browse(page, tmp))
    return taken


def test_report_renders_in_chromium_with_visible_figures_and_captions(shots, report_data):
    png, dom = shots["landing"]
    assert png.stat().st_size > 20_000 and ink(png) > 0.01
    assert "Do the heads of a multi-head softmax attention split the tasks" in dom
    assert "Verdicts of this run" in dom

    png, dom = shots["figure"]
    dom_text = text_of(dom)
    expected = caption(report_data, "results/figures/tiny/s0/risk.svg")
    assert expected[:120] in dom_text  # the caption, numbers included, is on the page
    assert "data:image/svg+xml" in dom  # and the figure itself
    from PIL import Image

    width, height = Image.open(png).size
    assert (
        ink(png, (width // 2, 0, width, height)) > 0.02
    )  # the figure half of the page is not blank

    png, dom = shots["verdicts"]
    width, height = Image.open(png).size
    assert "<iframe" in dom and ink(png, (width // 2, 0, width, height)) > 0.01


# Records where the landing page's title and verdict table are, relative to the visible area
# (the window's inner size: a 1440 x 900 window shows less than 900 px of page), into the DOM.
LAYOUT_PROBE = """
function box(selector) {
    var element = document.querySelector(selector);
    if (!element) { return null; }
    var r = element.getBoundingClientRect();
    return {top: r.top, bottom: r.bottom, left: r.left, right: r.right};
}
var probe = document.createElement('pre');
probe.id = 'layout-probe';
probe.textContent = JSON.stringify({
    width: window.innerWidth, height: window.innerHeight,
    title: box('#app .prose h1.title'), table: box('#app .prose table.verdict-summary')
});
document.body.appendChild(probe);
"""


def test_landing_page_shows_title_and_verdict_table_on_one_screen(report_path, tmp_path):
    """At 1440 x 900 the first screen holds the title and the whole verdict table. Fails when the
    report centres a landing page taller than the window (the title then sits above the top, as
    without report/report.css), or when the table is missing or pushed below the visible area."""
    out = report_path.parent / "screenshots"
    out.mkdir(exist_ok=True)
    page = with_view(report_path, tmp_path / "landing-probe.html", LAYOUT_PROBE)
    png = out / "landing-1440x900.png"
    browse(page, tmp_path, screenshot=png, size=(1440, 900))
    print(f"landing page at 1440 x 900: {png}")
    dom = browse(page, tmp_path, size=(1440, 900))
    found = re.search(r'<pre id="layout-probe">(.*?)</pre>', dom, re.S)
    assert found, "the layout probe did not run"
    layout = json.loads(html.unescape(found.group(1)))
    assert layout["width"] == 1440 and 600 < layout["height"] <= 900, layout
    for name in ("title", "table"):
        box = layout[name]
        assert box is not None, f"no {name} on the landing page"
        assert 0 <= box["top"] < box["bottom"] <= layout["height"], (name, box, layout)
        assert 0 <= box["left"] < box["right"] <= layout["width"], (name, box, layout)
    table = layout["table"]
    crop = (int(table["left"]), int(table["top"]), int(table["right"]), int(table["bottom"]))
    assert ink(png, crop) > 0.03  # the table is drawn there, its badges coloured
    # and the full table is one click away
    click = (
        "Array.from(document.querySelectorAll('#app .prose a')).filter(function (a) { return "
        "a.textContent == 'full verdict table'; })[0].click();"
    )
    dom = browse(with_view(report_path, tmp_path / "landing-click.html", click), tmp_path)
    assert "<iframe" in dom and "results/figures/verdicts.html" in text_of(dom)
