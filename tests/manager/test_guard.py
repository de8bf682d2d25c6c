"""The guard: weights clipped to bounds and step with one note each, scaled under the total cap, tool calls refused,
dropped or routed by risk; the weight schedule's expiries and the SLO watch's reverts."""

from __future__ import annotations

import pytest

from manager.guard import SloWatch, WeightBounds, WeightSchedule, guard
from manager.state import Proposal, ToolRequest
from simulators.rewards import RewardWeights
from tools.catalog import RiskBounds

DEFAULT = RewardWeights()  # latency 0.2, sla 0.4, utilization 0.1, energy 0.1, cost 0.15, churn 0.05


def proposal(
    weights: dict[str, float] | None = None, actions: list[ToolRequest] | None = None, expires_in_s: float | None = 600.0
) -> Proposal:
    return Proposal(weights=weights or {}, actions=actions or [], expires_in_s=expires_in_s, explanation="test")


def run_guard(p: Proposal, bounds: WeightBounds | None = None, replicas: dict[tuple[str, str | None], int] | None = None):
    return guard(p, DEFAULT, bounds or WeightBounds(), RiskBounds(), replicas or {})


def test_a_step_over_max_step_is_clipped_to_the_step_with_one_note() -> None:
    plan = run_guard(proposal({"sla": 0.9}))
    assert plan.weights == {**DEFAULT.as_dict(), "sla": 0.65}
    assert plan.notes == ["clipped sla: asked 0.90, applied 0.65 (a step of more than 0.25 from 0.40)."]
    assert plan.expires_in_s == 600.0
    assert plan.high_risk == []  # clipped, not escalated


def test_a_value_over_its_upper_bound_is_clipped_to_the_bound() -> None:
    plan = run_guard(proposal({"latency": 0.35, "cost": 0.05}), WeightBounds(high={"latency": 0.3}, low={"cost": 0.1}))
    assert plan.weights is not None
    assert plan.weights["latency"] == pytest.approx(0.3)
    assert plan.weights["cost"] == pytest.approx(0.1)
    assert plan.notes == [
        "clipped latency: asked 0.35, applied 0.30 (above its upper bound 0.30).",
        "clipped cost: asked 0.05, applied 0.10 (below its lower bound 0.10).",
    ]


def test_both_the_bound_and_the_step_are_named_when_both_clip() -> None:
    plan = run_guard(proposal({"sla": 1.5}))
    assert plan.weights is not None and plan.weights["sla"] == pytest.approx(0.65)
    assert plan.notes == ["clipped sla: asked 1.50, applied 0.65 (above its upper bound 1.00 and a step of more than 0.25 from 0.40)."]


def test_weights_over_max_total_are_scaled_down_proportionally() -> None:
    plan = run_guard(proposal({"sla": 0.6, "latency": 0.4}), WeightBounds(max_total=1.2))
    assert plan.weights is not None
    assert sum(plan.weights.values()) == pytest.approx(1.2)
    factor = 1.2 / 1.4
    assert plan.weights["sla"] == pytest.approx(0.6 * factor)
    assert plan.weights["churn"] == pytest.approx(0.05 * factor)
    assert plan.notes == ["scaled the weights down by 0.857 so they sum to 1.20 instead of 1.40."]


def test_an_unchanged_vector_gives_no_weights_and_no_expiry() -> None:
    plan = run_guard(proposal({"sla": 0.4, "cost": 0.15}))
    assert plan.weights is None
    assert plan.expires_in_s is None
    assert plan.notes == []


def test_an_invalid_call_is_refused_with_its_reason_never_raised() -> None:
    plan = run_guard(
        proposal(actions=[ToolRequest(name="scale", arguments={"service": "api", "replicas": -1}), ToolRequest(name="reboot")])
    )
    assert plan.low_risk == [] and plan.high_risk == []
    assert plan.notes[0] == "refused scale: replicas: Input should be greater than or equal to 0"
    assert plan.notes[1].startswith("refused reboot: unknown tool 'reboot'")


def test_calls_are_routed_by_the_catalogs_risk() -> None:
    actions = [
        ToolRequest(name="drain_node", arguments={"node": "edge-1"}),
        ToolRequest(name="add_nodes", arguments={"count": 2, "tier": "cloud"}),
        ToolRequest(name="scale", arguments={"service": "api", "replicas": 40}),
        ToolRequest(name="scale", arguments={"service": "web", "replicas": 12}),
    ]
    plan = run_guard(proposal(actions=actions), replicas={("api", None): 10, ("web", None): 10})
    assert [c["name"] for c in plan.high_risk] == ["drain_node", "add_nodes", "scale"]
    assert plan.high_risk[2]["arguments"] == {"service": "api", "replicas": 40, "node": None}
    assert plan.high_risk[2]["risk_reason"] == "changes api by 30 replicas (bound 10 and 50%)"
    assert plan.low_risk == [
        {
            "name": "scale",
            "arguments": {"service": "web", "replicas": 12, "node": None},
            "explanation": "scale web to 12 replicas",
            "risk_reason": "",
        }
    ]
    assert plan.weights is None and plan.notes == []


