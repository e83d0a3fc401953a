"""The verdict table's decisions: one row per claim C1-C9 and for question Q1, decided from the
measurements by stated thresholds, each saying which object it judged (the exact flow, the trained
runs, or both) and the noise floor its comparison carries.

A verdict is ``holds``, ``holds partly``, ``does not hold``, ``inconclusive`` (the data cannot
decide: the Monte-Carlo samples disagree, an interval straddles the threshold, no noise floor was
measured) or ``not measured`` (its experiment is absent or its data are missing). Thresholds come
from the config's ``verdicts`` section; their defaults are ``report.DEFAULT_THRESHOLDS``. Rules
and their reasons: docs/science.md §1 and §5.4.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .identity import EVALUATION_KEYS
from .measurements import (
    RunData,
    clean_window,
    distinct_flows,
    distinct_runs,
    divergence_note,
    finite_or_none,
    flow_ratios,
    fmt,
    jsonable,
    measure_allocation,
    measure_comparison,
    measure_flow,
    measure_flow_regimes,
    measure_length,
    measure_optimality,
    measure_phases,
    measure_practical,
    measure_regimes,
    measure_separation,
    measure_stream_spread,
    measure_surrogate,
    measure_warmup_law,
    measure_winners,
    num,
)
from .report import CLAIMS, FIGURE_KINDS, as_list, thresholds

if TYPE_CHECKING:
    import xarray as xr


HOLDS, PARTLY, FAILS, INCONCLUSIVE, UNMEASURED = (
    "holds",
    "holds partly",
    "does not hold",
    "inconclusive",
    "not measured",
)
VERDICT_ORDER = (HOLDS, PARTLY, FAILS, INCONCLUSIVE, UNMEASURED)
FLOW, TRAINED, BOTH = "exact flow", "trained runs", "exact flow and trained runs"
SEARCH = "best-in-class search"  # C6 compares optima of the model classes, not trained models

AXIS_SHORT = {
    "context_length": "L",
    "heads": "H",
    "tasks": "I",
    "noise_std": "σ",
    "task_dim": "d_i",
}


def _verdict_from_fraction(passed: int, total: int, partly: float) -> str:
    if total == 0:
        return UNMEASURED
    if passed == total:
        return HOLDS
    if passed / total >= partly and passed > 0:
        return PARTLY
    return FAILS


# ---------------------------------------------------------------------------------------------
# verdicts


@dataclass
class Verdict:
    claim: str
    statement: str
    measurement: str
    threshold: str
    verdict: str
    figures: list[str]
    category: str
    numbers: dict[str, Any] = field(default_factory=dict)
    judged_on: str = TRAINED  # FLOW, TRAINED, BOTH or SEARCH: the object the verdict was decided on
    noise_floor: str = (
        ""  # the Monte-Carlo error, seed-to-seed spread or time step the comparison carries
    )


def _figures_for(plan: Sequence[Mapping[str, Any]] | None, claim: str) -> list[str]:
    return [p["path"] for p in (plan or []) if FIGURE_KINDS[p["kind"]].claim == claim]


def _row(
    claim: str,
    measurement: str,
    threshold: str,
    verdict: str,
    plan,
    numbers=None,
    judged_on: str = TRAINED,
    noise_floor: str = "",
) -> Verdict:
    return Verdict(
        claim,
        CLAIMS[claim]["claim"],
        measurement,
        threshold,
        verdict,
        _figures_for(plan, claim),
        CLAIMS[claim]["category"],
        jsonable(numbers or {}),
        judged_on,
        noise_floor,
    )


def verdict_c1(
    runs: Sequence[RunData], th: Mapping[str, float], plan=None, trained: Sequence[RunData] = ()
) -> Verdict:
    """On the exact flow: a finite limit (holds), a steady power-law drift (does not hold), or not
    resolved at the horizon (inconclusive), each flow counted once and only where both Monte-Carlo
    samples agree. ``trained`` runs (the allocation experiment, sized to its horizon) are reported
    by their decomposable part on the exact risk, never by the batch gradient."""
    flows = [measure_flow(r) for r in distinct_flows(runs)]
    limit, drift_exponent = (
        fmt(flows[0][key], 2) if flows else "(flow section)"
        for key in ("limit_rtol", "drift_exponent")
    )
    thr = (
        f"the flow's (omega, mu) move by < {limit} (relative) over its last decade of t = finite "
        "limit; ||omega|| or ||mu|| ∝ t^a with a "
        f"steady |a| ≥ {drift_exponent} = drifting (the config's flow section); otherwise, or "
        "when the two Monte-Carlo samples disagree, "
        f"inconclusive. All flows finite = holds; ≥ {th['partly_fraction']:.0%} of the decisive "
        "flows finite = holds partly; fewer = does not hold"
    )
    if not flows:
        return _row(
            "C1",
            "no exact flow in the suite (config section flow)",
            thr,
            UNMEASURED,
            plan,
            judged_on=FLOW,
        )
    agree = [f for f in flows if f["end_class"] == f["end_class_check"]]
    finite = [f for f in agree if f["end_class"] == "finite limit"]
    drift = [f for f in agree if f["end_class"] == "drifting"]
    n = len(flows)
    decisive = len(finite) + len(drift)
    if not decisive:
        verdict = INCONCLUSIVE
    elif len(finite) == n:
        verdict = HOLDS
    else:
        # some flow drifts (or is undecided): partly only when enough of the decisive ones converge
        verdict = PARTLY if finite and len(finite) / decisive >= th["partly_fraction"] else FAILS
    horizon = max(f["horizon"] for f in flows)
    parts = [
        f"{len(finite)}/{n} exact flows reach a finite "
        f"limit{' (' + ', '.join(f['run'] for f in finite) + ')' if finite else ''}, "
        f"{len(drift)}/{n} drift, {n - len(finite) - len(drift)}/{n} not resolved or the two "
        f"samples disagree (to t = {fmt(horizon)})"
    ]
    if drift:
        w = [f["omega_exponent"] for f in drift]
        m = [f["mu_exponent"] for f in drift]
        parts.append(
            f"drifting flows: ||omega|| ∝ t^{fmt(float(np.median(w)), 2)}, ||mu|| ∝ "
            f"t^{fmt(float(np.median(m)), 2)} (median; ranges "
            f"{fmt(min(w), 2)}…{fmt(max(w), 2)} and {fmt(min(m), 2)}…{fmt(max(m), 2)}), relative "
            "change over the last decade "
            f"{fmt(float(np.median([f['relative_change_last_decade'] for f in drift])), 2)}, "
            "gradient norm at the horizon "
            f"{fmt(float(np.median([num(f['grad_norm_end']) for f in drift])), 2)}: gradient flow "
            "has no finite limit there"
        )
    evidence = [measure_flow(r) for r in trained if r.flow is not None]
    if evidence:
        parts.append(
            "trained runs (decomposable part on the exact risk): population gradient norm at the "
            "last record "
            + ", ".join(
                f"{fmt(e['trained_grad_norm_end'], 2)} ({e['run']}; the flow's "
                f"{fmt(e['grad_norm_run_end'], 2)})"
                for e in evidence
            )
            + "; relative change of (omega, mu) over the last tenth "
            + ", ".join(fmt(e["trained_relative_change"], 2) for e in evidence)
        )
    floor = (
        "Monte-Carlo gap between the two samples ≤ "
        f"{fmt(max(num(f['mc_gap_long']) for f in flows), 2)} in p_i; solver rtol far below it"
    )
    numbers = {
        "flows": len(flows),
        "finite": len(finite),
        "drifting": len(drift),
        "horizon": horizon,
        "per_flow": flows,
        "trained": [
            {
                k: e[k]
                for k in (
                    "run",
                    "trained_grad_norm_end",
                    "grad_norm_run_end",
                    "trained_relative_change",
                )
            }
            for e in evidence
        ],
    }
    return _row("C1", "; ".join(parts), thr, verdict, plan, numbers, FLOW, floor)


def verdict_c2(
    phase_runs: Sequence[RunData],
    warmup_runs: Sequence[RunData],
    th: Mapping[str, float],
    plan=None,
    flow_runs: Sequence[RunData] = (),
) -> Verdict:
    """Sharp emergence on the exact flow where the suite has flows (else on the trained runs), with
    phase ends from the logistic phase itself; the warm-up law's slope on the trained init-scale
    sweep."""
    thr = (
        f"every task's signal p_i rises on average ≥ {th['emergence_speedup']:g}× faster during "
        "emergence than during warm-up "
        "(phase ends from a logistic fit of the fast rise), and the fitted slope of t* against "
        "ln(1/s) is within "
        f"{th['warmup_slope_rtol']:.0%} of the warm-up law's"
    )
    flows = [measure_flow(r) for r in distinct_flows(flow_runs)]
    flow_pairs = [t for f in flows for t in f["tasks"]]
    trained_pairs = []
    for r in phase_runs:
        if r.spectral is not None and "warmup_end" in r.spectral:
            trained_pairs.extend(measure_phases(r.spectral, th["emergence_speedup"])["tasks"])
    for p in flow_pairs:
        p["sharp"] = p["speedup"] is not None and p["speedup"] >= th["emergence_speedup"]
    pairs = flow_pairs or trained_pairs
    law = measure_warmup_law(warmup_runs, th["warmup_slope_rtol"]) if warmup_runs else None
    if not pairs and (law is None or law["fit"] is None):
        return _row(
            "C2", "no run with detected phases and no init-scale sweep", thr, UNMEASURED, plan
        )
    sharp = sum(bool(p["sharp"]) for p in pairs)
    speedups = [p["speedup"] for p in pairs if p["speedup"] is not None]
    source = "exact flows" if flow_pairs else "trained runs"
    parts = [
        f"{sharp}/{len(pairs)} (flow or run, task) pairs of the {source} emerge sharply (median "
        "speed-up "
        f"{fmt(np.median(speedups) if speedups else math.nan)}, lowest "
        f"{fmt(min(speedups) if speedups else math.nan)})"
    ]
    if flow_pairs and trained_pairs:
        trained_speed = [p["speedup"] for p in trained_pairs if p["speedup"] is not None]
        parts.append(
            f"trained runs: {sum(p['sharp'] for p in trained_pairs)}/{len(trained_pairs)} sharp "
            "(median speed-up "
            f"{fmt(np.median(trained_speed) if trained_speed else math.nan)})"
        )
    checks = [sharp == len(pairs) and len(pairs) > 0]
    partial = [sharp > 0]
    if law is not None and law["fit"] is not None:
        fit = law["fit"]
        parts.append(
            f"warm-up slope {fmt(fit['slope'])} ± {fmt(fit['slope_se'], 2)} against law "
            f"{fmt(law['law_slope'])} (relative error {fmt(law['relative_slope_error'], 2)}, R² "
            f"{fmt(fit['r2'], 3)}, {len(law['scales'])} scales, trained runs)"
        )
        checks.append(bool(law["agrees"]))
        partial.append(bool(law["agrees"]) or fit["slope"] > 0)
    else:
        parts.append("warm-up law not measured (no init-scale sweep with ≥ 2 scales)")
        checks.append(False)
        partial.append(False)
    verdict = HOLDS if all(checks) else (PARTLY if any(partial) else FAILS)
    numbers = {
        "pairs": len(pairs),
        "sharp": sharp,
        "source": source,
        "law": {k: v for k, v in (law or {}).items() if k != "points"},
    }
    floor = (
        f"flow Monte-Carlo gap ≤ {fmt(max(num(f['mc_gap']) for f in flows), 2)} in p_i"
        if flows
        else "trained runs: batch noise"
    )
    return _row(
        "C2", "; ".join(parts), thr, verdict, plan, numbers, BOTH if flow_pairs else TRAINED, floor
    )


def verdict_c3(runs: Sequence[RunData], th: Mapping[str, float], plan=None) -> Verdict:
    thr = (
        f"every task's purity ≥ {th['purity']:g} with distinct winners (H ≥ I): clean at the end "
        "of training in all runs = holds; "
        "clean at the end of emergence or during part of training (in all runs, or in ≥ "
        f"{th['partly_fraction']:.0%} of runs) = holds partly"
    )
    allocs = [
        (r.run, measure_allocation(r.spectral, th["purity"]))
        for r in runs
        if r.spectral is not None and "share" in r.spectral
    ]
    if not allocs:
        return _row("C3", "no allocation experiment", thr, UNMEASURED, plan)
    n = len(allocs)
    end = sum(bool(a["clean_end"]) for _, a in allocs)
    emer = sum(bool(a["clean_emergence"]) for _, a in allocs)
    min_end = min(a["min_purity_end"] for _, a in allocs)
    em_values = [
        a["min_purity_emergence"] for _, a in allocs if a["min_purity_emergence"] is not None
    ]
    windows = [
        clean_window(r.spectral, th["purity"])
        for r in runs
        if r.spectral is not None and "share" in r.spectral
    ]
    ever = sum(w is not None for w in windows)
    spans = ", ".join(f"t = {fmt(w[0])}–{fmt(w[1])}" for w in windows if w is not None)
    text = (
        f"clean at the end of training in {end}/{n} runs (lowest purity {fmt(min_end)}), "
        f"at the end of emergence in {emer}/{n} (lowest purity "
        f"{fmt(min(em_values) if em_values else math.nan)}), "
        f"clean during part of training in {ever}/{n}"
        + (
            f" ({spans}; final t = {fmt(float(runs[0].spectral['time'].values[-1]))})"
            if spans
            else ""
        )
    )
    if end == n:
        verdict = HOLDS
    elif emer == n or ever == n or max(end, emer, ever) / n >= th["partly_fraction"]:
        verdict = PARTLY
    else:
        verdict = FAILS
    return _row(
        "C3",
        text,
        thr,
        verdict,
        plan,
        {
            "runs": n,
            "clean_end": end,
            "clean_emergence": emer,
            "clean_ever": ever,
            "min_purity_end": min_end,
        },
        TRAINED,
        "batch noise in the trained shares, not separated here; the exact flow's clean window is "
        "in figure limit",
    )


def verdict_c4(runs: Sequence[RunData], th: Mapping[str, float], plan=None) -> Verdict:
    win = measure_winners(runs)
    thr = f"agreement ≥ {th['winner_agreement']:g} = holds; above chance (1/H) = holds partly"
    if win["total"] == 0:
        return _row("C4", "no run with predicted and observed winners", thr, UNMEASURED, plan)
    a = win["agreement"]
    verdict = HOLDS if a >= th["winner_agreement"] else (PARTLY if a > win["chance"] else FAILS)
    text = (
        "predicted winner = observed winner (read where the allocation was cleanest, median "
        "lowest purity there "
        f"{fmt(win['median_cleanest_purity'])}) for {win['agree']}/{win['total']} (run, task) "
        f"pairs ({a:.0%}; chance {win['chance']:.0%}) "
        f"over {len(win['runs'])} runs"
    )
    return _row(
        "C4",
        text,
        thr,
        verdict,
        plan,
        {k: v for k, v in win.items() if k != "pairs"},
        TRAINED,
        f"chance agreement {win['chance']:.0%}; {win['total']} (run, task) pairs",
    )


def verdict_c5(optimality: Mapping[str, xr.Dataset], th: Mapping[str, float], plan=None) -> Verdict:
    """On the exact flow's end state where the optimality files have one (a configuration passes
    when its interval's upper end is within the factor, fails when its lower end is above it, and is
    inconclusive when the interval straddles it or lies below 1); else on the trained runs."""
    flows = {name: flow_ratios(ds) for name, ds in optimality.items()}
    if not any(flows.values()):
        return _verdict_c5_trained(optimality, th, plan)
    factor = th["optimality_ratio"]
    thr = (
        "excess(exact flow at its horizon) / excess(best in class): interval within [1, "
        f"{factor:g}] = passes, entirely above {factor:g} "
        "= fails, otherwise inconclusive; all decisive configurations pass = holds, ≥ "
        f"{th['partly_fraction']:.0%} = holds partly"
    )
    seen, rows = set(), []
    for name, ratios in flows.items():
        for row in ratios:
            if row["key"] in seen:
                continue
            seen.add(row["key"])
            row["experiment"] = name
            row["state"] = (
                "pass"
                if 1.0 <= row["high"] <= factor
                else ("fail" if row["low"] > factor else "inconclusive")
            )
            rows.append(row)
    decisive = [r for r in rows if r["state"] != "inconclusive"]
    passed = sum(r["state"] == "pass" for r in decisive)
    verdict = (
        _verdict_from_fraction(passed, len(decisive), th["partly_fraction"])
        if decisive
        else INCONCLUSIVE
    )
    text = (
        f"{passed}/{len(rows)} configurations with an exact flow within the factor, "
        f"{len(rows) - len(decisive)} inconclusive; "
        + "; ".join(
            f"{r['experiment']} {AXIS_SHORT.get(r['x_name'], r['x_name'])} = {fmt(r['x'])}: flow "
            f"{fmt(r['ratio'])} "
            f"[{fmt(r['low'])}, {fmt(r['high'])}], trained at its last record {fmt(r['trained'])}"
            for r in rows
        )
    )
    others = [n for n, ratios in flows.items() if not ratios]
    if others:
        text += "; without an exact flow (trained ratios in the figures): " + ", ".join(others)
    confidence = next(
        (finite_or_none(ds.attrs.get("confidence")) for ds in optimality.values()), None
    )
    floor = (
        f"{fmt(confidence or math.nan, 2)} intervals from the fresh-sample standard errors of "
        "both excess risks"
    )
    return _row("C5", text, thr, verdict, plan, {"flow_configurations": rows}, FLOW, floor)


def _verdict_c5_trained(
    optimality: Mapping[str, xr.Dataset], th: Mapping[str, float], plan=None
) -> Verdict:
    thr = (
        "upper end of the interval of excess(trained) / excess(best in class) ≤ "
        f"{th['optimality_ratio']:g} in every configuration "
        "(an interval entirely below 1 means the best-in-class search missed, and fails); holds "
        f"partly when ≥ {th['partly_fraction']:.0%} pass"
    )
    if not optimality:
        return _row("C5", "no optimality experiment", thr, UNMEASURED, plan)
    passed = total = repeated = 0
    parts, numbers, seen = [], {}, set()
    for name, ds in optimality.items():
        gap = measure_optimality(ds, th["optimality_ratio"])
        for key, high in zip(gap["keys"], gap["high"]):  # a configuration in two sweeps counts once
            if not math.isfinite(high):
                continue
            if key in seen:
                repeated += 1
                continue
            seen.add(key)
            total += 1
            passed += 1.0 <= high <= th["optimality_ratio"]
        numbers[name] = {k: gap[k] for k in ("x_name", "x", "ratio", "low", "high")}
        parts.append(
            f"{name}: ratio {fmt(min(gap['ratio']) if gap['ratio'] else math.nan)}–"
            f"{fmt(gap['max_ratio'])} over {gap['x_name']} = "
            f"{', '.join(fmt(v) for v in gap['x'])} (largest upper end {fmt(gap['max_high'])}; "
            f"{gap['below_one']} interval(s) below 1; "
            f"sanity checks: {gap['sanity_violations']})"
        )
    text = (
        f"{passed}/{total} configurations within the factor"
        + (f" ({repeated} configuration(s) in two sweeps counted once)" if repeated else "")
        + "; "
        + "; ".join(parts)
    )
    return _row(
        "C5",
        text,
        thr,
        _verdict_from_fraction(passed, total, th["partly_fraction"]),
        plan,
        numbers,
        TRAINED,
        "intervals from the standard errors of both excess risks (evaluation and fresh samples, "
        "seed spread)",
    )


def verdict_c6(optimality: xr.Dataset | None, th: Mapping[str, float], plan=None) -> Verdict:
    thr = (
        "lower end of the interval of excess(best single head) / excess(best multi-head) > "
        f"{th['separation_ratio']:g} for every number of tasks ≥ 2"
    )
    if optimality is None:
        return _row("C6", "no task-count sweep", thr, UNMEASURED, plan)
    sep = measure_separation(optimality, th["separation_ratio"])
    if sep["total"] == 0:
        return _row("C6", "no configuration with ≥ 2 tasks", thr, UNMEASURED, plan)
    text = (
        f"{sep['passed']}/{sep['total']} configurations separated; ratio "
        + ", ".join(
            f"{fmt(r)} at {sep['x_name']} = {fmt(x)}" for x, r in zip(sep["x"], sep["ratio"])
        )
        + ("; increasing with tasks" if sep["increasing"] else "")
    )
    return _row(
        "C6",
        text,
        thr,
        _verdict_from_fraction(sep["passed"], sep["total"], th["partly_fraction"]),
        plan,
        {k: sep[k] for k in ("x_name", "x", "ratio", "low", "high")},
        SEARCH,
        "intervals from the fresh-sample standard errors of both best-in-class searches",
    )


def verdict_c7(
    runs: Sequence[RunData],
    th: Mapping[str, float],
    plan=None,
    surrogate: xr.Dataset | None = None,
    streams: Sequence[RunData] = (),
) -> Verdict:
    """Like with like: each trained run against gradient descent on the exact risk at its own lr
    (flow.nc ``train_gd_gap``, up to the trained emergence end), judged against the seed-to-seed
    spread of training at one init (``streams``: the median pairwise gap) plus the reference's
    Monte-Carlo gap; the flow's own time-step effect and the surrogate ODE are reported beside
    it."""
    flows = [(r, measure_flow(r)) for r in runs if r.flow is not None]
    flows = [(r, f) for r, f in flows if f["train_gd_gap"] is not None]
    spread = measure_stream_spread(streams)
    sur = measure_surrogate(surrogate)
    if spread["median_gap"] is not None:
        thr = (
            "largest |p_i(trained) − p_i(GD on the exact risk at the run's lr)| up to the trained "
            "emergence end ≤ the seed-to-seed "
            "spread of training (median largest gap between runs from one init with other data "
            "streams) + the reference's Monte-Carlo "
            "gap = agrees; above the largest spread + that gap = differs; between, or a floor ≥ "
            f"{th['ode_max_floor']:g}, = inconclusive. "
            f"All decisive runs agree = holds, ≥ {th['partly_fraction']:.0%} = holds partly"
        )
    else:
        thr = (
            "largest |p_i(trained) − p_i(GD on the exact risk at the run's lr)| up to the "
            f"trained emergence end ≤ {th['ode_gap']:g} "
            "(no seed-to-seed spread measured: no runs differing only in their data stream)"
        )
    if not flows:
        return _row(
            "C7",
            "no trained gradient-descent run with an exact flow",
            thr,
            UNMEASURED,
            plan,
            judged_on=BOTH,
        )
    rows = []
    for r, f in flows:
        if (
            spread["median_gap"] is not None
        ):  # within the typical spread: agrees; beyond the largest: differs; between: cannot tell
            floor, ceiling = (
                spread["median_gap"] + num(f["mc_gap"]),
                spread["max_gap"] + num(f["mc_gap"]),
            )
        else:  # no spread measured: a gap above the fixed threshold may be batch noise alone
            floor, ceiling = th["ode_gap"], math.inf
        gap = f["train_gd_gap"]
        state = "pass" if gap <= floor else ("fail" if gap > ceiling else "inconclusive")
        if (
            floor >= th["ode_max_floor"]
        ):  # a floor near the range of p_i: no gap could fail, so none may pass
            state = "inconclusive"
        rows.append(
            {
                "run": r.run,
                "gap": gap,
                "floor": floor,
                "ceiling": ceiling,
                "state": state,
                "flow_gd_gap": f["flow_gd_gap"],
                "train_flow_gap": f["train_flow_gap"],
                "mc_gap": f["mc_gap"],
            }
        )
    decisive = [row for row in rows if row["state"] != "inconclusive"]
    passed = sum(row["state"] == "pass" for row in decisive)
    if not decisive and all(row["floor"] >= th["ode_max_floor"] for row in rows):
        return _row(
            "C7",
            f"{len(rows)} trained runs, none decisive: their noise floor "
            f"{fmt(rows[0]['floor'], 2)} is at least "
            f"{th['ode_max_floor']:g} (verdicts.ode_max_floor; p_i runs from 0 to 1), so the gaps "
            f"{', '.join(fmt(row['gap'], 2) for row in rows)} to gradient descent on the exact "
            "risk could not "
            "fail (more data streams and a larger Monte-Carlo sample would lower it)",
            thr,
            INCONCLUSIVE,
            plan,
            {"runs": rows, "spread": spread},
            BOTH,
            f"seed-to-seed spread {fmt(spread['median_gap'], 2)} + Monte-Carlo gap "
            f"{fmt(max(num(row['mc_gap']) for row in rows), 2)}"
            if spread["median_gap"] is not None
            else "no seed-to-seed spread measured",
        )
    if not decisive:
        return _row(
            "C7",
            f"{len(rows)} trained runs, none decisive: gaps "
            f"{', '.join(fmt(row['gap'], 2) for row in rows)} to gradient descent on "
            f"the exact risk at their lr lie above {fmt(rows[0]['floor'], 2)} but not beyond what "
            "batch noise gives "
            + (
                "(the seed-to-seed spread was not measured)"
                if spread["median_gap"] is None
                else f"(largest spread {fmt(spread['max_gap'], 2)})"
            ),
            thr,
            INCONCLUSIVE,
            plan,
            {"runs": rows, "spread": spread},
            BOTH,
            "no seed-to-seed spread measured"
            if spread["median_gap"] is None
            else f"seed-to-seed spread {fmt(spread['median_gap'], 2)}–{fmt(spread['max_gap'], 2)}",
        )
    text = (
        f"{passed}/{len(rows)} trained runs agree with gradient descent on the exact risk at "
        f"their lr, {len(rows) - len(decisive)} "
        "inconclusive: gaps "
        + ", ".join(f"{fmt(row['gap'], 2)} ({row['run']})" for row in rows)
        + f" against a floor of {fmt(rows[0]['floor'], 2)}"
        + (
            f" (seed-to-seed spread: median {fmt(spread['median_gap'], 2)}, largest "
            f"{fmt(spread['max_gap'], 2)} over {len(spread['pairs'])} "
            f"pairs of {len(spread['runs'])} data streams; a gap beyond the largest spread differs)"
            if spread["median_gap"] is not None
            else ""
        )
        + "; the time step alone (exact flow against GD at the same lr) moves p_i by up to "
        f"{fmt(max(num(row['flow_gd_gap']) for row in rows), 2)}, "
        "so the trained runs differ from the exact flow by "
        f"{', '.join(fmt(row['train_flow_gap'], 2) for row in rows)} through emergence"
    )
    until = [f["surrogate_valid_until"] for _, f in flows if f["surrogate_valid_until"] is not None]
    if until:
        text += (
            "; the delta-method surrogate ODE (an approximation) follows the exact flow within "
            f"{fmt(flows[0][1]['surrogate_tolerance'], 2)} "
            f"in p_i up to t = {', '.join(fmt(u) for u in sorted(set(until)))}"
        )
    if sur["available"]:
        text += (
            f"; its risk is within {fmt(sur['tolerance'])} of Monte Carlo at "
            f"{sur['agree']}/{sur['total']} grid points"
        )
    floor_text = (
        f"seed-to-seed spread {fmt(spread['median_gap'], 2)} (median over {len(spread['pairs'])} "
        "pairs) + the reference's "
        f"Monte-Carlo gap ≤ {fmt(max(num(row['mc_gap']) for row in rows), 2)}; time step: "
        f"{fmt(max(num(row['flow_gd_gap']) for row in rows), 2)}"
        if spread["median_gap"] is not None
        else "no seed-to-seed spread measured"
    )
    verdict = _verdict_from_fraction(passed, len(decisive), th["partly_fraction"])
    return _row(
        "C7",
        text,
        thr,
        verdict,
        plan,
        {
            "runs": rows,
            "spread": spread,
            "surrogate_agree": sur["agree"],
            "surrogate_total": sur["total"],
        },
        BOTH,
        floor_text,
    )


def verdict_c8(runs: Sequence[RunData], th: Mapping[str, float], plan=None) -> Verdict:
    """On the noiseless dynamics: n_eff / L of the winning heads along the exact flow from each
    noise run's init, at the run's own last record (decides) and at the flow's horizon (reported);
    the trained runs' values beside it. Without flows, on the trained runs."""
    thr = (
        f"Spearman ρ(σ, n_eff/L of the winning heads) ≥ {th['regime_correlation']:g} = holds; > 0 "
        "= holds partly; "
        "≥ 3 noise levels; on the exact flow at the runs' last record time"
    )
    if not runs:
        return _row("C8", "no noise sweep", thr, UNMEASURED, plan)
    flow = measure_flow_regimes(runs)
    trained = measure_regimes(runs, th["regime_correlation"])
    if len(flow["noise_levels"]) < 3 or not math.isfinite(flow["spearman_run_end"]):
        return _verdict_c8_trained(trained, th, plan)
    rho = flow["spearman_run_end"]
    text = (
        f"exact flow: ρ = {fmt(rho)} at the runs' last record; mean n_eff/L of the winning heads "
        + ", ".join(
            f"{fmt(b['mean_neff_run_end'])} at σ = {fmt(b['noise_std'])}" for b in flow["by_noise"]
        )
        + f"; at the flow's horizon ρ = {fmt(flow['spearman_end'])} ("
        + ", ".join(fmt(b["mean_neff_end"]) for b in flow["by_noise"])
        + ")"
        + f"; trained runs (batch noise in W included): ρ = {fmt(trained['spearman'])} ("
        + ", ".join(fmt(b["mean_neff_over_L"]) for b in trained["by_noise"])
        + ")"
    )
    verdict = HOLDS if rho >= th["regime_correlation"] else (PARTLY if rho > 0 else FAILS)
    floor = (
        f"flow Monte-Carlo gap ≤ {fmt(max(num(p['mc_gap']) for p in flow['points']), 2)} in "
        "p_i; n_eff/L averages over the sample"
    )
    return _row(
        "C8",
        text,
        thr,
        verdict,
        plan,
        {
            "spearman": rho,
            "spearman_end": flow["spearman_end"],
            "spearman_trained": trained["spearman"],
            "noise_levels": flow["noise_levels"],
        },
        FLOW,
        floor,
    )


