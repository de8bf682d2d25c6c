"""Eval reports. Called by evals.runner after all runs finish (and by `ama eval --report-only`); turns DIR/results.json
and DIR/series/*.json into DIR/report.md and PNG plots (DIR/plots/<scenario>.png and DIR/plots/frontier.png).

Every number in the report is the mean over the seeds that produced it; with two or more such seeds it is followed by
"± h", the half-width of the 95% Student t confidence interval of that mean: h = t(0.975, n - 1) * s / sqrt(n), with s
the sample standard deviation over the n seeds. The t quantiles are hard-coded for 1..30 degrees of freedom;
beyond that the normal 1.96 is used. Ratios (cost/HPA, cost/oracle, violation minutes/HPA) are per-seed ratios, the
controller's value over the baseline's value on the same seed, then averaged the same way; they show "–" when the
baseline was not run, failed, or is 0 on every seed. "cost/bound @ own SLA" is per seed too: the run's cost over the
``bound`` record's frontier cost at the run's own ok_requests (evals.bound.step_bound), ≥ 1 by construction.
Failed runs and null metrics are left out of every mean.

Run it on its own with ``python -m evals.report DIR``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported: files only, no display needed
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import LogFormatter
from matplotlib.transforms import blended_transform_factory

from evals.bound import step_bound
from simulators.metrics import VIOLATION_MINUTE_THRESHOLD

BASELINE = "hpa"
"""The controller every cost and violation ratio is taken against."""
ORACLE = "oracle"
"""The clairvoyant heuristic (local_agents.oracle): a controller that knows the future load, not a bound."""
BOUND = "bound"
"""The pseudo-controller of evals.runner whose records hold evals.bound's frontier: a true lower bound on cost."""
BOUND_HEADER = "cost/bound @ own SLA"
DASH = "–"
"""A cell with nothing to show: no successful run, a null metric, or a ratio without its baseline."""

T_975: tuple[float, ...] = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
"""Student t quantiles t(0.975, df) for df = 1..30 (two-sided 95%); Z_975 beyond."""
Z_975 = 1.96

PALETTE = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "navy", "gold")
"""Controller colors, by the controller's place in results.json's list (red is kept for anomalies, black for load)."""
ANOMALY_COLOR = "tab:red"
SCENARIO_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "p", "h", "*")

# (header, metric, scale): the per-scenario table's plain metric columns, in order.
RATE_COLUMNS: tuple[tuple[str, str, float], ...] = (
    ("SLA violations %", "sla_violation_rate", 100.0),
    ("violation min", "sla_violation_minutes", 1.0),
    ("p95 ms", "p95_latency_ms", 1.0),
    ("p99 ms", "p99_latency_ms", 1.0),
    ("cost", "cost", 1.0),
)
COUNT_COLUMNS: tuple[tuple[str, str, float], ...] = (
    ("energy kWh", "energy_kwh", 1.0),
    ("cold starts", "cold_starts", 1.0),
    ("drops", "drops", 1.0),
)
SCENARIO_HEADER = (
    "controller",
    "runs ok",
    *(c[0] for c in RATE_COLUMNS),
    "cost/HPA",
    "cost/oracle",
    BOUND_HEADER,
    "violation min/HPA",
    *(c[0] for c in COUNT_COLUMNS),
    "time to recover s",
    "expectations passed",
)


@dataclass(frozen=True)
class Stat:
    """A mean over seeds; ``half_width`` is the 95% CI half-width, None with fewer than two values."""

    mean: float
    half_width: float | None
    n: int


@dataclass(frozen=True)
class Layout:
    """results.json indexed: valid scenarios and controllers in run order, and each (scenario, controller)'s records."""

    results: dict[str, Any]
    scenarios: list[str]
    controllers: list[str]
    seeds: list[Any]
    thresholds: dict[str, float]
    groups: dict[tuple[str, str], list[dict[str, Any]]]

    def records(self, scenario: str, controller: str) -> list[dict[str, Any]]:
        return self.groups.get((scenario, controller), [])


# ---------------------------------------------------------------------------------------------------------------------
# Loading


def load_results(out_dir: Path) -> dict[str, Any]:
    """DIR/results.json as written by evals.runner."""
    return json.loads((out_dir / "results.json").read_text())


def ordered_union(first: Iterable[Any], second: Iterable[Any]) -> list[Any]:
    """Items of ``first`` then the new ones of ``second``, each once, in order."""
    out: list[Any] = []
    for item in [*first, *second]:
        if item not in out:
            out.append(item)
    return out


def build_layout(results: dict[str, Any]) -> Layout:
    runs: list[dict[str, Any]] = results.get("runs") or []
    scenarios = results.get("scenarios") or []
    valid = [s["name"] for s in scenarios if not s.get("error")]
    invalid = {s.get("name") for s in scenarios if s.get("error")}
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in sorted(runs, key=seed_key):
        groups.setdefault((record["scenario"], record["controller"]), []).append(record)
    return Layout(
        results=results,
        scenarios=ordered_union(valid, (r["scenario"] for r in runs if r["scenario"] not in invalid)),
        controllers=ordered_union(results.get("controllers") or [], (r["controller"] for r in runs)),
        seeds=list(results.get("seeds") or []),
        thresholds={s["name"]: t for s in scenarios if (t := number(s.get("threshold"))) is not None},
        groups=groups,
    )


def seed_key(record: dict[str, Any]) -> tuple[int, float, str]:
    """Runs in seed order (numbers first, smallest first): a group's first run is its first seed."""
    seed = number(record.get("seed"))
    return (0, seed, "") if seed is not None else (1, 0.0, str(record.get("seed")))


