"""The manager graph through LangGraph's public behaviour, invoked the way the runtime invokes it
(``manager.graph.invoke_incident``: durable at the pause, only the result keys read): a low-risk plan applies at
once; a high-risk one pauses at the gate with a proposal in the decision log, survives a restart (a new graph on the
same checkpoint), and is applied exactly once after an operator's approval; rejected and expired proposals never run;
a planner that fails, raises or proposes nothing is replaced by the rule planner, and says so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from manager.anomalies import Anomaly
from manager.graph import RESULT_KEYS, ManagerContext, build_graph, invoke_incident, verdicts_from_log
from manager.planners import RulePlanner
from manager.state import Proposal
from simulators.cluster import NODE_BOOTING, NODE_OFF, Cluster, ClusterConfig, NodeSpec, ServiceSpec, Workload
from simulators.errors import TransientError
from simulators.snapshot import take_snapshot
from tools.decision_log import DecisionLog
from tools.sim_actuator import SimActuator


def cluster() -> Cluster:
    nodes = tuple(NodeSpec(f"cloud-{i}", cpus=8, initially_on=i < 3, boot_s=30) for i in range(5))
    return Cluster(ClusterConfig(nodes, (ServiceSpec("api", initial_replicas=6),)), Workload(np.full((100, 1), 200.0)))


def spike(factor: float) -> list[dict[str, Any]]:
    return [
        Anomaly(
            "traffic_spike", "api", 30.0, f"api: {200 * factor:.0f} req/s against a baseline of 200 req/s ({factor:.1f}x)", factor
        ).as_dict()
    ]


def start(c: Cluster, log: DecisionLog, run_id: str, incident: str, anomalies: list[dict[str, Any]]) -> dict[str, Any]:
    c.step()
    return {"incident_id": incident, "run_id": run_id, "snapshot": take_snapshot(c).to_dict(), "anomalies": anomalies}


def context(c: Cluster, log: DecisionLog, planner: Any = None) -> ManagerContext:
    return ManagerContext(planner=planner or RulePlanner(), actuator=SimActuator(c), log=log)


def test_a_low_risk_plan_rewrites_the_weights_at_once_and_is_logged(tmp_path: Path) -> None:
    c, log = cluster(), DecisionLog(f"sqlite:///{tmp_path / 'log.db'}")
    run_id = log.start_run("graph", "rule")
    ctx = context(c, log)
    graph = build_graph(ctx, tmp_path / "checkpoints.db")
    config = {"configurable": {"thread_id": "inc-1"}}
    result = invoke_incident(graph, "inc-1", start(c, log, run_id, "inc-1", spike(1.8)))
    assert set(result) <= set(RESULT_KEYS) and "traffic spike" in result["diagnosis"]["summary"]
    assert graph.get_state(config).next == ()
    assert graph.get_state(config).values["plan"]["high_risk"] == []
    assert ctx.actuator.weights.sla > 0.4  # type: ignore[attr-defined]
    rows = log.decisions(run_id=run_id, actor="manager")
    weights_row = next(r for r in rows if r.action == "set_reward_weights")
    assert weights_row.status == "applied" and weights_row.incident_id == "inc-1" and "traffic spike" in weights_row.explanation


def test_a_high_risk_action_waits_survives_a_restart_and_applies_once_after_approval(tmp_path: Path) -> None:
    c, log = cluster(), DecisionLog(f"sqlite:///{tmp_path / 'log.db'}")
    run_id = log.start_run("graph", "rule")
    config = {"configurable": {"thread_id": "inc-2"}}
    graph = build_graph(context(c, log), tmp_path / "checkpoints.db")
    result = invoke_incident(graph, "inc-2", start(c, log, run_id, "inc-2", spike(4.0)))
    assert result["__interrupt__"] and set(result["proposed"]) == set(graph.get_state(config).values["proposed"])
    paused = graph.get_state(config)
    assert paused.next == ("gate",)
    (decision_id,) = paused.values["proposed"]
    proposed = log.decision(decision_id)
    assert proposed is not None and proposed.status == "proposed" and proposed.action == "add_nodes" and proposed.risk == "high"
    assert (c.state == NODE_OFF).sum() == 2  # nothing happened yet
    assert verdicts_from_log(log, [decision_id]) is None

    # the runtime restarts: a new graph and actuator on the same checkpoint and log; an operator approves
    restarted = build_graph(context(c, log), tmp_path / "checkpoints.db")
    assert restarted.get_state(config).next == ("gate",)
    log.decide_approval(decision_id, "alice", approve=True, reason="peak hour")
    verdicts = verdicts_from_log(log, [decision_id])
    assert verdicts == {decision_id: "approved"}
    invoke_incident(restarted, "inc-2", verdicts=verdicts)
    assert restarted.get_state(config).next == ()
    booting = int((c.state == NODE_BOOTING).sum())
    assert booting >= 1
    row = log.decision(decision_id)
    assert row is not None and row.status == "applied" and row.approved_by == "alice"
    assert [a.operator for a in log.approvals(decision_id)] == ["alice"]
    # resuming again changes nothing: the action ran once
    invoke_incident(restarted, "inc-2", verdicts=verdicts)
    assert int((c.state == NODE_BOOTING).sum()) == booting


def test_rejected_and_expired_proposals_never_run(tmp_path: Path) -> None:
    for verdict in ("rejected", "expired"):
        c, log = cluster(), DecisionLog(f"sqlite:///{tmp_path / f'{verdict}.db'}")
        run_id = log.start_run("graph", "rule")
        config = {"configurable": {"thread_id": f"inc-{verdict}"}}
        graph = build_graph(context(c, log), tmp_path / f"{verdict}-checkpoints.db")
        invoke_incident(graph, f"inc-{verdict}", start(c, log, run_id, f"inc-{verdict}", spike(4.0)))
        (decision_id,) = graph.get_state(config).values["proposed"]
        if verdict == "rejected":
            log.decide_approval(decision_id, "bob", approve=False, reason="not now")
        else:
            log.set_status(decision_id, "expired")
        invoke_incident(graph, f"inc-{verdict}", verdicts=verdicts_from_log(log, [decision_id]))
        assert (c.state == NODE_OFF).sum() == 2
        assert log.decision(decision_id).status == verdict  # type: ignore[union-attr]


class Broken:
    name = "llm"

    def plan(self, *args: Any) -> Proposal:
        raise TransientError("LLM server at http://127.0.0.1:1/v1 did not answer: connection refused")


def test_a_failing_planner_falls_back_to_the_rule_planner_and_says_so(tmp_path: Path) -> None:
    c, log = cluster(), DecisionLog(f"sqlite:///{tmp_path / 'log.db'}")
    run_id = log.start_run("graph", "llm")
    graph = build_graph(context(c, log, Broken()), tmp_path / "checkpoints.db")
    invoke_incident(graph, "inc-3", start(c, log, run_id, "inc-3", spike(1.8)))
    assert graph.get_state({"configurable": {"thread_id": "inc-3"}}).values["proposal"]["planner"] == "rule"
    notes = [r.explanation for r in log.decisions(run_id=run_id) if r.action == "note"]
    assert any("llm planner failed" in n and "used the rule planner" in n for n in notes)


class Empty:
    """An LLM whose reply is valid but changes nothing (empty weights, no action)."""

    name = "llm"

    def plan(self, *args: Any) -> Proposal:
        return Proposal(weights={}, explanation="all is well", planner="llm")


class Raising:
    """A planner with a bug: not an AmaError."""

    name = "llm"

    def plan(self, *args: Any) -> Proposal:
        raise KeyError("sla")


def test_an_empty_or_raising_llm_plan_is_a_planner_failure(tmp_path: Path) -> None:
    for planner, why in ((Empty(), "its plan changes nothing"), (Raising(), "KeyError: 'sla'")):
        c, log = cluster(), DecisionLog(f"sqlite:///{tmp_path / f'{why[:3]}.db'}")
        run_id = log.start_run("graph", "llm")
        ctx = context(c, log, planner)
        graph = build_graph(ctx, tmp_path / f"{why[:3]}-checkpoints.db")
        invoke_incident(graph, "inc-5", start(c, log, run_id, "inc-5", spike(1.8)))
        assert graph.get_state({"configurable": {"thread_id": "inc-5"}}).values["proposal"]["planner"] == "rule"
        assert ctx.actuator.weights.sla > 0.4  # type: ignore[attr-defined]  # the rule's answer, not nothing
        notes = [r.explanation for r in log.decisions(run_id=run_id) if r.action == "note"]
        assert any(f"llm planner failed ({why}" in n and "used the rule planner" in n for n in notes), notes


def test_no_anomaly_means_no_plan_and_an_empty_result(tmp_path: Path) -> None:
    c, log = cluster(), DecisionLog(f"sqlite:///{tmp_path / 'log.db'}")
    graph = build_graph(context(c, log), tmp_path / "checkpoints.db")
    assert invoke_incident(graph, "inc-4", start(c, log, "r", "inc-4", [])) == {}
    assert "proposal" not in graph.get_state({"configurable": {"thread_id": "inc-4"}}).values


def test_the_primary_anomaly_is_the_incidents_own(tmp_path: Path) -> None:
    """A node failure already answered by another incident is context: this incident answers its own spike."""
    c, log = cluster(), DecisionLog(f"sqlite:///{tmp_path / 'log.db'}")
    graph = build_graph(context(c, log), tmp_path / "checkpoints.db")
    failure = {**Anomaly("node_failure", "cloud-0", 20.0, "cloud-0 reports failed").as_dict(), "own": False}
    anomalies = [failure, {**spike(1.8)[0], "own": True}]
    result = invoke_incident(graph, "inc-6", start(c, log, "r", "inc-6", anomalies))
    assert result["diagnosis"]["primary"] == "traffic_spike" and result["diagnosis"]["targets"] == ["api"]