def _verdict_c8_trained(reg: Mapping[str, Any], th: Mapping[str, float], plan=None) -> Verdict:
    thr = (
        f"Spearman ρ(σ, n_eff/L of the winning heads) ≥ {th['regime_correlation']:g} = holds; > "
        "0 = holds partly (≥ 3 noise levels)"
    )
    if len(reg["noise_levels"]) < 3 or not math.isfinite(reg["spearman"]):
        return _row(
            "C8",
            f"n_eff / L available at {len(reg['noise_levels'])} noise levels (need ≥ 3)",
            thr,
            UNMEASURED,
            plan,
        )
    text = f"ρ = {fmt(reg['spearman'])}; mean n_eff/L of the winning heads " + ", ".join(
        f"{fmt(b['mean_neff_over_L'])} at σ = {fmt(b['noise_std'])}" for b in reg["by_noise"]
    )
    rho = reg["spearman"]
    verdict = HOLDS if rho >= th["regime_correlation"] else (PARTLY if rho > 0 else FAILS)
    return _row(
        "C8", text, thr, verdict, plan, {"spearman": rho, "noise_levels": reg["noise_levels"]}
    )


def verdict_c9(
    linear: Sequence[RunData],
    length: Sequence[RunData],
    nonlinear: Sequence[RunData],
    th: Mapping[str, float],
    plan=None,
) -> Verdict:
    thr = (
        "each measured extension passes its check — linear attention and nonlinear target: "
        f"allocation clean (purity ≥ {th['purity']:g}) in every run; "
        f"length: excess at every L' ≥ L ≤ {th['length_ratio']:g} × excess at the training L; all "
        "three measured and passing = holds"
    )
    checks, parts = [], []
    if linear:
        comp = measure_comparison(
            [r for r in linear if str(r.params["model"]) == "linear"] or linear, th["purity"]
        )
        ok = comp["total"] > 0 and comp["clean"] == comp["total"]
        checks.append(ok)
        parts.append(
            f"linear attention: allocation clean in {comp['clean']}/{comp['total']} "
            "linear-attention runs"
        )
    if length:
        gen = measure_length(length, th["length_ratio"])
        if gen["total"]:
            checks.append(gen["passed"] == gen["total"])
            worst = [
                r["worst_ratio_longer"] for r in gen["runs"] if r["worst_ratio_longer"] is not None
            ]
            parts.append(
                f"length: {gen['passed']}/{gen['total']} runs pass (largest excess ratio at L' > "
                f"L {fmt(max(worst) if worst else math.nan)})"
            )
        else:
            parts.append("length: no evaluation at L' ≠ L in the files")
    if nonlinear:
        comp = measure_comparison(
            [r for r in nonlinear if str(r.params["target"]) != "linear"] or nonlinear,
            th["purity"],
        )
        checks.append(comp["total"] > 0 and comp["clean"] == comp["total"])
        parts.append(f"nonlinear target: allocation clean in {comp['clean']}/{comp['total']} runs")
    missing = [
        name
        for name, runs in (
            ("linear attention", linear),
            ("length generalisation", length),
            ("nonlinear target", nonlinear),
        )
        if not runs
    ]
    if missing:
        parts.append("not measured: " + ", ".join(missing))
    if not checks:
        return _row("C9", "; ".join(parts), thr, UNMEASURED, plan)
    verdict = HOLDS if all(checks) and len(checks) == 3 else (PARTLY if any(checks) else FAILS)
    return _row(
        "C9",
        "; ".join(parts),
        thr,
        verdict,
        plan,
        {"checks": checks},
        TRAINED,
        "evaluation-set standard errors of the risks; purity of single runs",
    )