def load_series(out_dir: Path, record: dict[str, Any]) -> dict[str, Any] | None:
    """The run's downsampled series, or None when it has none or the file is missing or unreadable."""
    name = record.get("series_file")
    if record.get("status") != "ok" or not name:
        return None
    try:
        data = json.loads((out_dir / name).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("time_s") else None


# ---------------------------------------------------------------------------------------------------------------------
# Statistics


def number(value: Any) -> float | None:
    """A finite float, or None for null, NaN, infinities and anything that is not a number."""
    if isinstance(value, bool):
        return float(value)
    if not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def t_quantile(df: int) -> float:
    """t(0.975, df): the two-sided 95% Student t quantile (1.96 beyond 30 degrees of freedom)."""
    return T_975[df - 1] if df <= len(T_975) else Z_975


def mean_ci(values: Sequence[float]) -> Stat | None:
    """Mean and 95% CI half-width (Student t, sample standard deviation); None for no values."""
    n = len(values)
    if n == 0:
        return None
    mean = sum(values) / n
    if n < 2:
        return Stat(mean, None, n)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return Stat(mean, t_quantile(n - 1) * sd / math.sqrt(n), n)


def geometric_mean(values: Sequence[float]) -> float | None:
    positive = [v for v in values if v > 0]
    return math.exp(sum(math.log(v) for v in positive) / len(positive)) if positive else None


def ok_runs(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("status") == "ok" and isinstance(r.get("metrics"), dict)]


def by_seed(records: Sequence[dict[str, Any]], metric: str) -> dict[Any, float]:
    """The metric's non-null values of the successful runs, keyed by seed."""
    return {r["seed"]: v for r in ok_runs(records) if (v := number(r["metrics"].get(metric))) is not None}


def seed_ratios(records: Sequence[dict[str, Any]], baseline: Sequence[dict[str, Any]], metric: str) -> list[float]:
    """Per-seed ratios of the metric to the baseline's on the same seed (seeds where the baseline is 0 or missing are skipped)."""
    num, den = by_seed(records, metric), by_seed(baseline, metric)
    return [num[seed] / den[seed] for seed in num if den.get(seed)]


def unrecovered(record: dict[str, Any]) -> bool:
    """Whether the run had an anomaly it never recovered from before the run ended."""
    metrics = record["metrics"]
    if (number(metrics.get("unrecovered_anomalies")) or 0) > 0:
        return True
    return any(isinstance(r, dict) and r.get("recover_s") is None for r in metrics.get("recoveries") or [])


def expectation_counts(records: Sequence[dict[str, Any]]) -> tuple[int, int]:
    """(passed, checked) over the successful runs' expectations."""
    checked = [e for r in ok_runs(records) for e in r.get("expectations") or []]
    return sum(bool(e.get("passed")) for e in checked), len(checked)


# ---------------------------------------------------------------------------------------------------------------------
# Formatting


def fmt(x: float) -> str:
    """A number with about three significant digits, thousands separated, never in exponent form above 0.0001."""
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 1e-4:
        return f"{x:.3g}"
    return f"{x:.2e}"


def fmt_exact(x: Any) -> str:
    """A bound or a measured value as checked (six significant digits), "missing" for null."""
    value = number(x)
    return "missing" if value is None else f"{value:.6g}"


def stat_cell(values: Sequence[float], scale: float = 1.0) -> str:
    stat = mean_ci([v * scale for v in values])
    if stat is None:
        return DASH
    if stat.half_width is None:
        return fmt(stat.mean)
    noise = stat.half_width <= 1e-9 * abs(stat.mean)  # equal values that differ in their last bits
    return f"{fmt(stat.mean)} ± {fmt(0.0 if noise else stat.half_width)}"


def value_cell(value: float | None, scale: float = 1.0) -> str:
    return DASH if value is None else fmt(value * scale)


def md_escape(text: Any) -> str:
    """Text safe inside a markdown table cell: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def md_code(text: str) -> str:
    """An inline code span that survives backticks in ``text``."""
    fence = "``" if "`" in text else "`"
    return f"{fence} {text} {fence}" if fence == "``" else f"`{text}`"


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int = 1) -> list[str]:
    """A markdown table, the first ``text_columns`` columns left-aligned, the others (numbers) right-aligned."""
    align = [":---" if k < text_columns else "---:" for k in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    return [*lines, *("| " + " | ".join(md_escape(c) for c in row) + " |" for row in rows)]


def bound_text(expectation: dict[str, Any]) -> str:
    low, high = number(expectation.get("min")), number(expectation.get("max"))
    if low is not None and high is not None:
        return f"in [{fmt_exact(low)}, {fmt_exact(high)}]"
    if high is not None:
        return f"≤ {fmt_exact(high)}"
    return f"≥ {fmt_exact(low)}" if low is not None else DASH


def file_stem(name: str) -> str:
    """A scenario name made safe as a file name and a markdown link target."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "scenario"


# ---------------------------------------------------------------------------------------------------------------------
# Tables


def ratio_cell(layout: Layout, scenario: str, records: Sequence[dict[str, Any]], baseline: str, metric: str) -> str:
    if baseline not in layout.controllers:
        return DASH
    return stat_cell(seed_ratios(records, layout.records(scenario, baseline), metric))


def bound_ratios(layout: Layout, scenario: str, controller: str) -> list[float]:
    """Per seed: the run's cost over the bound at its own ok_requests (the same scenario and seed's frontier)."""
    if controller == BOUND:
        return []
    frontiers = {r["seed"]: r["metrics"].get("bound") for r in ok_runs(layout.records(scenario, BOUND))}
    ratios = []
    for r in ok_runs(layout.records(scenario, controller)):
        cost, ok = number(r["metrics"].get("cost")), number(r["metrics"].get("ok_requests"))
        found = frontiers.get(r["seed"])
        if cost is None or ok is None or not isinstance(found, dict):
            continue
        bound = step_bound(found.get("points") or [], ok)
        if bound is not None and bound > 0:
            ratios.append(cost / bound)
    return ratios


def recover_cell(records: Sequence[dict[str, Any]]) -> str:
    """Mean time to recover over the runs that recovered, with how many runs did not."""
    ok = ok_runs(records)
    cell = stat_cell(list(by_seed(ok, "time_to_recover_s").values()))
    missed = sum(unrecovered(r) for r in ok)
    if not missed:
        return cell
    return f"{cell}; {missed} not recovered" if cell != DASH else f"{missed} not recovered"


def scenario_row(layout: Layout, scenario: str, controller: str) -> list[str]:
    records = layout.records(scenario, controller)
    passed, checked = expectation_counts(records)
    return [
        controller,
        f"{len(ok_runs(records))}/{len(records)}",
        *(stat_cell(list(by_seed(records, metric).values()), scale) for _, metric, scale in RATE_COLUMNS),
        ratio_cell(layout, scenario, records, BASELINE, "cost"),
        ratio_cell(layout, scenario, records, ORACLE, "cost"),
        stat_cell(bound_ratios(layout, scenario, controller)),
        ratio_cell(layout, scenario, records, BASELINE, "sla_violation_minutes"),
        *(stat_cell(list(by_seed(records, metric).values()), scale) for _, metric, scale in COUNT_COLUMNS),
        recover_cell(records),
        f"{passed}/{checked}" if checked else DASH,
    ]


def scenario_mean(records: Sequence[dict[str, Any]], metric: str) -> float | None:
    stat = mean_ci(list(by_seed(records, metric).values()))
    return None if stat is None else stat.mean


def scenario_ratio(layout: Layout, scenario: str, controller: str, baseline: str, metric: str) -> float | None:
    """The scenario's mean per-seed ratio of the controller's metric to the baseline's."""
    if baseline not in layout.controllers:
        return None
    stat = mean_ci(seed_ratios(layout.records(scenario, controller), layout.records(scenario, baseline), metric))
    return None if stat is None else stat.mean


def manager_keys(layout: Layout) -> list[str]:
    """The manager metrics any run reported, in order of first appearance."""
    runs = ok_runs(layout.results.get("runs") or [])
    return ordered_union([], (k for r in runs if isinstance(r["metrics"].get("manager"), dict) for k in r["metrics"]["manager"]))


def manager_cell(records: Sequence[dict[str, Any]], key: str) -> str:
    managers = [r["metrics"].get("manager") for r in ok_runs(records)]
    return stat_cell([v for m in managers if isinstance(m, dict) and (v := number(m.get(key))) is not None])


def aggregate_row(layout: Layout, controller: str, keys: Sequence[str]) -> list[str]:
    """One controller over all scenarios; each scenario weighs the same (its mean over seeds)."""
    per_scenario = [layout.records(s, controller) for s in layout.scenarios]
    records = [r for group in per_scenario for r in group]
    rates = [m for group in per_scenario if (m := scenario_mean(group, "sla_violation_rate")) is not None]
    minutes = [m for group in per_scenario if (m := scenario_mean(group, "sla_violation_minutes")) is not None]
    recover = [m for group in per_scenario if (m := scenario_mean(group, "time_to_recover_s")) is not None]
    cost_hpa = [r for s in layout.scenarios if (r := scenario_ratio(layout, s, controller, BASELINE, "cost")) is not None]
    cost_oracle = [r for s in layout.scenarios if (r := scenario_ratio(layout, s, controller, ORACLE, "cost")) is not None]
    cost_bound = [stat.mean for s in layout.scenarios if (stat := mean_ci(bound_ratios(layout, s, controller))) is not None]
    passed, checked = expectation_counts(records)
    return [
        controller,
        str(sum(bool(ok_runs(group)) for group in per_scenario)),
        value_cell(sum(rates) / len(rates) if rates else None, 100.0),
        value_cell(sum(minutes) if minutes else None),
        value_cell(geometric_mean(cost_hpa)),
        value_cell(geometric_mean(cost_oracle)),
        value_cell(geometric_mean(cost_bound)),
        value_cell(sum(recover) / len(recover) if recover else None),
        f"{passed}/{checked}" if checked else DASH,
        str(len(records) - len(ok_runs(records))),
        *(manager_cell(records, key) for key in keys),
    ]


def aggregate_section(layout: Layout) -> list[str]:
    keys = manager_keys(layout)
    header = [
        "controller",
        "scenarios ok",
        "mean SLA violations %",
        "total violation min",
        "geo-mean cost/HPA",
        "geo-mean cost/oracle",
        f"geo-mean {BOUND_HEADER}",
        "mean time to recover s",
        "expectations passed",
        "failed runs",
        *(f"manager: {k.replace('_', ' ')}" for k in keys),
    ]
    rows = [aggregate_row(layout, c, keys) for c in layout.controllers]
    notes = [
        "",
        "Each scenario weighs the same: its mean over seeds. SLA violations % and time to recover are means over the "
        "scenarios, violation minutes their sum, cost ratios the geometric mean of the scenarios' mean per-seed ratios; "
        '"scenarios ok" counts the scenarios with at least one successful run, which all of these are taken over.',
    ]
    if keys:
        notes.append("Manager columns are means over the runs that reported them, ± the 95% CI half-width.")
    return ["## All scenarios", "", *md_table(header, rows), *notes, ""]


def head_to_head_rows(layout: Layout) -> list[list[str]]:
    """Each controller against HPA, and each controller with a manager against the same controller without one, over
    the scenarios where both have runs: the ratio of their summed violation minutes, the geometric mean of the
    per-scenario cost ratios, and on how many scenarios it did worse (over 1.1x the violation minutes, more drops)
    or at least as well."""
    rows = []
    pairs = [(c, BASELINE) for c in layout.controllers if c not in (BASELINE, BOUND)]
    pairs += [(c, c.partition("+")[0]) for c in layout.controllers if "+" in c and c.partition("+")[0] in layout.controllers]
    for controller, against in pairs:
        if against not in layout.controllers:
            continue
        both = [s for s in layout.scenarios if ok_runs(layout.records(s, controller)) and ok_runs(layout.records(s, against))]
        if not both:
            continue

        def means(metric: str, name: str, scenarios: list[str] = both) -> list[float]:
            return [scenario_mean(layout.records(s, name), metric) or 0.0 for s in scenarios]

        mine, theirs = means("sla_violation_minutes", controller), means("sla_violation_minutes", against)
        drops, their_drops = means("drops", controller), means("drops", against)
        costs = [r for s in both if (r := scenario_ratio(layout, s, controller, against, "cost")) is not None]
        worse = sum(m > 1.1 * t + 1e-9 for m, t in zip(mine, theirs, strict=True))
        at_most = sum(m <= t + 1e-9 for m, t in zip(mine, theirs, strict=True))
        more_drops = sum(d > t + 0.5 for d, t in zip(drops, their_drops, strict=True))
        rows.append([
            controller, against, str(len(both)),
            value_cell(sum(mine) / sum(theirs) if sum(theirs) > 0 else None), value_cell(geometric_mean(costs)),
            f"{at_most} ({at_most / len(both):.0%})", str(worse), str(more_drops),
        ])  # fmt: skip
    return rows


def table_section(title: str, header: Sequence[str], rows: Sequence[Sequence[str]], note: str, text_columns: int = 1) -> list[str]:
    """A report section: its title, the table and the sentence under it; nothing when there are no rows."""
    return [f"## {title}", "", *md_table(header, rows, text_columns), "", note, ""] if rows else []


def head_to_head_section(layout: Layout) -> list[str]:
    header = [
        "controller", "against", "scenarios", "violation min ratio", "geo-mean cost ratio",
        "scenarios at or under its violation min", "scenarios over 1.1x its violation min", "scenarios with more drops",
    ]  # fmt: skip
    note = (
        "Violation min ratio: the controller's violation minutes summed over the scenarios over the other's (each "
        "scenario its mean over seeds); cost ratio: geometric mean over scenarios of the mean per-seed cost ratio."
    )
    return table_section("Head to head", header, head_to_head_rows(layout), note, text_columns=2)


def detection_rows(layout: Layout) -> list[list[str]]:
    """Per controller that ran with a manager, per anomaly type: the detectors' counts pooled over every run."""
    rows = []
    for controller in layout.controllers:
        pooled: dict[str, dict[str, Any]] = {}
        for scenario in layout.scenarios:
            for record in ok_runs(layout.records(scenario, controller)):
                for kind, counts in (record["metrics"].get("detection") or {}).items():
                    total = pooled.setdefault(kind, {"injected": 0, "detected": 0, "reported": 0, "true_reports": 0, "detect_s": []})
                    for key in ("injected", "detected", "reported", "true_reports"):
                        total[key] += int(counts.get(key) or 0)
                    total["detect_s"] += list(counts.get("detect_s") or [])
        for kind, t in sorted(pooled.items()):
            precision = t["true_reports"] / t["reported"] if t["reported"] else None
            recall = t["detected"] / t["injected"] if t["injected"] else None
            delay = sum(t["detect_s"]) / len(t["detect_s"]) if t["detect_s"] else None
            rows.append([
                controller, kind, str(t["injected"]), str(t["detected"]), str(t["reported"]),
                value_cell(precision), value_cell(recall), value_cell(delay),
            ])  # fmt: skip
    return rows


def detection_section(layout: Layout) -> list[str]:
    header = ["controller", "anomaly", "injected", "detected", "reported", "precision", "recall", "mean time to detect s"]
    note = (
        "Pooled over every run with the manager: an injected anomaly is detected by the first report of its type on "
        "its target within 180 s; precision is the share of reports that match an injected anomaly in force "
        "(evals.detection). Bursts are found in the arrivals, not injected as events."
    )
    return table_section("Anomaly detection", header, detection_rows(layout), note, text_columns=2)


TWIN_KEYS = ("sla_violation_minutes", "cost")


def twin_rows(layout: Layout) -> list[list[str]]:
    """Per controller with a verified manager, per anomaly type: the twin's absolute error (predicted minus
    realized over its horizon), median and p90, for the plan each incident went with."""
    rows = []
    for controller in layout.controllers:
        pooled: dict[str, list[dict[str, Any]]] = {}
        for scenario in layout.scenarios:
            for record in ok_runs(layout.records(scenario, controller)):
                for check in record["metrics"].get("twin_checks") or []:
                    pooled.setdefault(check["type"], []).append(check)
                    pooled.setdefault("all", []).append(check)
        for kind in sorted(pooled, key=lambda k: (k == "all", k)):
            checks = pooled[kind]
            cells = [controller, kind, str(len(checks)), str(sum(c["other_changes"] == 0 for c in checks))]
            for key in TWIN_KEYS:
                errors = np.abs([c["predicted"][key] - c["realized"][key] for c in checks])
                realized = float(np.median([abs(c["realized"][key]) for c in checks]))
                cells += [fmt(float(np.median(errors))), fmt(float(np.quantile(errors, 0.9))), fmt(realized)]
            rows.append(cells)
    return rows


def twin_section(layout: Layout) -> list[str]:
    header = ["controller", "anomaly", "plans", "unconfounded", "viol. min err median", "p90", "realized median",
              "cost err median $", "p90 $", "realized median $"]  # fmt: skip
    note = (
        "The what-if twin (manager.verify) forecasts arrivals from the past only; after its horizon the runtime sets "
        "what happened beside what the twin predicted for the plan chosen (the status quo when none was). "
        "'unconfounded': plans with no other weight change inside their horizon."
    )
    return table_section("Twin prediction error", header, twin_rows(layout), note, text_columns=2)


def stability_rows(layout: Layout) -> list[list[str]]:
    """Per controller: scale moves and the share undone within 10 s (pooled), and what its shield and OOD guard did."""
    rows = []
    for controller in layout.controllers:
        records = [r for s in layout.scenarios for r in ok_runs(layout.records(s, controller))]
        moves = sum(number(r["metrics"].get("scale_moves")) or 0.0 for r in records)
        if not records or controller == BOUND:
            continue
        undone = sum(number(r["metrics"].get("moves_undone_10s")) or 0.0 for r in records)
        own = [r["metrics"].get("controller") or {} for r in records]
        shielded = sum(v for m in own for k, v in m.items() if k.startswith("shielded_"))
        node_ticks = sum(m.get("node_ticks", 0) for m in own)
        ood = sum(m.get("ood_node_ticks", 0) for m in own)
        rows.append([
            controller, f"{moves:.0f}", value_cell(undone / moves if moves else None, 100.0),
            f"{shielded:.0f}" if node_ticks else DASH, value_cell(ood / node_ticks if node_ticks else None, 100.0),
        ])  # fmt: skip
    return rows


def stability_section(layout: Layout) -> list[str]:
    header = ["controller", "scale moves", "undone within 10 s %", "moves shielded", "node-ticks out of distribution %"]
    note = (
        "A scale move is a cell's replica count changing on a node that stayed on; undone: reversed within 10 s "
        "(simulators.metrics). Shielded moves and out-of-distribution node-ticks are the MARL controller's own counts."
    )
    return table_section("Flapping, shield and OOD guard", header, stability_rows(layout), note)


def scenario_facts(layout: Layout, scenario: str, controllers: Sequence[str]) -> str:
    """One line: the scenario's file, its recovery threshold and its seeds."""
    files = {s.get("file") for s in layout.results.get("scenarios") or [] if s.get("name") == scenario} - {None}
    facts = [f"File {md_code(str(f))}" for f in sorted(files)]
    if scenario in layout.thresholds:
        facts.append(f"recovery threshold: SLA violations < {fmt(layout.thresholds[scenario] * 100)} %")
    records = sorted((r for c in controllers for r in layout.records(scenario, c)), key=seed_key)
    seeds = ordered_union([], (str(r.get("seed")) for r in records))
    if seeds:
        facts.append(f"seeds {', '.join(seeds)}")
    return "; ".join(facts) + "."


def scenario_section(layout: Layout, scenario: str, plot: Path | None, out_dir: Path) -> list[str]:
    controllers = [c for c in layout.controllers if layout.records(scenario, c)]
    lines = [f"## {scenario}", "", scenario_facts(layout, scenario, controllers), ""]
    if not controllers:
        return [*lines, "_No runs._", ""]
    lines += md_table(SCENARIO_HEADER, [scenario_row(layout, scenario, c) for c in controllers])
    lines.append("")
    if plot is None:
        lines += ["_No time series to plot (every run failed or its series is empty)._", ""]
    else:
        lines += [f"![{md_escape(scenario)}: load, replicas, p95 latency and SLA violations]({plot.relative_to(out_dir).as_posix()})", ""]
    return lines


def failed_expectations_section(layout: Layout) -> list[str]:
    rows = [
        [r["scenario"], r["controller"], str(r["seed"]), str(e.get("metric")), bound_text(e), fmt_exact(e.get("value"))]
        for r in ok_runs(layout.results.get("runs") or [])
        for e in r.get("expectations") or []
        if not e.get("passed")
    ]
    lines = ["## Failed expectations", ""]
    if not rows:
        return [*lines, "Every expectation of every successful run held.", ""]
    return [*lines, *md_table(["scenario", "controller", "seed", "metric", "bound", "value"], rows, text_columns=4), ""]


def header_section(layout: Layout) -> list[str]:
    results = layout.results
    runs = results.get("runs") or []
    failed = [r for r in runs if r.get("status") != "ok"]
    invalid = [s for s in results.get("scenarios") or [] if s.get("error")]
    lines = [
        f"# Eval report: {results.get('suite', '?')}",
        "",
        f"- Date: {results.get('created_at', '?')}",
        f"- Command: {md_code(str(results.get('command', '?')))}",
        f"- Controllers: {', '.join(layout.controllers) or 'none'}",
        f"- Seeds: {', '.join(str(s) for s in layout.seeds) or 'none'}"
        + (f" ({results['seed_rule']})" if results.get("seed_rule") else ""),
        f"- Scenarios: {len(layout.scenarios)} valid, {len(invalid)} invalid",
        f"- Runs: {len(runs)} ({len(runs) - len(failed)} ok, {len(failed)} failed)",
        "",
    ]
    if failed:
        lines += ["### Failed runs", ""]
        lines += [
            f"- {r['scenario']} / {r['controller']} / seed {r['seed']}: {md_escape(r.get('error') or 'no error given')}" for r in failed
        ]
        lines.append("")
    if invalid:
        lines += ["### Invalid scenarios", ""]
        lines += [f"- {md_code(str(s.get('file') or s.get('name')))}: {md_escape(s['error'])}" for s in invalid]
        lines.append("")
    return lines


def how_to_read() -> list[str]:
    return [
        "## How to read this",
        "",
        "Each row is one controller on the same scenario and seeds. **Cost** is the replicas' pay-per-use cost over the run "
        "(the scenario's node prices per hour, paid for the share of each node the replicas hold); it is not the bill of the "
        "powered nodes. **Violation minutes** are minutes in which more than "
        f"{fmt(VIOLATION_MINUTE_THRESHOLD * 100)}% of the finished requests missed their SLO. "
        "The **oracle** is a clairvoyant heuristic: it knows the future load but sizes each second from that second's "
        "arrivals and ignores queues, so it is no bound (after a burst it can drop what is still queued; a controller can beat it on both "
        "cost and violations); cost/oracle is the distance to that heuristic. The **bound** row is no run: it is a true "
        "lower bound on cost (evals.bound, a linear relaxation of the simulator with full knowledge of the future, one per "
        "scenario and seed), shown where 1% of the requests it could finish within their SLO do not (its SLA violations % "
        "is a share of the arrivals, not of the finished requests). **cost/bound @ own SLA** divides a run's cost by the "
        "least cost at which any controller could finish as many requests within their SLO as that run did (the bound's "
        "frontier point with the largest target at or below the run's count, never interpolated): it is at least 1, and "
        "what lies above 1 is room left partly to controllers and partly to the relaxation (node resources, placement, "
        "cold starts and the M/M/c waiting tail are relaxed away, so it is loose). "
        'Every cell is the mean over the seeds that produced a value; "± h" is the half-width of the 95% confidence '
        "interval of that mean (Student t with n - 1 degrees of freedom, h = t(0.975, n - 1) · s / √n), shown with two or "
        'more seeds. Ratios are taken per seed against the baseline on the same seed, then averaged; "–" means there is '
        "nothing to show (no successful run, a null metric, or the baseline was not run or is 0). Time to recover is the "
        "mean over the runs that recovered from every anomaly; the runs that did not are counted next to it. "
        "Failed runs are left out of every mean.",
        "",
    ]


# ---------------------------------------------------------------------------------------------------------------------
# Plots


def controller_colors(layout: Layout) -> dict[str, str]:
    return {c: PALETTE[k % len(PALETTE)] for k, c in enumerate(layout.controllers)}


def series_array(series: dict[str, Any], key: str, length: int) -> np.ndarray:
    """The series ``key`` as floats (null as NaN), cut or NaN-padded to ``length``."""
    raw = series.get(key) or []
    values = [np.nan if number(v) is None else float(v) for v in raw[:length]]
    return np.array(values + [np.nan] * (length - len(values)), dtype=np.float64)


def first_series(out_dir: Path, records: Sequence[dict[str, Any]]) -> tuple[int, dict[str, Any]] | None:
    """The first seed (in results.json's order) with a readable, non-empty series, and that series."""
    for record in records:
        series = load_series(out_dir, record)
        if series is not None:
            return record["seed"], series
    return None


def scenario_events(series: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The anomalies of the scenario (the same in every run's series; each kept once)."""
    seen: list[tuple[Any, ...]] = []
    events = []
    for s in series:
        for e in s.get("events") or []:
            key = (e.get("type"), e.get("label"), e.get("start_s"), e.get("end_s"))
            if number(e.get("start_s")) is not None and key not in seen:
                seen.append(key)
                events.append(e)
    return sorted(events, key=lambda e: float(e["start_s"]))


def draw_events(axes: Sequence[Axes], events: Sequence[dict[str, Any]], x_max: float) -> None:
    """Shaded spans (a line when the event has no end) on every subplot; labels once, on the top one."""
    for ax in axes:
        for e in events:
            start_s, end_s = float(e["start_s"]), number(e.get("end_s"))
            if end_s is None or end_s <= start_s:
                ax.axvline(start_s / 60.0, color=ANOMALY_COLOR, linestyle="--", linewidth=1.2, alpha=0.8)
            else:
                ax.axvspan(start_s / 60.0, end_s / 60.0, color=ANOMALY_COLOR, alpha=0.12, linewidth=0)
    top = axes[0]
    transform = blended_transform_factory(top.transData, top.transAxes)
    for k, e in enumerate(events):
        start = float(e["start_s"]) / 60.0
        right = x_max > 0 and start > 0.6 * x_max
        top.text(
            start,
            0.96 - 0.13 * (k % 4),
            f" {e.get('label') or e.get('type') or 'anomaly'} ",
            transform=transform,
            ha="right" if right else "left",
            va="top",
            fontsize=8.5,
            color="darkred",
            bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": ANOMALY_COLOR, "alpha": 0.85},
            zorder=5,
        )


def plot_controller_lines(axes: Sequence[Axes], runs: dict[str, tuple[int, dict[str, Any]]], colors: dict[str, str]) -> None:
    """Replicas, p95 latency and violation rate of each controller's first seed."""
    for controller, (_, series) in runs.items():
        t = time_minutes(series)
        color = colors[controller]
        axes[1].plot(t, series_array(series, "replicas", t.size), color=color, drawstyle="steps-post", linewidth=1.4)
        p95 = series_array(series, "p95_ms", t.size)
        axes[2].plot(t, np.where(p95 > 0, p95, np.nan), color=color, linewidth=1.2)
        axes[3].plot(t, series_array(series, "violation_rate", t.size) * 100.0, color=color, linewidth=1.2)


def time_minutes(series: dict[str, Any]) -> np.ndarray:
    return series_array(series, "time_s", len(series.get("time_s") or [])) / 60.0


def slo_of(runs: dict[str, tuple[int, dict[str, Any]]]) -> float | None:
    slos = [s for _, series in runs.values() if (s := number(series.get("slo_ms"))) is not None and s > 0]
    return min(slos) if slos else None


def has_positive(ax: Axes) -> bool:
    return any(np.any(np.isfinite(y := np.asarray(line.get_ydata(), dtype=np.float64)) & (y > 0)) for line in ax.get_lines())


def plot_scenario(layout: Layout, scenario: str, out_dir: Path, colors: dict[str, str]) -> Path | None:
    """DIR/plots/<scenario>.png: load, replicas, p95 latency and SLA violations over time; None with no series at all."""
    runs = {c: found for c in layout.controllers if (found := first_series(out_dir, layout.records(scenario, c))) is not None}
    if not runs:
        return None
    fig, axes = plt.subplots(4, 1, sharex=True, figsize=(12, 11), layout="constrained")
    try:
        load_controller, (load_seed, load) = next(iter(runs.items()))
        t_load = time_minutes(load)
        arrivals = series_array(load, "arrivals_rps", t_load.size)
        axes[0].plot(t_load, arrivals, color="black", linewidth=1.3)
        plot_controller_lines(axes, runs, colors)
        slo = slo_of(runs)
        if slo is not None:
            axes[2].axhline(slo, color="black", linestyle="--", linewidth=1.2)
        if has_positive(axes[2]):
            axes[2].set_yscale("log")
            axes[2].yaxis.set_major_formatter(LogFormatter())  # plain numbers (60, 100, 2000), not 6×10¹
            axes[2].yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))
        threshold = layout.thresholds.get(scenario)
        if threshold is not None:
            axes[3].axhline(threshold * 100.0, color="dimgray", linestyle=":", linewidth=1.2)
        x_max = max((float(np.nanmax(t)) for _, s in runs.values() if np.isfinite(t := time_minutes(s)).any()), default=0.0)
        events = scenario_events(s for _, s in runs.values())
        draw_events(axes, events, x_max)
        label_axes(axes, load_controller, load_seed)
        peak = float(np.nanmax(arrivals)) if np.isfinite(arrivals).any() else 0.0
        if peak > 0:  # room above the load for the anomaly labels
            axes[0].set_ylim(0, peak * (1.1 + 0.14 * min(len(events), 4)))
        fig.suptitle(f"{scenario}\n{plotted_runs(layout, scenario, runs)}", fontsize=12)
        handles = scenario_legend(runs, colors, slo, threshold, bool(events))
        ncol = len(handles) if len(handles) <= 7 else math.ceil(len(handles) / 2)
        fig.legend(handles=handles, loc="outside lower center", ncol=ncol, fontsize=9, frameon=False)
        path = out_dir / "plots" / f"{file_stem(scenario)}.png"
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return path


def plotted_runs(layout: Layout, scenario: str, runs: dict[str, tuple[int, dict[str, Any]]]) -> str:
    """The subtitle: which seed each controller is drawn from, and which controllers have no series to draw."""
    seeds = ", ".join(f"{c} seed {seed}" for c, (seed, _) in runs.items())
    missing = [c for c in layout.controllers if layout.records(scenario, c) and c not in runs and c != BOUND]
    return f"(first seed of each controller: {seeds})" + (f"; no time series for {', '.join(missing)}" if missing else "")


def label_axes(axes: Sequence[Axes], load_controller: str, load_seed: int) -> None:
    axes[0].set_title(f"Load (arrivals, the same for every controller; from {load_controller} seed {load_seed})", fontsize=10, loc="left")
    axes[0].set_ylabel("arrivals (req/s)")
    axes[1].set_title("Replicas (warm + booting)", fontsize=10, loc="left")
    axes[1].set_ylabel("replicas")
    axes[2].set_title("p95 latency (log scale)" if axes[2].get_yscale() == "log" else "p95 latency", fontsize=10, loc="left")
    axes[2].set_ylabel("p95 latency (ms)")
    axes[3].set_title("SLA violations (share of finished requests over their SLO)", fontsize=10, loc="left")
    axes[3].set_ylabel("SLA violations (%)")
    axes[3].set_xlabel("time (min)")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=None if ax.get_yscale() == "log" else 0)


