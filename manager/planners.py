"""Planners behind one interface. Called by manager.graph's plan node with the diagnosis, the weights in force and
reward statistics; feeds the guard a Proposal. The rule planner is a deterministic playbook per anomaly type: used
when no LLM is configured, when the LLM fails, and as a baseline in the evals. ``reward_statistics`` summarises
recent reward terms for the LLM planner's "reward reflection".

Proposals carry the new absolute weight values (current + the rule's delta, floored at 0); the guard clips them to
its bounds and step, so a rule may ask for more than the guard lets through.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from manager.anomalies import KIND_BY_NAME
from manager.state import Diagnosis, Proposal, ToolRequest
from simulators.rewards import REWARD_COMPONENTS, RewardWeights

SPIKE_FACTOR_FOR_NODES = 3.0
"""A traffic spike at least this many times its baseline asks for more nodes (when some are off)."""
STRAGGLER_SLOWNESS_FOR_DRAIN = 3.0
"""A straggler at least this many times slower than its peers is drained."""


class Planner(Protocol):
    name: str

    def plan(self, diagnosis: Diagnosis, weights: RewardWeights, reward_stats: dict[str, dict[str, float]], snapshot: dict) -> Proposal:
        """A proposal answering ``diagnosis``. ``reward_stats`` maps component -> {"mean", "min", "max"} over the
        recent window (may be empty); ``snapshot`` is the manager's view of the cluster,
        ``ClusterSnapshot.to_dict(PLANNING_NODE_FIELDS)`` (a whole ``to_dict()`` works too)."""
        ...


@dataclass(frozen=True)
class Rule:
    deltas: dict[str, float]
    """Change of each weight component (absolute, before the guard)."""
    expires_in_s: float | None
    purpose: str
    """Why, completing "... so agents ..." style explanations."""


RULES: dict[str, Rule] = {
    "traffic_spike": Rule({"sla": 0.2, "latency": 0.1, "energy": -0.05, "cost": -0.05}, 600.0, "so agents add replicas before saving cost"),
    "node_failure": Rule({"sla": 0.15, "churn": -0.03}, 900.0, "so agents replace the lost replicas quickly"),
    "straggler": Rule({"latency": 0.1}, 600.0, "so agents move work off the slow node"),
    "network_degradation": Rule({"latency": 0.15, "sla": 0.1}, 900.0, "so agents offload away from the slow tier or choose the other one"),
    "burst": Rule({"sla": 0.2, "churn": -0.05, "utilization": -0.05}, 300.0, "so agents add replicas to clear the backlog in time"),
    "cold_start_storm": Rule({"sla": 0.1, "churn": -0.03, "utilization": -0.05}, 600.0, "so agents keep spare warm replicas"),
    "price_rise": Rule({"cost": 0.15}, None, "so agents shift load to cheaper capacity (prices persist, so no expiry)"),
    "price_drop": Rule({"cost": -0.1}, None, "since capacity got cheaper (prices persist, so no expiry)"),
    "slo_breach": Rule({"sla": 0.1}, 600.0, "to pull the violation rate back under the SLO"),
}


class RulePlanner:
    """A deterministic playbook, one rule per anomaly type (the primary's rule; the others are named in the
    explanation). Weight deltas are small and temporary so the guard rarely clips them and the agents return to
    their usual balance; capacity actions are proposed only on strong evidence, and the catalog makes them high risk:

    - ``traffic_spike``: sla +0.2, latency +0.1, energy -0.05, cost -0.05 for 600 s — serving the surge matters more
      than its price for a while. A spike of 3x or more with nodes powered off also asks for ``add_nodes``:
      min(off nodes of the busiest tier that has some, ceil(factor)) nodes of that tier (agents alone cannot
      grow capacity beyond the powered nodes).
    - ``node_failure``: sla +0.15, churn -0.03 for 900 s — replace the lost replicas quickly instead of saving
      scale actions; ``add_nodes`` one node of the failed node's tier when one of that tier is off.
    - ``straggler``: latency +0.1 for 600 s — agents move work off the slow node; ``drain_node`` it when it is 3x
      or more slower than its peers (a milder straggler is cheaper to route around than to lose).
    - ``network_degradation``: latency +0.15, sla +0.1 for 900 s — agents offload away from the slow tier or choose
      the other one; no action, the network is not ours to fix.
    - ``burst``: sla +0.2, churn -0.05, utilization -0.05 for 300 s — a batch submission's backlog is cleared by
      replicas started now, not by the baseline's; no action (the burst is over before nodes would boot).
    - ``cold_start_storm``: sla +0.1, churn -0.03, utilization -0.05 for 600 s — keep spare warm replicas rather
      than churning them while the cold ones boot.
    - ``price_change``: a rise (factor > 1) raises cost +0.15, a drop lowers cost -0.1; utilization stays; no expiry
      since prices persist.
    - ``slo_breach`` (and any type this planner does not know): sla +0.1 for 600 s.

    Confidence is 0.8 with one anomaly in force and 0.6 with several (the rule answers only the primary).
    """

    name = "rule"

    def plan(self, diagnosis: Diagnosis, weights: RewardWeights, reward_stats: dict[str, dict[str, float]], snapshot: dict) -> Proposal:
        anomaly = primary_anomaly(diagnosis)
        rule = RULES[rule_key(anomaly)]
        new_weights = shifted_weights(weights, rule.deltas)
        actions = planned_actions(anomaly, snapshot)
        explanation = explain(anomaly, weights, new_weights, rule, actions, others(diagnosis, anomaly))
        confidence = 0.6 if len(diagnosis.anomalies) > 1 else 0.8
        return Proposal(
            weights=new_weights,
            expires_in_s=rule.expires_in_s if new_weights else None,
            actions=actions,
            explanation=explanation,
            confidence=confidence,
            planner="rule",
        )


def primary_anomaly(diagnosis: Diagnosis) -> dict[str, Any]:
    """The first anomaly of the primary type, or one made from the diagnosis' targets when none is listed."""
    for anomaly in diagnosis.anomalies:
        if anomaly.get("type") == diagnosis.primary:
            return anomaly
    target = ", ".join(diagnosis.targets) or "cluster"
    return {"type": diagnosis.primary, "target": target, "severity": 1.0}


