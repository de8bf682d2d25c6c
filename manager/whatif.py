"""What-if previews: before an operator sees a high-risk proposal, the simulator is forked from the current state and
runs the proposal and the status quo side by side for a horizon. Called by the runtime through the manager graph's
propose step; feeds the proposal's decision row (and so the console) with predicted SLA, cost and energy deltas.

The fork copies the cluster and the local controller as they are now; future arrivals are the scenario's own (the
simulator knows them), so the preview is exact for the simulator and a forecast for a real backend.
"""

from __future__ import annotations

import copy
from typing import Any

from local_agents.controllers import Controller
from simulators.cluster import Cluster
from simulators.metrics import RunRecorder
from tools.catalog import parse_call
from tools.sim_actuator import SimActuator

KEYS = ("sla_violation_rate", "sla_violation_minutes", "p95_latency_ms", "cost", "energy_kwh", "drops")


def preview(cluster: Cluster, controller: Controller, calls: list[dict[str, Any]], horizon_s: float = 300.0) -> dict[str, Any]:
    """Run ``horizon_s`` of simulated time twice from the current state, without and with ``calls`` applied."""
    ticks = max(1, min(round(horizon_s / cluster.tick_s), cluster.horizon - cluster.t))
    results = {}
    for name, apply in (("status_quo", False), ("with_proposal", True)):
        fork, local = copy.deepcopy(cluster), copy.deepcopy(controller)
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
        results[name] = {k: summary[k] for k in KEYS}
    delta = {k: _minus(results["with_proposal"][k], results["status_quo"][k]) for k in KEYS}
    return {"horizon_s": ticks * cluster.tick_s, **results, "delta": delta}


def describe(result: dict[str, Any]) -> str:
    """One sentence for the proposal's explanation."""
    before, after = result["status_quo"], result["with_proposal"]
    return (
        f"What-if over the next {result['horizon_s']:.0f} s: SLA violations {before['sla_violation_rate']:.1%} -> "
        f"{after['sla_violation_rate']:.1%}, cost {before['cost']:.3f} -> {after['cost']:.3f} $, "
        f"energy {before['energy_kwh']:.3f} -> {after['energy_kwh']:.3f} kWh."
    )


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b