def scenario_legend(runs: dict[str, Any], colors: dict[str, str], slo: float | None, threshold: float | None, events: bool) -> list[Any]:
    handles: list[Any] = [Line2D([], [], color="black", linewidth=1.3, label="arrivals")]
    handles += [Line2D([], [], color=colors[c], linewidth=2, label=c) for c in runs]
    if slo is not None:
        handles.append(Line2D([], [], color="black", linestyle="--", label=f"SLO ({fmt(slo)} ms)"))
    if threshold is not None:
        handles.append(Line2D([], [], color="dimgray", linestyle=":", label=f"recovery threshold ({fmt(threshold * 100)} %)"))
    if events:
        handles.append(Patch(facecolor=ANOMALY_COLOR, alpha=0.25, label="scenario event (shaded: its span; dashed line: no end)"))
    return handles


def frontier_points(layout: Layout, relative: bool) -> dict[str, list[tuple[str, float, float]]]:
    """Per controller: (scenario, cost or cost/HPA, violation minutes) for every scenario with both."""
    points: dict[str, list[tuple[str, float, float]]] = {}
    for controller in layout.controllers:
        for scenario in layout.scenarios:
            records = layout.records(scenario, controller)
            x = scenario_ratio(layout, scenario, controller, BASELINE, "cost") if relative else scenario_mean(records, "cost")
            y = scenario_mean(records, "sla_violation_minutes")
            if x is not None and y is not None:
                points.setdefault(controller, []).append((scenario, x, y))
    return points


