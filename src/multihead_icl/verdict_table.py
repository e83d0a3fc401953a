"""The verdict table as a page and as JSON: presentation only (decisions are in ``verdicts``)."""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from .measurements import jsonable
from .verdicts import FAILS, HOLDS, INCONCLUSIVE, PARTLY, UNMEASURED, VERDICT_ORDER, Verdict

VERDICT_COLORS = {
    HOLDS: "#1a7f37",
    PARTLY: "#9a6700",
    FAILS: "#cf222e",
    INCONCLUSIVE: "#6639ba",
    UNMEASURED: "#57606a",
}


Comparison = tuple[str, str, Sequence[Verdict]]  # (setting name, label, its verdicts)


def _badge(verdict: str) -> str:
    colour = VERDICT_COLORS[verdict]
    return f"<span class='v' style='background:{colour}'>{html.escape(verdict)}</span>"


def _figure_link(path: str, folder: str | os.PathLike | None) -> str:
    if folder is None:
        return html.escape(path)
    href = os.path.relpath(path, folder).replace(os.sep, "/")
    return f"<a href='{html.escape(href)}'>{html.escape(path)}</a>"


def side_by_side_html(reference: Sequence[Verdict], comparisons: Sequence[Comparison]) -> str:
    """The same claims in every setting: one row per claim, one column per setting (verdict, the
    object judged, what was observed)."""
    if not comparisons:
        return ""
    columns = [("reconstructed (this pipeline's default)", {v.claim: v for v in reference})]
    columns += [(label, {v.claim: v for v in rows}) for _, label, rows in comparisons]
    head = "".join(f"<th>{html.escape(label)}</th>" for label, _ in columns)
    body = []
    for v in reference:
        cells = []
        for _, by_claim in columns:
            other = by_claim.get(v.claim)
            if other is None:
                cells.append("<td>—</td>")
                continue
            judged = (
                ""
                if other.verdict == UNMEASURED
                else f" <span class='o'>on {html.escape(other.judged_on)}</span>"
            )
            cells.append(
                f"<td class='m'>{_badge(other.verdict)}{judged}<br>"
                f"{html.escape(other.measurement)}</td>"
            )
        body.append(
            f"<tr><td class='c'>{html.escape(v.claim)}</td><td "
            f"class='s'>{html.escape(v.statement)}</td>{''.join(cells)}</tr>"
        )
    return f"""<h3 id="settings">The same claims in {len(columns)} settings</h3>
<p>Each setting is judged on its own experiments only, with the same thresholds
(config <code>settings</code>).</p>
<table class="side"><thead><tr><th>claim</th><th>statement</th>{head}</tr></thead>
<tbody>
{chr(10).join(body)}
</tbody></table>"""


def _diverged_html(diverged: Sequence[str]) -> str:
    if not diverged:
        return ""
    items = "".join(f"<li>{html.escape(note)}</li>" for note in diverged)
    return (
        f"<p class='diverged'><b>{len(diverged)} diverged run(s), left out of every "
        f"verdict:</b></p><ul>{items}</ul>"
    )


def verdicts_html(
    verdicts: Sequence[Verdict],
    title: str = "Verdict table",
    comparisons: Sequence[Comparison] = (),
    diverged: Sequence[str] = (),
    folder: str | os.PathLike | None = None,
) -> str:
    """A self-contained HTML page (the report shows it in an iframe); with ``comparisons``, a
    side-by-side table of the same claims in the other settings follows. Given the page's own
    ``folder`` (relative to the working directory, as the figure paths are), each figure path
    links to its file, so the page read on its own opens the figures."""
    counts = {v: sum(x.verdict == v for x in verdicts) for v in VERDICT_ORDER}
    rows = []
    for v in verdicts:
        figs = "<br>".join(_figure_link(f, folder) for f in v.figures) or "—"
        rows.append(
            f"<tr><td class='c'>{html.escape(v.claim)}</td><td "
            f"class='s'>{html.escape(v.statement)}</td>"
            f"<td>{_badge(v.verdict)}</td>"
            f"<td class='o'>{html.escape(v.judged_on)}</td>"
            f"<td class='m'>{html.escape(v.measurement)}</td><td "
            f"class='t'>{html.escape(v.threshold)}</td><td "
            f"class='n'>{html.escape(v.noise_floor or '—')}</td>"
            f"<td class='f'>{html.escape(v.category)}<br><span class='p'>{figs}</span></td></tr>"
        )
    summary = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; font-size: 13px;
       margin: 12px; color: #1f2328; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ border: 1px solid #d0d7de; padding: 6px 8px; vertical-align: top; text-align: left; }}
th {{ background: #f6f8fa; }}
td.c {{ font-weight: 600; white-space: nowrap; }}
td.s {{ font-size: 12px; width: 11%; }}
td.t {{ color: #57606a; font-size: 12px; width: 17%; }}
td.f {{ font-size: 12px; width: 11%; }}
td.o {{ font-size: 12px; width: 7%; }}
td.m {{ width: 28%; }}
td.n {{ color: #57606a; font-size: 12px; width: 12%; }}
span.p {{ color: #57606a; font-family: monospace; font-size: 10.5px; word-break: break-all; }}
span.v {{ color: white; border-radius: 10px; padding: 2px 8px; white-space: nowrap;
          font-weight: 600; }}
span.o {{ color: #57606a; font-size: 12px; }}
p.diverged {{ color: #cf222e; margin-bottom: 2px; }}
h3#settings {{ margin-top: 24px; }}
table.side td.c {{ width: 3%; }}
table.side td.s {{ width: 12%; }}
</style></head><body>
<h3>{html.escape(title)}</h3>
<p>{len(verdicts)} claims: {html.escape(summary)}. Every number below is computed from the
pipeline's netCDF files by <code>multihead_icl.verdicts</code>; thresholds are the config's
<code>verdicts</code> section.</p>
{_diverged_html(diverged)}<table><thead><tr><th>claim</th><th>statement (paper's abstract)</th>
<th>verdict</th><th>judged on</th><th>measurement</th><th>threshold</th><th>noise floor</th>
<th>figures (report category, file)</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>
{side_by_side_html(verdicts, comparisons)}</body></html>
"""


def _summary(verdicts: Sequence[Verdict]) -> dict[str, Any]:
    return {
        "verdicts": [asdict(v) for v in verdicts],
        "counts": {k: sum(v.verdict == k for v in verdicts) for k in VERDICT_ORDER},
        "by_claim": {v.claim: v.verdict for v in verdicts},
    }


def verdicts_json(
    verdicts: Sequence[Verdict],
    comparisons: Sequence[Comparison] = (),
    diverged: Sequence[str] = (),
) -> dict[str, Any]:
    """The reconstructed setting's verdicts at the top level; each comparison setting's under
    ``settings.<name>``, with its label; the diverged runs left out of all of them."""
    return jsonable(
        {
            **_summary(verdicts),
            "settings": {
                name: {"label": label, **_summary(rows)} for name, label, rows in comparisons
            },
            "diverged": list(diverged),
        }
    )
