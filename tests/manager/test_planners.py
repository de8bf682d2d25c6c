"""The rule planner's playbook: for each anomaly type the exact weights, expiry and actions; capacity actions only
when nodes are off, and they reach the guard's high-risk list; reward statistics."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from manager.guard import WeightBounds, guard
from manager.planners import RulePlanner, reward_statistics
from manager.state import Diagnosis, Proposal, ToolRequest
from simulators.rewards import REWARD_COMPONENTS, RewardWeights
from tools.catalog import RiskBounds

DEFAULT = RewardWeights()  # latency 0.2, sla 0.4, utilization 0.1, energy 0.1, cost 0.15, churn 0.05


def node(name: str, tier: str, state: str = "on", utilization: float = 0.5) -> dict[str, Any]:
    return {"name": name, "tier": tier, "state": state, "utilization": utilization, "replicas": {}, "booting": {}}


def snapshot(*nodes: dict[str, Any]) -> dict[str, Any]:
    return {"tick": 10, "time_s": 100.0, "violation_rate": 0.1, "nodes": list(nodes), "services": [{"name": "api", "arrivals_rps": 400.0}]}


ALL_ON = snapshot(node("edge-0", "edge"), node("cloud-0", "cloud"))
SOME_OFF = snapshot(
    node("edge-0", "edge", utilization=0.9),
    node("edge-1", "edge", "off"),
    node("edge-2", "edge", "off"),
    node("cloud-0", "cloud", utilization=0.4),
    node("cloud-1", "cloud", "off"),
)


def anomaly(kind: str, target: str, severity: float = 1.0) -> dict[str, Any]:
    return {"type": kind, "target": target, "since_s": 90.0, "evidence": "test", "severity": severity}


def diagnose(*anomalies: dict[str, Any]) -> Diagnosis:
    primary = anomalies[0]
    return Diagnosis(incident_id="inc-1", primary=primary["type"], targets=[primary["target"]], anomalies=list(anomalies), summary="test")


def plan(*anomalies: dict[str, Any], snap: dict[str, Any] = ALL_ON) -> Proposal:
    return RulePlanner().plan(diagnose(*anomalies), DEFAULT, {}, snap)


def test_traffic_spike_raises_sla_and_latency_for_ten_minutes() -> None:
    proposal = plan(anomaly("traffic_spike", "api", 4.1))
    assert proposal.weights == {"sla": 0.6, "latency": 0.3, "energy": 0.05, "cost": 0.1}
    assert proposal.expires_in_s == 600.0
    assert proposal.actions == []  # no node is off
    assert proposal.planner == "rule" and proposal.confidence == 0.8
    assert proposal.explanation == (
        "traffic spike on api (4.1x): raise sla 0.40 -> 0.60 and latency 0.20 -> 0.30, lower energy 0.10 -> 0.05 and "
        "cost 0.15 -> 0.10 for 10 min so agents add replicas before saving cost."
    )


def test_a_strong_spike_adds_off_nodes_of_the_busiest_tier() -> None:
    proposal = plan(anomaly("traffic_spike", "api", 4.1), snap=SOME_OFF)
    assert proposal.actions == [ToolRequest(name="add_nodes", arguments={"count": 2, "tier": "edge"})]  # min(2 off, ceil 4.1)
    assert "power on 2 edge node(s) (needs approval)" in proposal.explanation


def test_a_mild_spike_adds_no_nodes_even_when_some_are_off() -> None:
    assert plan(anomaly("traffic_spike", "api", 2.9), snap=SOME_OFF).actions == []


def test_the_spike_node_count_is_capped_by_the_factor() -> None:
    snap = snapshot(node("cloud-0", "cloud"), *(node(f"cloud-{k}", "cloud", "off") for k in range(1, 8)))
    assert plan(anomaly("traffic_spike", "api", 3.2), snap=snap).actions == [
        ToolRequest(name="add_nodes", arguments={"count": 4, "tier": "cloud"})
    ]


def test_the_add_nodes_call_passes_the_guard_as_high_risk() -> None:
    proposal = plan(anomaly("traffic_spike", "api", 4.1), snap=SOME_OFF)
    guarded = guard(proposal, DEFAULT, WeightBounds(), RiskBounds(), {})
    assert [c["name"] for c in guarded.high_risk] == ["add_nodes"]
    assert guarded.high_risk[0]["arguments"] == {"count": 2, "tier": "edge"}
    assert guarded.low_risk == [] and guarded.notes == []
    assert guarded.weights == pytest.approx({**DEFAULT.as_dict(), "sla": 0.6, "latency": 0.3, "energy": 0.05, "cost": 0.1})
    assert guarded.expires_in_s == 600.0


def test_node_failure_replaces_the_node_from_its_tier_when_one_is_off() -> None:
    failed = snapshot(node("edge-0", "edge", "failed"), node("edge-1", "edge", "off"), node("cloud-0", "cloud"))
    proposal = plan(anomaly("node_failure", "edge-0"), snap=failed)
    assert proposal.weights == {"sla": 0.55, "churn": 0.02}
    assert proposal.expires_in_s == 900.0
    assert proposal.actions == [ToolRequest(name="add_nodes", arguments={"count": 1, "tier": "edge"})]
    assert guard(proposal, DEFAULT, WeightBounds(), RiskBounds(), {}).high_risk[0]["name"] == "add_nodes"


def test_node_failure_adds_nothing_when_its_tier_has_no_off_node() -> None:
    failed = snapshot(node("edge-0", "edge", "failed"), node("cloud-1", "cloud", "off"))
    assert plan(anomaly("node_failure", "edge-0"), snap=failed).actions == []


def test_a_bad_straggler_is_drained_a_mild_one_only_raises_latency() -> None:
    bad = plan(anomaly("straggler", "edge-3", 3.5))
    assert bad.weights == {"latency": 0.3}
    assert bad.expires_in_s == 600.0
    assert bad.actions == [ToolRequest(name="drain_node", arguments={"node": "edge-3"})]
    mild = plan(anomaly("straggler", "edge-3", 2.4))
    assert mild.weights == {"latency": 0.3}
    assert mild.actions == []


def test_network_degradation_raises_latency_and_sla() -> None:
    proposal = plan(anomaly("network_degradation", "cloud", 2.0))
    assert proposal.weights == {"latency": 0.35, "sla": 0.5}
    assert proposal.expires_in_s == 900.0
    assert proposal.actions == []


def test_cold_start_storm_keeps_spare_warm_replicas() -> None:
    proposal = plan(anomaly("cold_start_storm", "edge", 0.4))
    assert proposal.weights == {"sla": 0.5, "churn": 0.02, "utilization": 0.05}
    assert proposal.expires_in_s == 600.0
    assert proposal.actions == []


def test_price_changes_move_the_cost_weight_without_expiry() -> None:
    rise = plan(anomaly("price_change", "cloud", 1.5))
    assert rise.weights == {"cost": 0.3}
    assert rise.expires_in_s is None
    drop = plan(anomaly("price_change", "cloud", 0.5))
    assert drop.weights == {"cost": 0.05}
    assert drop.expires_in_s is None


def test_slo_breach_raises_sla() -> None:
    proposal = plan(anomaly("slo_breach", "cluster"))
    assert proposal.weights == {"sla": 0.5}
    assert proposal.expires_in_s == 600.0


def test_weights_are_floored_at_zero() -> None:
    diagnosis = diagnose(anomaly("node_failure", "edge-0"))
    proposal = RulePlanner().plan(diagnosis, DEFAULT.replace(churn=0.01), {}, ALL_ON)
    assert proposal.weights == {"sla": 0.55, "churn": 0.0}


def test_several_anomalies_apply_the_primarys_rule_and_name_them_all() -> None:
    proposal = plan(anomaly("traffic_spike", "api", 4.1), anomaly("node_failure", "edge-0"))
    assert proposal.weights == {"sla": 0.6, "latency": 0.3, "energy": 0.05, "cost": 0.1}
    assert proposal.confidence == 0.6
    assert proposal.explanation.startswith("traffic spike on api (4.1x): ")
    assert proposal.explanation.endswith(" Also in force: node failure on edge-0.")


def test_reward_statistics_per_component() -> None:
    terms = np.zeros((2, 3, len(REWARD_COMPONENTS)))
    terms[0, :, 1] = [-1.0, 0.0, 1.0]
    terms[1, :, 1] = 0.5
    stats = reward_statistics(terms)
    assert list(stats) == list(REWARD_COMPONENTS)
    assert stats["sla"] == {"mean": pytest.approx(0.25), "min": -1.0, "max": 1.0}
    assert stats["latency"] == {"mean": 0.0, "min": 0.0, "max": 0.0}
    assert reward_statistics(terms[:, 0, :])["sla"] == {"mean": pytest.approx(-0.25), "min": -1.0, "max": 0.5}
    assert reward_statistics(np.zeros((0, len(REWARD_COMPONENTS)))) == {}
    with pytest.raises(ValueError, match="shape"):
        reward_statistics(np.zeros((4, 3)))