def set_scale(ax: Axes, axis: str, values: Sequence[float]) -> None:
    """Log scale when the positive values span more than two decades (symlog when some are 0 or less)."""
    positive = [v for v in values if v > 0]
    if len(positive) < 2 or max(positive) / min(positive) <= 100:
        return
    setter = ax.set_xscale if axis == "x" else ax.set_yscale
    if len(positive) == len(values):
        setter("log")
    else:
        setter("symlog", linthresh=min(positive))


def plot_frontier(layout: Layout, out_dir: Path, colors: dict[str, str]) -> Path:
    """DIR/plots/frontier.png: cost against SLA-violation minutes, one marker per controller and scenario."""
    relative = BASELINE in layout.controllers and any(ok_runs(layout.records(s, BASELINE)) for s in layout.scenarios)
    points = frontier_points(layout, relative)
    markers = {s: SCENARIO_MARKERS[k % len(SCENARIO_MARKERS)] for k, s in enumerate(layout.scenarios)}
    bounds = bound_curves(layout, relative)
    fig, axes = plt.subplots(2 if bounds else 1, 1, figsize=(10, 13 if bounds else 6.5), layout="constrained", squeeze=False)
    ax = axes[0, 0]
    try:
        if points:
            draw_frontier(ax, points, markers, colors, relative)
        else:
            ax.text(0.5, 0.5, "no successful runs to plot", ha="center", va="center", transform=ax.transAxes, fontsize=12)
        relative_label = "cost relative to HPA (× HPA's cost, mean of per-seed ratios)"
        ax.set_xlabel(relative_label if relative else "cost (replicas' pay-per-use cost per run)")
        ax.set_ylabel("SLA-violation minutes (min, mean over seeds)")
        title = "Cost against SLA violations per scenario (lower left is better)"
        ax.set_title(title if relative else f"{title}; HPA not run, so absolute cost")
        ax.grid(True, alpha=0.3, which="both")
        if bounds:
            draw_bound_panel(axes[1, 0], layout, bounds, markers, colors, relative)
            axes[1, 0].set_xlabel(ax.get_xlabel())
        path = out_dir / "plots" / "frontier.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")  # keeps the legends outside the axes
    finally:
        plt.close(fig)
    return path