def others(diagnosis: Diagnosis, primary: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in diagnosis.anomalies if a is not primary]


def rule_key(anomaly: dict[str, Any]) -> str:
    kind = anomaly.get("type", "")
    if kind == "price_change":
        return "price_rise" if severity(anomaly) > 1.0 else "price_drop"
    return kind if kind in RULES else "slo_breach"


def severity(anomaly: dict[str, Any]) -> float:
    value = anomaly.get("severity", 1.0)
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else 1.0


def shifted_weights(weights: RewardWeights, deltas: dict[str, float]) -> dict[str, float]:
    """New absolute values of the components that change (current + delta, floored at 0)."""
    current = weights.as_dict()
    shifted = {name: round(max(current[name] + delta, 0.0), 6) for name, delta in deltas.items()}
    return {name: value for name, value in shifted.items() if value != current[name]}


def planned_actions(anomaly: dict[str, Any], snapshot: dict) -> list[ToolRequest]:
    kind = anomaly.get("type")
    if kind == "traffic_spike":
        return spike_actions(anomaly, snapshot)
    if kind == "node_failure":
        return failure_actions(anomaly, snapshot)
    if kind == "straggler":
        return straggler_actions(anomaly)
    return []


def spike_actions(anomaly: dict[str, Any], snapshot: dict) -> list[ToolRequest]:
    factor = severity(anomaly)
    if factor < SPIKE_FACTOR_FOR_NODES:
        return []
    tier = busiest_tier_with_off_nodes(snapshot)
    if tier is None:
        return []
    count = min(len(off_nodes(snapshot, tier)), math.ceil(factor))
    return [ToolRequest(name="add_nodes", arguments={"count": count, "tier": tier})]


def failure_actions(anomaly: dict[str, Any], snapshot: dict) -> list[ToolRequest]:
    tier = node_tier(snapshot, str(anomaly.get("target", "")))
    if tier is None or not off_nodes(snapshot, tier):
        return []
    return [ToolRequest(name="add_nodes", arguments={"count": 1, "tier": tier})]


def straggler_actions(anomaly: dict[str, Any]) -> list[ToolRequest]:
    if severity(anomaly) < STRAGGLER_SLOWNESS_FOR_DRAIN:
        return []
    nodes = [name.strip() for name in str(anomaly.get("target", "")).split(",") if name.strip()]
    return [ToolRequest(name="drain_node", arguments={"node": node}) for node in nodes]


def snapshot_nodes(snapshot: dict) -> list[dict[str, Any]]:
    return [n for n in snapshot.get("nodes", []) if isinstance(n, dict)]


