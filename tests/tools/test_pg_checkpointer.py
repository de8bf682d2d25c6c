"""The manager graph on a PostgreSQL checkpointer and decision log: a proposal waits at the gate, a new graph on the
same database (a restart) finds it, and after an approval the action is applied once."""

from __future__ import annotations

import numpy as np
from langgraph.types import Command

from manager.anomalies import Anomaly
from manager.graph import ManagerContext, build_graph, close_graph, verdicts_from_log
from manager.planners import RulePlanner
from simulators.cluster import NODE_BOOTING, Cluster, ClusterConfig, NodeSpec, ServiceSpec, Workload
from simulators.snapshot import take_snapshot
from tests.tools.conftest import PostgresDatabase
from tools.decision_log import DecisionLog
from tools.sim_actuator import SimActuator


def test_approval_flow_on_postgres(postgres_db: PostgresDatabase) -> None:
    nodes = tuple(NodeSpec(f"cloud-{i}", cpus=8, initially_on=i < 3, boot_s=30) for i in range(5))
    c = Cluster(ClusterConfig(nodes, (ServiceSpec("api", initial_replicas=6),)), Workload(np.full((50, 1), 200.0)))
    c.step()
    log = DecisionLog(postgres_db.url)
    run_id = log.start_run("pg", "rule")
    anomaly = Anomaly("traffic_spike", "api", 1.0, "api: 800 req/s against a baseline of 200 req/s (4.0x)", 4.0).as_dict()
    state = {"incident_id": "inc-pg", "run_id": run_id, "snapshot": take_snapshot(c).to_dict(), "anomalies": [anomaly]}
    config = {"configurable": {"thread_id": "inc-pg"}}
    graph = build_graph(ManagerContext(planner=RulePlanner(), actuator=SimActuator(c), log=log), postgres_db.url)
    graph.invoke(state, config)
    (decision_id,) = graph.get_state(config).values["proposed"]
    close_graph(graph)  # the runtime dies

    restarted = build_graph(ManagerContext(planner=RulePlanner(), actuator=SimActuator(c), log=log), postgres_db.url)
    assert restarted.get_state(config).next == ("gate",)
    log.decide_approval(decision_id, "alice", approve=True)
    restarted.invoke(Command(resume=verdicts_from_log(log, [decision_id])), config)
    assert restarted.get_state(config).next == ()
    assert log.decision(decision_id).status == "applied"  # type: ignore[union-attr]
    assert (c.state == NODE_BOOTING).sum() >= 1
    close_graph(restarted)
    log.close()