def draw_frontier(
    ax: Axes,
    points: dict[str, list[tuple[str, float, float]]],
    markers: dict[str, str],
    colors: dict[str, str],
    relative: bool,
) -> None:
    xs = [x for pts in points.values() for _, x, _ in pts]
    ys = [y for pts in points.values() for _, _, y in pts]
    for controller, pts in points.items():
        for scenario, x, y in pts:
            ax.scatter(x, y, marker=markers[scenario], color=colors[controller], s=45, alpha=0.75, zorder=3)
        mean_x = geometric_mean([x for _, x, _ in pts]) if relative else sum(x for _, x, _ in pts) / len(pts)
        mean_y = sum(y for _, _, y in pts) / len(pts)
        if mean_x is not None:
            ax.scatter(mean_x, mean_y, marker="o", color=colors[controller], s=220, edgecolors="black", linewidths=1.5, zorder=4)
    if relative:
        ax.axvline(1.0, color="gray", linestyle="--", linewidth=1)
        ax.text(1.0, 0.01, " HPA's cost", transform=blended_transform_factory(ax.transData, ax.transAxes), va="bottom", color="gray")
    set_scale(ax, "x", xs)
    set_scale(ax, "y", ys)
    controller_handles = [
        Line2D([], [], marker="o", linestyle="", markersize=11, markerfacecolor=colors[c], markeredgecolor="black", label=c) for c in points
    ]
    used = ordered_union([], (s for pts in points.values() for s, _, _ in pts))
    scenario_handles = [Line2D([], [], marker=markers[s], linestyle="", color="gray", markersize=7, label=s) for s in used]
    mean_title = "controller\n(large: geo-mean cost,\nmean minutes)" if relative else "controller\n(large: mean over scenarios)"
    first = ax.legend(handles=controller_handles, title=mean_title, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9)
    ax.add_artist(first)
    ax.legend(handles=scenario_handles, title="scenario (small markers)", loc="lower left", bbox_to_anchor=(1.01, 0.0), fontsize=9)