def verdict_q1(
    practical: Sequence[RunData] | None,
    th: Mapping[str, float],
    plan=None,
    diverged: Sequence[str] = (),
) -> Verdict:
    """Do the heads still split the tasks in a practical transformer and on real-data prompts? Read
    by head ablation on the evaluation set (``measurements.measure_practical``), with the noise
    read against each call; how close the models get to ridge is reported beside it, with the
    paired standard error of the ratio. ``practical`` None: Q1 is not asked in this setting."""
    thr = (
        "a run splits the tasks when it has learned (risk 2 standard errors below predicting "
        f"zero) and, at the end, some layer has every task's ablation purity ≥ {th['purity']:g} "
        "with distinct winners (H ≥ I), each purity staying above the threshold with the risk "
        "increases moved 2 standard errors against it; every run splits = holds; some run "
        "splits, or is clean and decided at a snapshot after half its drop in risk = holds "
        "partly; every run decided not to split (some purity below the threshold with the "
        "increases moved 2 standard errors in any head's favour), with no clean snapshot = does "
        "not hold; otherwise inconclusive"
    )
    if practical is None:
        return _row("Q1", "judged in the reconstructed setting only", thr, UNMEASURED, plan)
    m = measure_practical(practical, th["purity"])
    if not m["total"]:
        text = "no run read out by head ablation"
        if diverged:
            text += "; diverged: " + "; ".join(diverged)
        return _row("Q1", text, thr, UNMEASURED, plan)
    parts = []
    for r in m["runs"]:
        where = f"layer {r['split_layer'] + 1}" if r["layers"] > 1 and r["splits"] else "its heads"
        if not r["learned"]:
            split = "has not learned (risk within 2 standard errors of predicting zero)"
        elif r["splits"]:
            split = f"splits the tasks in {where}"
        else:
            split = "does not split them" if r["decided"] else "undecided within the noise"
        if r["clean_times"] and not r["splits"]:
            split += (
                f" at the end (clean at {len(r['clean_times'])} of {r['snapshots']} snapshots, "
                f"t = {fmt(r['clean_times'][0])} to {fmt(r['clean_times'][-1])})"
            )
        elif r["clean_undecided_times"] and not r["splits"]:
            split += f" (clean but undecided at {len(r['clean_undecided_times'])} snapshots)"
        elif r["snapshots"] and not r["splits"]:
            split += f" (clean at none of {r['snapshots']} snapshots over training)"
        gap = (
            f", ablation vs spectral shares within {fmt(r['spectral_gap'])}"
            if r["spectral_gap"] is not None
            else ""
        )
        parts.append(
            f"{r['run']}: {split}; risk {fmt(r['risk'])} ± {fmt(r['risk_se'])} = "
            f"{fmt(r['ridge_ratio'])} ± {fmt(r['ridge_ratio_se'])} × tuned ridge{gap}"
        )
    if diverged:
        parts.append("left out, diverged: " + "; ".join(diverged))
    never_clean = all(not r["clean_times"] and not r["clean_undecided_times"] for r in m["runs"])
    if m["split"] == m["total"]:
        verdict = HOLDS
    elif m["split"] or m["transient"]:
        verdict = PARTLY
    elif all(r["decided"] for r in m["runs"]) and never_clean:
        verdict = FAILS
    else:
        verdict = INCONCLUSIVE
    return _row(
        "Q1",
        "; ".join(parts),
        thr,
        verdict,
        plan,
        {"split": m["split"], "total": m["total"], "runs": m["runs"]},
        TRAINED,
        "paired Monte-Carlo standard errors of the ablation risk increases and of the gap to "
        "ridge on the evaluation set (for real data conditional on its held-out rows: prompts "
        "reuse them); one seed per run",
    )