def test_a_read_only_tool_is_dropped_with_a_note() -> None:
    plan = run_guard(proposal(actions=[ToolRequest(name="get_snapshot")]))
    assert plan.low_risk == [] and plan.high_risk == []
    assert plan.notes == ["dropped get_snapshot: a read-only query is not an action."]


def test_a_set_reward_weights_call_is_folded_into_the_clipped_weights() -> None:
    call = ToolRequest(name="set_reward_weights", arguments={"weights": {"sla": 0.9, "cost": 0.2}, "expires_in_s": 300})
    plan = run_guard(proposal({"cost": 0.1}, [call], expires_in_s=None))
    assert plan.low_risk == [] and plan.high_risk == []
    assert plan.weights == {**DEFAULT.as_dict(), "sla": 0.65, "cost": 0.1}  # the proposal's own cost wins
    assert plan.expires_in_s == 300
    assert plan.notes[0].startswith("folded set_reward_weights")
    assert plan.notes[1] == "clipped sla: asked 0.90, applied 0.65 (a step of more than 0.25 from 0.40)."


def test_bounds_for_unknown_components_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown component"):
        WeightBounds(high={"speed": 1.0})


def test_schedule_applies_and_reverts_an_expired_change() -> None:
    schedule = WeightSchedule()
    raised = DEFAULT.replace(sla=0.6)
    schedule.apply(raised, 600.0, now_s=100.0, reason="spike")
    assert schedule.current == raised
    assert schedule.due(699.0) is None
    assert schedule.due(700.0) == (DEFAULT, ["spike"])
    assert schedule.current == DEFAULT
    assert schedule.due(800.0) is None


def test_nested_changes_revert_in_order() -> None:
    schedule = WeightSchedule()
    first, second = DEFAULT.replace(sla=0.6), DEFAULT.replace(sla=0.6, latency=0.3)
    schedule.apply(first, 600.0, now_s=0.0, reason="spike")
    schedule.apply(second, 200.0, now_s=100.0, reason="straggler")
    assert schedule.due(300.0) == (first, ["straggler"])
    assert schedule.due(599.0) is None
    assert schedule.due(600.0) == (DEFAULT, ["spike"])


def test_an_inner_expiry_waits_for_the_change_on_top_of_it() -> None:
    schedule = WeightSchedule()
    schedule.apply(DEFAULT.replace(sla=0.6), 100.0, now_s=0.0, reason="spike")
    schedule.apply(DEFAULT.replace(sla=0.7), 500.0, now_s=50.0, reason="failure")
    assert schedule.due(200.0) is None
    assert schedule.due(550.0) == (DEFAULT, ["failure", "spike"])  # both expired: straight back to the weights before the first
    assert schedule.changes == []


def test_a_change_without_expiry_becomes_the_baseline() -> None:
    schedule = WeightSchedule()
    schedule.apply(DEFAULT.replace(sla=0.6), 100.0, now_s=0.0, reason="spike")
    cheaper = DEFAULT.replace(cost=0.3)
    schedule.apply(cheaper, None, now_s=10.0, reason="price")
    assert schedule.due(1000.0) is None
    assert schedule.current == cheaper


def test_slo_watch_waits_for_settle_then_reverts_when_worse() -> None:
    watch = SloWatch()
    watch.changed(now_s=100.0, violation_rate_before=0.04)
    assert watch.pending
    assert not watch.check(159.0, 0.20)  # not settled yet
    assert watch.check(160.0, 0.07)  # +0.03 and +75%
    assert not watch.pending
    assert not watch.check(200.0, 0.5)  # cleared


def test_slo_watch_keeps_a_change_that_helped_or_barely_hurt() -> None:
    watch = SloWatch()
    watch.changed(now_s=0.0, violation_rate_before=0.10)
    assert not watch.check(100.0, 0.05)  # better
    assert not watch.check(100.0, 0.14)  # +0.04 but only +40%
    watch.changed(now_s=0.0, violation_rate_before=0.0)
    assert not watch.check(100.0, 0.015)  # +150% but only +0.015
    assert watch.pending