def off_nodes(snapshot: dict, tier: str) -> list[str]:
    return [n["name"] for n in snapshot_nodes(snapshot) if n.get("tier") == tier and n.get("state") == "off"]


def node_tier(snapshot: dict, name: str) -> str | None:
    return next((n.get("tier") for n in snapshot_nodes(snapshot) if n.get("name") == name), None)


def busiest_tier_with_off_nodes(snapshot: dict) -> str | None:
    """The tier with off nodes whose powered nodes are the most utilised on average (ties: by name)."""
    tiers = sorted({n.get("tier") for n in snapshot_nodes(snapshot) if n.get("state") == "off"} - {None})
    if not tiers:
        return None
    return max(tiers, key=lambda tier: (mean_utilization(snapshot, tier), -tiers.index(tier)))


def mean_utilization(snapshot: dict, tier: str) -> float:
    values = [float(n.get("utilization", 0.0)) for n in snapshot_nodes(snapshot) if n.get("tier") == tier and n.get("state") == "on"]
    return sum(values) / len(values) if values else 0.0


def describe_anomaly(anomaly: dict[str, Any]) -> str:
    kind, target, factor = str(anomaly.get("type", "anomaly")), anomaly.get("target", "cluster"), severity(anomaly)
    registered = KIND_BY_NAME.get(kind)
    detail = registered.detail.format(severity=factor) if registered is not None else ""
    return f"{kind.replace('_', ' ')} on {target}{detail}"


def rule_keys(anomaly_type: str) -> tuple[str, ...]:
    """The RULES entries a type can use (a price change has one for a rise and one for a drop)."""
    return ("price_rise", "price_drop") if anomaly_type == "price_change" else (anomaly_type,)


def describe_changes(old: RewardWeights, new: dict[str, float]) -> str:
    current = old.as_dict()
    raised = [f"{k} {current[k]:.2f} -> {v:.2f}" for k, v in new.items() if v > current[k]]
    lowered = [f"{k} {current[k]:.2f} -> {v:.2f}" for k, v in new.items() if v < current[k]]
    parts = [f"raise {' and '.join(raised)}" if raised else "", f"lower {' and '.join(lowered)}" if lowered else ""]
    return ", ".join(p for p in parts if p) or "keep the weights"


def describe_duration(expires_in_s: float | None) -> str:
    return f" for {expires_in_s / 60:g} min" if expires_in_s is not None else ""


def describe_actions(actions: list[ToolRequest]) -> str:
    texts = []
    for action in actions:
        if action.name == "add_nodes":
            texts.append(f"power on {action.arguments['count']} {action.arguments['tier']} node(s)")
        elif action.name == "drain_node":
            texts.append(f"drain {action.arguments['node']}")
    return f"; {' and '.join(texts)} (needs approval)" if texts else ""


def explain(
    anomaly: dict[str, Any],
    old: RewardWeights,
    new: dict[str, float],
    rule: Rule,
    actions: list[ToolRequest],
    also: list[dict[str, Any]],
) -> str:
    """One or two sentences naming the numbers, e.g. "traffic spike on api (4.1x): raise sla 0.40 -> 0.60 and
    latency 0.20 -> 0.30, lower energy 0.10 -> 0.05 and cost 0.15 -> 0.10 for 10 min so agents add replicas before
    saving cost." plus the other anomalies in force."""
    duration = describe_duration(rule.expires_in_s) if new else ""
    text = f"{describe_anomaly(anomaly)}: {describe_changes(old, new)}{duration} {rule.purpose}{describe_actions(actions)}."
    if also:
        text += f" Also in force: {'; '.join(describe_anomaly(a) for a in also)}."
    return text[:2000]


def reward_statistics(terms: np.ndarray) -> dict[str, dict[str, float]]:
    """Mean, min and max of each reward component over reward terms of shape (ticks, agents, components) or
    (ticks, components); empty when there are no ticks."""
    array = np.asarray(terms, dtype=np.float64)
    if array.ndim not in (2, 3) or array.shape[-1] != len(REWARD_COMPONENTS):
        raise ValueError(f"reward terms must have shape (ticks, [agents,] {len(REWARD_COMPONENTS)}), got {array.shape}")
    rows = array.reshape(-1, len(REWARD_COMPONENTS))
    if rows.shape[0] == 0:
        return {}
    return {
        name: {"mean": float(rows[:, k].mean()), "min": float(rows[:, k].min()), "max": float(rows[:, k].max())}
        for k, name in enumerate(REWARD_COMPONENTS)
    }