def streams_with_reference(
    streams: Sequence[RunData], allocation: Sequence[RunData]
) -> list[RunData]:
    """The stream runs and the allocation run they share their init with (same parameters but the
    data stream, the number of steps and the evaluation keys), whose record times they share up to
    its own emergence."""
    ignore = {"data_stream", "steps", "record_points", *EVALUATION_KEYS}

    def key(r: RunData) -> str:
        return json.dumps(
            {k: v for k, v in r.params.items() if k not in ignore}, sort_keys=True, default=str
        )

    keys = {key(r) for r in streams}
    return list(streams) + [r for r in allocation if key(r) in keys]


def build_verdicts(
    runs: Sequence[RunData],
    optimality: Mapping[str, xr.Dataset],
    settings: Mapping[str, Any],
    given_thresholds: Mapping[str, Any] | None,
    plan: Sequence[Mapping[str, Any]] | None = None,
    surrogate: xr.Dataset | None = None,
    practical: Sequence[RunData] | None = None,
) -> list[Verdict]:
    """The nine claims' verdicts and question Q1's from the loaded files. ``settings`` is the
    ``figures`` config section (which experiment measures which claim); ``practical`` are the runs
    read out by head ablation (Q1; None where the setting does not ask it)."""
    th = thresholds(given_thresholds)
    by_exp: dict[str, list[RunData]] = {}
    for r in runs:
        by_exp.setdefault(r.experiment, []).append(r)

    def exp(key: str) -> list[RunData]:
        names = as_list(settings.get(key))
        return [r for n in names for r in by_exp.get(n, [])]

    allocation, warmup = exp("allocation"), exp("warmup")
    phase_runs = distinct_runs(allocation + warmup)
    gd_runs = distinct_runs([r for r in allocation if str(r.params["optimizer"]) == "gd"])
    opt_names = [n for n in as_list(settings.get("optimality")) if n in optimality]
    sep_name = settings.get("separation")
    return [
        verdict_c1(runs, th, plan, trained=distinct_runs(allocation)),
        verdict_c2(phase_runs, warmup, th, plan, flow_runs=runs),
        verdict_c3(allocation, th, plan),
        verdict_c4(exp("winner"), th, plan),
        verdict_c5({n: optimality[n] for n in opt_names}, th, plan),
        verdict_c6(optimality.get(sep_name) if sep_name else None, th, plan),
        verdict_c7(
            gd_runs, th, plan, surrogate, streams=streams_with_reference(exp("streams"), allocation)
        ),
        verdict_c8(exp("regimes"), th, plan),
        verdict_c9(exp("linear"), exp("length"), exp("nonlinear"), th, plan),
        verdict_q1(
            None if practical is None else [r for r in practical if not r.diverged],
            th,
            plan,
            [divergence_note(r) for r in practical or () if r.diverged],
        ),
    ]
