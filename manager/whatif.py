"""What-if previews: before an operator sees a high-risk proposal, the simulator is forked from the current state and
runs the proposal and the status quo side by side for a horizon. Called by the runtime through the manager graph's
propose step; feeds the proposal's decision row (and so the console) with predicted SLA, cost and energy deltas.

The fork is a digital twin that knows only the past: it copies the cluster and the local controller as they are now,
its future arrivals are forecast from the observed past (manager.forecast: ``futures`` sampled futures, the same
for both sides), it knows no anomaly the scenario has not started yet, and the anomalies in force stay in force over
the horizon (no one knows when a straggler recovers). Each figure is the mean over the futures, with the spread
(standard deviation) of the difference beside the delta. The runs are manager.verify's ``Twin``: one fork-and-run for the
preview and for verification.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from local_agents.controllers import Controller
from manager.state import GuardedPlan
from manager.verify import Twin, VerifySettings
from simulators.cluster import Cluster
from simulators.rewards import RewardWeights

KEYS = ("sla_violation_rate", "sla_violation_minutes", "cost", "energy_kwh", "drops")


def preview(
    cluster: Cluster, controller: Controller, calls: list[dict[str, Any]], horizon_s: float = 300.0, futures: int = 3, seed: int = 0
) -> dict[str, Any]:
    """Run ``horizon_s`` of simulated time from the current state, without and with ``calls`` applied, over
    ``futures`` arrival futures forecast from the past (manager.verify's twin, the one verification uses)."""
    twin = Twin(cluster, controller, RewardWeights(), VerifySettings(horizon_s=horizon_s, futures=futures, seed=seed))
    runs = {"status_quo": twin.status_quo(), "with_proposal": twin.outcomes(GuardedPlan(high_risk=calls))}
    results = {name: {k: float(np.mean([r[k] for r in rows])) for k in (*KEYS, "requests")} for name, rows in runs.items()}
    delta = {k: results["with_proposal"][k] - results["status_quo"][k] for k in KEYS}
    spread = {k: float(np.std([a[k] - b[k] for a, b in zip(runs["with_proposal"], runs["status_quo"], strict=True)])) for k in KEYS}
    return {"horizon_s": twin.horizon_s, "futures": futures, **results, "delta": delta, "spread": spread}


def describe(result: dict[str, Any]) -> str:
    """One sentence for the proposal's explanation."""
    before, after = result["status_quo"], result["with_proposal"]
    return (
        f"What-if over the next {result['horizon_s']:.0f} s (arrivals forecast from the past, {result.get('futures', 1)} futures):"
        f" SLA violations {before['sla_violation_rate']:.1%} -> "
        f"{after['sla_violation_rate']:.1%}, cost {before['cost']:.3f} -> {after['cost']:.3f} $, "
        f"energy {before['energy_kwh']:.3f} -> {after['energy_kwh']:.3f} kWh."
    )
