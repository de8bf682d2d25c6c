"""Manager latency benchmark: ``python -m manager.bench [--json]``. Run by hand, recorded in BENCHMARKS.md. Times one
incident from the detectors' anomaly to applied reward weights through the whole graph with the rule planner (with
the SQLite decision log and without), the graph's own overhead (each run minus the time spent inside its nodes), and
the floor under that overhead: the same graph, checkpointer and path with nodes that do nothing. ``--verify N`` also
times N verified incidents (manager.verify: K candidates and the status quo in the twin) on a ``--nodes``-node
cluster under the MARL controller, the cost of "propose, verify, then act"."""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from manager.anomalies import Anomaly
from manager.graph import DURABILITY, NODE_NAMES, RESULT_KEYS, ManagerContext, build_graph, checkpointer, close_graph, wire
from manager.loop import pin_to_cpu
from manager.planners import RulePlanner
from manager.state import PLANNING_NODE_FIELDS
from simulators.cluster import Cluster, ClusterConfig, NodeSpec, ServiceSpec, Workload
from simulators.errors import InputError
from simulators.snapshot import take_snapshot
from tools.decision_log import DecisionLog
from tools.sim_actuator import SimActuator


def _incident_input(cluster: Cluster, k: int, run_id: str) -> dict[str, Any]:
    anomaly = Anomaly("traffic_spike", "api", cluster.time_s, "api: 800 req/s against a baseline of 200 req/s (4.0x)", 1.8)
    return {
        "incident_id": f"bench-{k}",
        "run_id": run_id,
        "snapshot": take_snapshot(cluster).to_dict(PLANNING_NODE_FIELDS),
        "anomalies": [anomaly.as_dict()],
    }


def measure(runs: int, with_log: bool, folder: Path) -> dict[str, float]:
    nodes = tuple(NodeSpec(f"cloud-{i}", cpus=16) for i in range(16))
    cluster = Cluster(ClusterConfig(nodes, (ServiceSpec("api", initial_replicas=16),)), Workload(np.full((10, 1), 200.0)))
    cluster.step()
    log = DecisionLog(f"sqlite:///{folder / 'bench.db'}") if with_log else None
    run_id = log.start_run("bench", "static") if log else ""
    node_seconds: dict[str, float] = {}
    context = ManagerContext(planner=RulePlanner(), actuator=SimActuator(cluster), log=log, node_seconds=node_seconds)
    graph = build_graph(context, folder / f"cp-{with_log}.db")
    inputs = [_incident_input(cluster, k, run_id) for k in range(runs + 5)]
    times, overheads = [], []
    for k, state in enumerate(inputs):
        node_seconds.clear()
        start = time.perf_counter()
        graph.invoke(state, {"configurable": {"thread_id": state["incident_id"]}}, durability=DURABILITY, output_keys=RESULT_KEYS)
        elapsed = time.perf_counter() - start
        if k >= 5:
            times.append(elapsed * 1000)
            overheads.append((elapsed - sum(node_seconds.values())) * 1000)
    graph_closer(graph, log)
    return {
        "p50_ms": round(statistics.median(times), 2),
        "p99_ms": round(float(np.percentile(times, 99)), 2),
        "mean_ms": round(statistics.mean(times), 2),
        "graph_overhead_p50_ms": round(statistics.median(overheads), 2),
        "graph_overhead_p99_ms": round(float(np.percentile(overheads, 99)), 2),
    }


def measure_floor(runs: int, folder: Path) -> dict[str, float]:
    """LangGraph's own cost per run: the manager graph's shape, state schema, checkpointer and durability with
    nodes that do nothing, walked along the same path (observe to record, no approval). What the manager's graph
    overhead adds to this is its state's size and its nodes' outputs."""
    graph = wire(dict.fromkeys(NODE_NAMES, lambda state: {})).compile(checkpointer=checkpointer(folder / "cp-floor.db"))
    state = {"anomalies": [{"type": "traffic_spike"}], "plan": {"high_risk": []}}
    times = []
    for k in range(runs + 5):
        start = time.perf_counter()
        graph.invoke(state, {"configurable": {"thread_id": f"floor-{k}"}}, durability=DURABILITY, output_keys=RESULT_KEYS)
        if k >= 5:
            times.append((time.perf_counter() - start) * 1000)
    close_graph(graph)
    return {"p50_ms": round(statistics.median(times), 2), "p99_ms": round(float(np.percentile(times, 99)), 2)}


def graph_closer(graph: Any, log: DecisionLog | None) -> None:
    close_graph(graph)
    if log is not None:
        log.close()


