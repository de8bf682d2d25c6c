"""What-if previews: before an operator sees a high-risk proposal, the simulator is forked from the current state and
runs the proposal and the status quo side by side for a horizon. Called by the runtime through the manager graph's
propose step; feeds the proposal's decision row (and so the console) with predicted SLA, cost and energy deltas.

The fork is a digital twin that knows only the past: it copies the cluster and the local controller as they are now,
its future arrivals are forecast from the observed past (manager.forecast: ``futures`` sampled futures, the same
for both sides), it knows no anomaly the scenario has not started yet, and the anomalies in force stay in force over
the horizon (no one knows when a straggler recovers). Each figure is the mean over the futures, with the spread
(standard deviation) of the difference beside the delta.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from local_agents.controllers import Controller
from manager.forecast import sample_future
from simulators.cluster import Cluster
from simulators.metrics import RunRecorder
from tools.catalog import parse_call
from tools.sim_actuator import SimActuator

KEYS = ("sla_violation_rate", "sla_violation_minutes", "p95_latency_ms", "cost", "energy_kwh", "drops")


def preview(
    cluster: Cluster, controller: Controller, calls: list[dict[str, Any]], horizon_s: float = 300.0, futures: int = 3, seed: int = 0
) -> dict[str, Any]:
    """Run ``horizon_s`` of simulated time from the current state, without and with ``calls`` applied, over
    ``futures`` arrival futures forecast from the past."""
    ticks = max(1, min(round(horizon_s / cluster.tick_s), cluster.horizon - cluster.t))
    rng = np.random.default_rng([seed, cluster.t])
    past, work = cluster.workload.arrivals[: cluster.t], cluster.workload.work_scale[: cluster.t]  # type: ignore[index]
    runs: dict[str, list[dict[str, Any]]] = {"status_quo": [], "with_proposal": []}
    for _ in range(futures):
        future, future_work = sample_future(past, work if work.shape[0] else np.ones((1, past.shape[1])), ticks, cluster.tick_s, rng)
        for name, apply in (("status_quo", False), ("with_proposal", True)):
            fork, local = cluster.twin(future, future_work), copy.deepcopy(controller)
            if apply:
                actuator = SimActuator(fork)
                for k, call in enumerate(calls):
                    actuator.apply(parse_call(call["name"], call["arguments"]), f"whatif:{k}")
            recorder = RunRecorder(fork)
            for _ in range(ticks):
                decision = local.act(fork)
                decision.apply(fork)
                recorder.record()
            summary = recorder.summary()
            runs[name].append({k: summary[k] for k in (*KEYS, "requests")})
    results = {name: {k: _mean([r[k] for r in rows]) for k in (*KEYS, "requests")} for name, rows in runs.items()}
    delta = {k: _minus(results["with_proposal"][k], results["status_quo"][k]) for k in KEYS}
    spread = {
        k: float(np.std([_minus(a[k], b[k]) or 0.0 for a, b in zip(runs["with_proposal"], runs["status_quo"], strict=True)])) for k in KEYS
    }
    return {"horizon_s": ticks * cluster.tick_s, "futures": futures, **results, "delta": delta, "spread": spread}


def _mean(values: list[Any]) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def describe(result: dict[str, Any]) -> str:
    """One sentence for the proposal's explanation."""
    before, after = result["status_quo"], result["with_proposal"]
    return (
        f"What-if over the next {result['horizon_s']:.0f} s (arrivals forecast from the past, {result.get('futures', 1)} futures):"
        f" SLA violations {before['sla_violation_rate']:.1%} -> "
        f"{after['sla_violation_rate']:.1%}, cost {before['cost']:.3f} -> {after['cost']:.3f} $, "
        f"energy {before['energy_kwh']:.3f} -> {after['energy_kwh']:.3f} kWh."
    )


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b