def shortfall(metrics: dict[str, Any], ok_key: str = "ok_requests") -> float | None:
    """Share of the arrivals not finished within their SLO: 1 - ok_requests / requests."""
    ok, requests = number(metrics.get(ok_key)), number(metrics.get("requests"))
    return None if ok is None or not requests else 1.0 - ok / requests


def bound_curves(layout: Layout, relative: bool) -> dict[str, list[tuple[float, float]]]:
    """Per scenario with a bound record: its frontier as (cost, or cost over HPA's on the same seed; share of arrivals
    not finished within their SLO), each point the mean over the seeds that have it, smallest shortfall first."""
    curves: dict[str, list[tuple[float, float]]] = {}
    for scenario in layout.scenarios:
        hpa = by_seed(layout.records(scenario, BASELINE), "cost")
        per_level: dict[float, list[tuple[float, float]]] = {}
        for r in ok_runs(layout.records(scenario, BOUND)):
            found = r["metrics"].get("bound")
            requests = number(found.get("requests")) if isinstance(found, dict) else None
            if not requests:
                continue
            for p in found.get("points") or []:
                cost = number(p.get("cost"))
                den = hpa.get(r["seed"]) if relative else 1.0
                if cost is not None and den:
                    per_level.setdefault(float(p["violation_level"]), []).append((cost / den, 1.0 - float(p["ok_target"]) / requests))
        if per_level:
            curves[scenario] = [
                (sum(x for x, _ in pts) / len(pts), sum(y for _, y in pts) / len(pts)) for _, pts in sorted(per_level.items())
            ]
    return curves