def measure_llm(proposals: int) -> dict[str, Any]:
    """Seconds per proposal of the LLM planner against the local llama.cpp server (started here, on a free port)."""
    from manager.llm import LLMPlanner, LLMSettings, PlannerError
    from manager.serve import running_server
    from manager.state import Diagnosis
    from simulators.rewards import RewardWeights

    with running_server(prefer="llama.cpp") as plan:
        planner = LLMPlanner(LLMSettings(base_url=plan.base_url, model=plan.model, response_format="json_object", timeout_s=300, retries=0))
        diagnosis = Diagnosis(
            incident_id="bench", primary="traffic_spike", targets=["api"], anomalies=[], summary="traffic spike on api (4.0x)"
        )
        seconds, valid = [], 0
        for _ in range(proposals):
            start = time.perf_counter()
            try:
                planner.plan(diagnosis, RewardWeights(), {}, {})
                valid += 1
            except PlannerError:
                pass
            seconds.append(time.perf_counter() - start)
        return {"server": plan.kind, "model": plan.model, "proposals": proposals, "valid": valid,
                "seconds_p50": round(statistics.median(seconds), 2), "seconds_max": round(max(seconds), 2)}  # fmt: skip


def measure_verified(incidents: int, nodes: int, candidates: int, controller: str = "marl") -> dict[str, Any]:
    """Seconds per verified incident (the whole graph with the rule planner and its K candidates in the twin) on the
    simulators.bench cluster of ``nodes`` nodes, after 200 warm-up ticks; incidents a few ticks apart."""
    from local_agents.registry import make_controller
    from manager.verify import Twin, VerifySettings
    from simulators.bench import bench_scenario
    from simulators.rewards import RewardWeights
    from simulators.scenarios import compile_scenario

    cluster = compile_scenario(bench_scenario(nodes, ticks=200 + 10 * incidents + 400)).make_cluster()
    local = make_controller(controller)
    local.reset(cluster)
    for _ in range(200):
        local.act(cluster).apply(cluster)
    settings = VerifySettings(candidates=candidates)
    twins: list[Twin] = []

    def twin() -> Twin:
        twins.append(Twin(cluster, local, RewardWeights(), settings))
        return twins[-1]

    context = ManagerContext(planner=RulePlanner(), actuator=SimActuator(cluster), twin=twin, verify=settings)
    graph = build_graph(context)
    seconds, verified = [], []
    for k in range(incidents):
        for _ in range(10):
            local.act(cluster).apply(cluster)
        start = time.perf_counter()
        result = graph.invoke(_incident_input(cluster, k, ""), {"configurable": {"thread_id": f"v-{k}"}}, output_keys=RESULT_KEYS)
        seconds.append(time.perf_counter() - start)
        verified.append(len(result["verification"]["candidates"]))
    return {
        "nodes": nodes,
        "controller": controller,
        "candidates_asked": candidates,
        "candidates_verified_mean": round(statistics.mean(verified), 2),
        "horizon_s": settings.horizon_s,
        "futures": settings.futures,
        "seconds_per_incident_mean": round(statistics.mean(seconds), 3),
        "seconds_per_incident_max": round(max(seconds), 3),
        "twin_ticks_per_incident": round(statistics.mean(t.ticks_run for t in twins)),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Manager latency: anomaly to applied weights through the graph (rule planner).")
    parser.add_argument("--runs", type=int, default=200, help="incidents timed (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--llm", type=int, default=0, metavar="N", help="also time N proposals of the local LLM (llama.cpp + SmolLM2)")
    parser.add_argument("--cpu", type=int, default=None, help="pin the benchmark to this CPU core, as `ama run --cpu` pins the runtime")
    parser.add_argument("--verify", type=int, default=0, metavar="N", help="also time N verified incidents (K candidates in the twin)")
    parser.add_argument("--nodes", type=int, default=50, help="cluster size for --verify (default: %(default)s)")
    parser.add_argument("--candidates", type=int, default=8, metavar="K", help="candidates per incident, --verify (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        try:
            pin_to_cpu(args.cpu)
        except InputError as exc:
            parser.error(str(exc))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        report: dict[str, Any] = {
            "pinned_to_cpu": args.cpu,
            "rule_planner_anomaly_to_weights_with_log": measure(args.runs, True, folder),
            "rule_planner_anomaly_to_weights_no_log": measure(args.runs, False, folder),
            "langgraph_floor_same_graph_noop_nodes": measure_floor(args.runs, folder),
        }
        planner = RulePlanner()
        from manager.state import Diagnosis
        from simulators.rewards import RewardWeights

        diagnosis = Diagnosis(incident_id="x", primary="traffic_spike", targets=["api"], anomalies=[], summary="spike")
        start = time.perf_counter()
        for _ in range(args.runs):
            planner.plan(diagnosis, RewardWeights(), {}, {})
        report["rule_planner_alone_ms"] = round((time.perf_counter() - start) / args.runs * 1000, 3)
    if args.llm:
        report["local_llm"] = measure_llm(args.llm)
    if args.verify:
        report["verified_incident"] = measure_verified(args.verify, args.nodes, args.candidates)
    if args.json:
        print(json.dumps(report))
        return
    for key, value in report.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
