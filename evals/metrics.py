"""Eval metrics of one run. Called by evals.runner after a run; takes the run's simulators.metrics.RunRecorder (with
per-tick series) and the scenario's anomaly events, and feeds results.json: the run summary (SLA violations, latency
percentiles, cost, energy, cold starts, wasted memory, drops, churn), time to recover after each anomaly, the
scenario's expectations checked, and the manager's own metrics when a manager ran (time to detect, anomalies
classified correctly, approvals requested, unsafe actions blocked) through the ``manager`` hook.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from simulators.cluster import Event
from simulators.metrics import VIOLATION_MINUTE_THRESHOLD, RunRecorder
from simulators.scenarios import Expectation

SMOOTH_S = 10.0
"""Violation rates are averaged over this window before recovery is judged (one bad tick is not an outage)."""
HOLD_S = 30.0
"""Recovered means: under the threshold for this long."""


def recovery_threshold(expectations: Sequence[Expectation]) -> float:
    """The scenario's SLA-violation threshold: its ``sla_violation_rate`` max expectation, else the 5% default."""
    bounds = [e.max for e in expectations if e.metric == "sla_violation_rate" and e.max is not None]
    return min(bounds) if bounds else VIOLATION_MINUTE_THRESHOLD


def time_to_recover(violation_rate: np.ndarray, tick_s: float, start_tick: int, threshold: float) -> float | None:
    """Seconds from ``start_tick`` until the smoothed violation rate is under ``threshold`` and stays there for
    HOLD_S (0 when it never rose); None when it does not recover before the run ends."""
    window = max(1, round(SMOOTH_S / tick_s))
    hold = max(1, round(HOLD_S / tick_s))
    rates = np.asarray(violation_rate, dtype=np.float64)
    if start_tick >= rates.size:
        return None
    smoothed = np.convolve(rates, np.ones(window) / window, mode="full")[: rates.size]
    under = smoothed[start_tick:] < threshold
    if under.size < hold:
        return 0.0 if under.all() else None
    runs = np.convolve(under.astype(np.int64), np.ones(hold, dtype=np.int64), mode="valid")  # ticks under in each hold window
    ok = np.flatnonzero(runs == hold)
    return None if ok.size == 0 else float(ok[0] * tick_s)


def recoveries(recorder: RunRecorder, events: Sequence[Event], threshold: float) -> list[dict[str, Any]]:
    """Time to recover after each anomaly (recoveries of nodes are not anomalies)."""
    rates = np.asarray(recorder.series["violation_rate"])
    tick_s = recorder.cluster.tick_s
    out = []
    for event in events:
        if event.type == "node_recovery" or event.at_tick >= rates.size:
            continue
        out.append(
            {
                "type": event.type,
                "label": event.label,
                "at_s": event.at_tick * tick_s,
                "recover_s": time_to_recover(rates, tick_s, event.at_tick, threshold),
            }
        )
    return out


def check_expectations(metrics: dict[str, Any], expectations: Sequence[Expectation], controller: str) -> list[dict[str, Any]]:
    """Each expectation that applies to ``controller``, with the run's value and whether it held (a missing metric
    fails, so a typo in a scenario's expectation shows up)."""
    checked = []
    for e in expectations:
        if e.controller is not None and e.controller != controller:
            continue
        value = metrics.get(e.metric)
        passed = value is not None and (e.max is None or value <= e.max) and (e.min is None or value >= e.min)
        checked.append({"metric": e.metric, "max": e.max, "min": e.min, "value": value, "passed": bool(passed)})
    return checked


def run_metrics(
    recorder: RunRecorder,
    events: Sequence[Event],
    threshold: float,
    explained_actions: int,
    manager: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything results.json holds about one run."""
    metrics = recorder.summary()
    found = recoveries(recorder, events, threshold)
    times = [r["recover_s"] for r in found if r["recover_s"] is not None]
    unrecovered = [r for r in found if r["recover_s"] is None]
    metrics["recoveries"] = found
    metrics["time_to_recover_s"] = None if not found or unrecovered else float(np.mean(times))
    metrics["unrecovered_anomalies"] = len(unrecovered)
    metrics["explained_actions"] = explained_actions
    metrics["manager"] = manager
    return metrics


def downsample(series: dict[str, list[float]], tick_s: float, points: int = 720) -> dict[str, list[float]]:
    """Series averaged into at most ``points`` buckets (p95 takes the bucket's max, so spikes stay visible)."""
    length = len(next(iter(series.values()), []))
    size = max(1, int(np.ceil(length / points)))
    out: dict[str, list[float]] = {"time_s": [round(k * size * tick_s, 3) for k in range(int(np.ceil(length / size)))]}
    for name, values in series.items():
        arr = np.asarray(values, dtype=np.float64)
        pad = (-arr.size) % size
        blocks = np.concatenate([arr, np.full(pad, np.nan)]).reshape(-1, size)
        reduced = np.nanmax(blocks, axis=1) if name == "p95_ms" else np.nanmean(blocks, axis=1)
        out[name] = [round(float(v), 4) for v in reduced]
    return out