def draw_bound_panel(
    ax: Axes,
    layout: Layout,
    curves: dict[str, list[tuple[float, float]]],
    markers: dict[str, str],
    colors: dict[str, str],
    relative: bool,
) -> None:
    """Cost against the share of arrivals not finished within their SLO: each scenario's bound as a staircase (no
    controller can lie left of it at its own height: the step rule), and every controller's scenario means."""
    ys: list[float] = []
    for scenario, curve in curves.items():
        stairs = [curve[0]]
        for (_, y0), (x1, y1) in itertools.pairwise(curve):
            stairs += [(x1, y0), (x1, y1)]
        ax.plot([x for x, _ in stairs], [y * 100.0 for _, y in stairs], color="black", linewidth=1.1, alpha=0.7)
        ax.scatter([x for x, _ in curve], [y * 100.0 for _, y in curve], marker=markers[scenario], color="black", s=18, zorder=3)
        ys += [y * 100.0 for _, y in curve]
    for controller in layout.controllers:
        if controller == BOUND:
            continue
        for scenario in curves:
            records = layout.records(scenario, controller)
            y = mean_ci([v for r in ok_runs(records) if (v := shortfall(r["metrics"])) is not None])
            x = scenario_ratio(layout, scenario, controller, BASELINE, "cost") if relative else scenario_mean(records, "cost")
            if x is not None and y is not None:
                ax.scatter(x, y.mean * 100.0, marker=markers[scenario], color=colors[controller], s=55, edgecolors="black", zorder=4)
                ys.append(y.mean * 100.0)
    positive = [y for y in ys if y > 0]
    if positive:
        ax.set_yscale("symlog", linthresh=min(positive))
    ax.set_ylabel("arrivals not finished within their SLO (%, mean over seeds)")
    ax.set_title("The cost lower bound (black staircase per scenario; lower left of it is impossible) and the controllers", fontsize=10)
    ax.grid(True, alpha=0.3, which="both")


