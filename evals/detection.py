"""Scores the manager's anomaly detectors against a scenario's injected anomalies. Called by the evals (and the
tests) for a run; steps the scenario with a controller, feeds every tick's snapshot to manager.anomalies.Detectors
and matches what they report to the ground truth: time to detect, and precision and recall per anomaly type.

An injected anomaly counts as detected by the first report of its type, on one of its targets (service, node or
tier), between its start and ``window_s`` after it; a report that matches no injected anomaly of its type that was
in force (or had started at most ``window_s`` before) is a false positive. ``slo_breach`` reports have no injected
counterpart and are counted apart.

The ground truth follows manager.anomalies' registry: each type lists the scenario events that inject it, and
``burst`` (a batch submission, which comes with the workload rather than as an event) is read off the arrival
matrix: a tick whose arrivals are at least ``BURST_FACTOR`` times the service's trailing mean and
``BURST_MIN_REQUESTS`` more, bursts less than ``BURST_GAP_S`` apart forming one episode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from local_agents.controllers import Controller
from manager.anomalies import ANOMALY_KINDS, ANOMALY_TYPES, Anomaly, Detectors, DetectorSettings
from simulators.cluster import TIERS, Event
from simulators.scenarios import Scenario
from simulators.snapshot import take_snapshot

WINDOW_S = 180.0
BURST_FACTOR = DetectorSettings.burst_factor
BURST_MIN_REQUESTS = DetectorSettings.burst_min_requests
BURST_GAP_S = 60.0
BURST_BASELINE_S = 120.0
"""The trailing window whose mean arrivals a burst is measured against."""
INJECTED = {event: kind.name for kind in ANOMALY_KINDS for event in kind.injected_by}
"""Scenario event type -> the anomaly type it injects (node_recovery injects none: it ends a failure)."""


@dataclass(frozen=True)
class Truth:
    type: str
    targets: frozenset[str]
    start_s: float
    end_s: float | None
    label: str


def ground_truth(scenario: Scenario) -> list[Truth]:
    """The scenario's anomalies as (type, targets, span) in the detectors' terms."""
    c = scenario.config
    tick = c.tick_s
    truths = []
    for e in scenario.events:
        if e.type not in INJECTED:
            continue
        targets = _targets(scenario, e)
        end = None if e.end_tick is None else e.end_tick * tick
        truths.append(Truth(INJECTED[e.type], frozenset(targets), e.at_tick * tick, end, e.label))
    return truths + burst_truths(scenario)


def burst_truths(scenario: Scenario) -> list[Truth]:
    """Batch-submission bursts in the scenario's arrivals, one Truth per episode and service."""
    tick = scenario.config.tick_s
    arrivals = scenario.workload.arrivals
    window = max(1, round(BURST_BASELINE_S / tick))
    gap = max(1, round(BURST_GAP_S / tick))
    cumulative = np.vstack([np.zeros((1, arrivals.shape[1])), np.cumsum(arrivals, axis=0)])
    starts = np.maximum(np.arange(arrivals.shape[0]) - window, 0)
    count = np.maximum(np.arange(arrivals.shape[0]) - starts, 1)[:, None]
    trailing = (cumulative[:-1] - cumulative[starts]) / count  # mean of the ticks before, per tick
    bursting = (arrivals >= BURST_FACTOR * np.maximum(trailing, 1e-9)) & (arrivals - trailing >= BURST_MIN_REQUESTS)
    bursting[:window] = False  # the detectors' baselines are still learning
    truths = []
    for j, service in enumerate(scenario.config.services):
        ticks = np.flatnonzero(bursting[:, j])
        if ticks.size == 0:
            continue
        breaks = np.flatnonzero(np.diff(ticks) > gap)
        for first, last in zip(np.r_[0, breaks + 1], np.r_[breaks, ticks.size - 1], strict=True):
            start, end = int(ticks[first]), int(ticks[last])
            label = f"batch burst on {service.name} ({end - start + 1} s)"
            truths.append(Truth("burst", frozenset({service.name}), start * tick, (end + gap) * tick, label))
    return truths


def _targets(scenario: Scenario, e: Event) -> set[str]:
    nodes = [scenario.config.nodes[i] for i in e.nodes]
    target = next(kind.target for kind in ANOMALY_KINDS if e.type in kind.injected_by)
    if target == "service":
        return {scenario.config.services[j].name for j in e.services}
    if target == "node":
        return {n.name for n in nodes}
    if target == "tier":
        return {n.tier for n in nodes} & set(TIERS)
    return {"cluster"}


def score(reports: list[Anomaly], truths: list[Truth], window_s: float = WINDOW_S) -> dict[str, Any]:
    """Time to detect per injected anomaly, and precision / recall per type; ``counts`` has the numbers behind
    them per type (injected, detected, reported, true reports, each detection's delay), which pool over runs."""
    detected = []
    for truth in truths:
        hit = next(
            (
                a
                for a in reports
                if a.type == truth.type
                and a.target.split(",")[0] in truth.targets
                and truth.start_s <= a.since_s <= truth.start_s + window_s
            ),
            None,
        )
        detected.append(
            {
                "type": truth.type,
                "label": truth.label,
                "start_s": truth.start_s,
                "detect_s": None if hit is None else hit.since_s - truth.start_s,
            }
        )
    per_type: dict[str, dict[str, float | int | None]] = {}
    counts: dict[str, dict[str, Any]] = {}
    for kind in ANOMALY_TYPES:
        if kind == "slo_breach":
            continue
        mine = [a for a in reports if a.type == kind]
        kind_truths = [t for t in truths if t.type == kind]
        true_reports = [a for a in mine if any(_explains(t, a, window_s) for t in kind_truths)]
        found = [d for d in detected if d["type"] == kind and d["detect_s"] is not None]
        if not mine and not kind_truths:
            continue
        per_type[kind] = {
            "injected": len(kind_truths),
            "reported": len(mine),
            "precision": len(true_reports) / len(mine) if mine else None,
            "recall": len(found) / len(kind_truths) if kind_truths else None,
        }
        counts[kind] = {
            "injected": len(kind_truths),
            "detected": len(found),
            "reported": len(mine),
            "true_reports": len(true_reports),
            "detect_s": [float(d["detect_s"]) for d in found],
        }
    times = [d["detect_s"] for d in detected if d["detect_s"] is not None]
    return {
        "anomalies": detected,
        "per_type": per_type,
        "mean_time_to_detect_s": sum(times) / len(times) if times else None,
        "slo_breach_reports": sum(a.type == "slo_breach" for a in reports),
        "counts": counts,
    }


def _explains(truth: Truth, report: Anomaly, window_s: float) -> bool:
    end = truth.end_s if truth.end_s is not None else float("inf")
    return report.target.split(",")[0] in truth.targets and truth.start_s <= report.since_s <= max(end, truth.start_s + window_s)


def detect_run(scenario: Scenario, controller: Controller, detectors: Detectors | None = None) -> tuple[list[Anomaly], dict[str, Any]]:
    """Run the scenario with the controller, feeding every tick's snapshot to the detectors; returns the reports
    and their score."""
    detectors = detectors or Detectors()
    cluster = scenario.make_cluster()
    controller.reset(cluster)
    reports: list[Anomaly] = []
    for _ in range(cluster.horizon):
        decision = controller.act(cluster)
        decision.apply(cluster)
        reports += detectors.observe(take_snapshot(cluster))
    return reports, score(reports, ground_truth(scenario))


def main(argv: list[str] | None = None) -> None:
    """``python -m evals.detection``: detection quality over a suite with one controller (time to detect, precision
    and recall per anomaly type, pooled over the suite's scenarios)."""
    import argparse
    import json

    from local_agents.registry import make_controller
    from simulators.scenarios import load_scenario, scenario_files

    parser = argparse.ArgumentParser(description="Score the manager's anomaly detectors on a scenario suite's injected anomalies.")
    parser.add_argument("--suite", default="standard", help="scenario suite (default: %(default)s)")
    parser.add_argument("--controller", default="kpa", help="local controller during the runs (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    pooled: dict[str, dict[str, int]] = {}
    times: dict[str, list[float]] = {}
    per_scenario = {}
    for path in scenario_files(args.suite):
        scenario = load_scenario(path)
        reports, result = detect_run(scenario, make_controller(args.controller, seed=scenario.spec.seed))
        per_scenario[scenario.name] = result
        truths = ground_truth(scenario)
        for kind, row in result["per_type"].items():
            total = pooled.setdefault(kind, {"injected": 0, "detected": 0, "reported": 0, "true_reports": 0})
            total["injected"] += int(row["injected"] or 0)
            total["reported"] += int(row["reported"] or 0)
            total["true_reports"] += sum(
                1 for a in reports if a.type == kind and any(_explains(t, a, WINDOW_S) for t in truths if t.type == kind)
            )
        for found in result["anomalies"]:
            pooled.setdefault(found["type"], {"injected": 0, "detected": 0, "reported": 0, "true_reports": 0})
            if found["detect_s"] is not None:
                pooled[found["type"]]["detected"] += 1
                times.setdefault(found["type"], []).append(found["detect_s"])
    summary = {
        kind: {
            **row,
            "recall": row["detected"] / row["injected"] if row["injected"] else None,
            "precision": row["true_reports"] / row["reported"] if row["reported"] else None,
            "mean_time_to_detect_s": sum(times.get(kind, [])) / len(times[kind]) if times.get(kind) else None,
        }
        for kind, row in sorted(pooled.items())
    }
    if args.json:
        print(json.dumps({"suite": args.suite, "controller": args.controller, "per_type": summary, "per_scenario": per_scenario}))
        return
    print(f"{'anomaly':<22}{'injected':>9}{'detected':>9}{'reported':>9}{'precision':>10}{'recall':>8}{'detect s':>9}")
    for kind, row in summary.items():
        counts = f"{kind:<22}{row['injected']:>9}{row['detected']:>9}{row['reported']:>9}"
        rates = f"{_fmt(row['precision'], '.2f'):>10}{_fmt(row['recall'], '.2f'):>8}{_fmt(row['mean_time_to_detect_s'], '.1f'):>9}"
        print(counts + rates)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


if __name__ == "__main__":
    main()