# ---------------------------------------------------------------------------------------------------------------------
# Entry points


def write_report(out_dir: Path) -> Path:
    """Write DIR/report.md and DIR/plots/*.png from DIR/results.json and DIR/series/; returns the report's path."""
    out_dir = Path(out_dir)
    layout = build_layout(load_results(out_dir))
    (out_dir / "plots").mkdir(parents=True, exist_ok=True)
    colors = controller_colors(layout)
    lines = header_section(layout)
    for scenario in layout.scenarios:
        lines += scenario_section(layout, scenario, plot_scenario(layout, scenario, out_dir, colors), out_dir)
    lines += aggregate_section(layout)
    lines += head_to_head_section(layout)
    lines += stability_section(layout)
    lines += detection_section(layout)
    lines += twin_section(layout)
    frontier = plot_frontier(layout, out_dir, colors)
    lines += [f"![Cost against SLA-violation minutes]({frontier.relative_to(out_dir).as_posix()})", ""]
    lines += failed_expectations_section(layout)
    lines += how_to_read()
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evals.report",
        description="Write DIR/report.md and DIR/plots/*.png from an eval's DIR/results.json and DIR/series/*.json "
        "(as written by `ama eval`). Exits 2 when DIR has no readable results.json.",
    )
    parser.add_argument("dir", type=Path, metavar="DIR", help="the eval's output folder (the --out of `ama eval`)")
    args = parser.parse_args(argv)
    results = args.dir / "results.json"
    try:
        json.loads(results.read_text())
    except (OSError, ValueError) as exc:
        print(f"error: cannot read {results}: {exc}", file=sys.stderr)
        return 2
    path = write_report(args.dir)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
