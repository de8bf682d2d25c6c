"""The tool catalog (schemas, validation, risk) and the simulator actuator (idempotent, failures as data), and the
recorder that writes a controller's explained actions into the decision log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from local_agents.registry import make_controller
from simulators.cluster import NODE_BOOTING, NODE_OFF, Cluster, ClusterConfig, NodeSpec, ServiceSpec, Workload
from simulators.rewards import RewardWeights
from simulators.scenarios import SCENARIO_DIR, load_scenario
from tools.catalog import CATALOG, RiskBounds, ToolArgumentError, parse_call, tool_schemas
from tools.decision_log import Decision, DecisionLog, MetricSample
from tools.recorder import DecisionRecorder
from tools.sim_actuator import SimActuator

REPO = Path(__file__).resolve().parents[2]


def small_cluster() -> Cluster:
    nodes = (
        NodeSpec("cloud-0", cpus=4),
        NodeSpec("cloud-1", cpus=4),
        NodeSpec("cloud-2", cpus=4, initially_on=False, boot_s=10),
        NodeSpec("edge-0", tier="edge", cpus=2),
    )
    services = (ServiceSpec("api", initial_replicas=2), ServiceSpec("fn", initial_replicas=0, min_replicas=0))
    return Cluster(ClusterConfig(nodes, services), Workload(np.full((50, 2), 5.0)))


def test_catalog_exports_openai_tool_schemas() -> None:
    names = {t["function"]["name"] for t in tool_schemas()}
    assert {"scale", "prewarm", "offload", "migrate", "drain_node", "add_nodes", "remove_nodes", "set_reward_weights"} <= names
    assert {"get_snapshot", "recent_decisions", "get_metrics"} <= names
    assert "get_snapshot" not in {t["function"]["name"] for t in tool_schemas(include_read_only=False)}
    scale = next(t for t in tool_schemas() if t["function"]["name"] == "scale")["function"]["parameters"]
    assert scale["type"] == "object" and set(scale["required"]) == {"service", "replicas"}
    assert scale["properties"]["replicas"]["minimum"] == 0
    for name in ("drain_node", "add_nodes", "remove_nodes"):
        assert CATALOG[name].risk == "high"


@pytest.mark.parametrize(
    ("name", "arguments", "words"),
    [
        ("scale", {"service": "api"}, "tool scale: replicas: Field required"),
        ("scale", {"service": "api", "replicas": -1}, "replicas: Input should be greater than or equal to 0"),
        ("scale", {"service": "api", "replicas": 2, "colour": "red"}, "colour: unknown argument"),
        ("offload", {"node": "edge-0", "share": 1.5}, "share: Input should be less than or equal to 0.95"),
        ("set_reward_weights", {"weights": {"happiness": 1}}, "unknown component(s) happiness"),
        ("set_reward_weights", {"weights": {"sla": float("nan")}}, "weights.sla"),
        ("teleport", {}, "unknown tool 'teleport'"),
        ("scale", "{not json", "arguments are not valid JSON"),
        ("scale", "[1, 2]", "arguments must be a JSON object"),
    ],
)
def test_invalid_calls_are_rejected_with_one_line(name: str, arguments: object, words: str) -> None:
    with pytest.raises(ToolArgumentError) as info:
        parse_call(name, arguments)  # type: ignore[arg-type]
    assert words in str(info.value)
    assert "\n" not in str(info.value)


def test_risk_follows_the_bounds() -> None:
    current = {("api", None): 10}
    assert parse_call("scale", {"service": "api", "replicas": 14}, current_replicas=current).risk == "low"
    big = parse_call("scale", {"service": "api", "replicas": 40}, current_replicas=current)
    assert big.risk == "high" and "30 replicas" in big.risk_reason
    assert parse_call("drain_node", {"node": "cloud-0"}).risk == "high"
    assert parse_call("offload", {"node": "edge-0", "share": 0.8}).risk == "high"
    assert parse_call("offload", {"node": "edge-0", "share": 0.3}).risk == "low"
    weights = RewardWeights()
    small = parse_call("set_reward_weights", '{"weights": {"sla": 0.55}, "expires_in_s": 600}', current_weights=weights)
    assert small.risk == "low" and small.explanation == "set reward weights sla 0.55 for 600 s"
    jump = parse_call("set_reward_weights", {"weights": {"energy": 0.9}}, current_weights=weights, bounds=RiskBounds(max_weight_step=0.2))
    assert jump.risk == "high" and "energy" in jump.risk_reason


def test_sim_actuator_acts_once_per_request_and_reports_failures_as_data() -> None:
    c = small_cluster()
    seen: list[tuple[RewardWeights, float | None]] = []
    act = SimActuator(c, on_weights=lambda w, exp: seen.append((w, exp)))
    first = act.apply(parse_call("scale", {"service": "api", "replicas": 3, "node": "cloud-0"}), "req-1")
    assert first.ok and c.replicas()[0, 0] == 3
    again = act.apply(parse_call("scale", {"service": "api", "replicas": 3, "node": "cloud-0"}), "req-1")
    assert again.replayed and again.ok and c.replicas()[0, 0] == 3
    c.set_targets(c.replicas() - np.array([[1, 0], [0, 0], [0, 0], [0, 0]]))  # someone else changed it
    assert act.apply(parse_call("scale", {"service": "api", "replicas": 3, "node": "cloud-0"}), "req-1").replayed
    assert c.replicas()[0, 0] == 2  # the replay did not act again

    too_many = act.apply(parse_call("scale", {"service": "api", "replicas": 9, "node": "edge-0"}), "req-2")
    assert not too_many.ok and "now 2 of 9" in too_many.detail  # 2 cores fit 2 replicas
    unknown = act.apply(parse_call("prewarm", {"service": "api", "node": "mars-1"}), "req-3")
    assert not unknown.ok and "unknown node 'mars-1'" in unknown.detail
    assert not act.apply(parse_call("get_snapshot", {}), "req-4").ok
    assert not act.apply(parse_call("prewarm", {"service": "fn", "node": "cloud-1"}), "").ok  # no request id

    service_wide = act.apply(parse_call("scale", {"service": "fn", "replicas": 3}), "req-5")
    assert service_wide.ok and c.per_service(c.replicas())[1] == 3
    assert act.apply(parse_call("offload", {"node": "edge-0", "share": 0.4}), "req-6").ok and c.offload[3] == 0.4
    moved = act.apply(parse_call("migrate", {"service": "api", "from_node": "cloud-1", "to_node": "cloud-0", "replicas": 1}), "req-7")
    assert moved.ok
    added = act.apply(parse_call("add_nodes", {"count": 2, "tier": "cloud"}), "req-8")
    assert not added.ok and "only 1 of 2" in added.detail and c.state[2] == NODE_BOOTING
    drained = act.apply(parse_call("drain_node", {"node": "edge-0"}), "req-9")
    assert drained.ok and c.state[3] == NODE_OFF and c.replicas()[3].sum() == 0
    c.asleep[3] = True  # as if its agent had put it to sleep: an operator's drain takes it from the agent
    again = act.apply(parse_call("drain_node", {"node": "edge-0"}), "req-9b")
    assert again.ok and "was asleep" in again.detail and not c.asleep[3] and c.state[3] == NODE_OFF
    weights = act.apply(parse_call("set_reward_weights", {"weights": {"energy": 0.3}, "expires_in_s": 60}), "req-10")
    assert weights.ok and act.weights.energy == 0.3 and seen[-1][1] == 60
    refuse = act.apply(parse_call("remove_nodes", {"nodes": ["cloud-0", "cloud-1", "cloud-2"]}), "req-11")
    assert not refuse.ok and "every node" in refuse.detail


def test_recorder_writes_every_explained_action_with_weights_and_outcome(tmp_path: Path) -> None:
    scenario = load_scenario(SCENARIO_DIR / "spike-then-failure.yaml", duration_s=700)
    c = scenario.make_cluster()
    ctrl = make_controller("hpa")
    ctrl.reset(c)
    log = DecisionLog(f"sqlite:///{tmp_path / 'log.db'}")
    run_id = log.start_run(scenario.name, ctrl.name, seed=scenario.spec.seed)
    recorder = DecisionRecorder(log, run_id, sample_every=10)
    actions = 0
    for _ in range(c.horizon):
        d = ctrl.act(c)
        c.step(d.targets, d.offload)
        recorder.record_tick(c, d.reasons)
        actions += len(d.reasons)
    log.close()
    assert actions > 0
    assert log.count(Decision, run_id) == actions
    assert log.count(MetricSample, run_id) == 70
    rows = log.decisions(run_id=run_id, actor="hpa", limit=1000)
    place = next(r for r in rows if r.action == "place")
    assert place.node and place.service == "api" and " -> " in place.explanation and "weights sla 0.40" in place.explanation
    assert json.loads(place.weights_json or "{}")["sla"] == 0.4
    assert json.loads(place.args_json)["after"] == json.loads(place.args_json)["before"] + 1
    assert any(r.action == "scale_up" and "cpu" in r.explanation for r in rows)


def test_cli_records_a_run_and_prints_the_log(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    sim = [
        sys.executable,
        "-m",
        "ui.cli",
        "sim",
        "-s",
        "evals/scenarios/edge-cold-start-storm.yaml",
        "-c",
        "kpa",
        "--ticks",
        "120",
        "--db",
        db,
        "--json",
    ]
    out = subprocess.run(sim, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    run_id = json.loads(out.stdout)["run_id"]
    listed = subprocess.run(
        [sys.executable, "-m", "ui.cli", "decisions", "--db", db, "--run", run_id, "--actor", "kpa", "--since", "1h", "--json"],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert rows and all(r["run_id"] == run_id and r["actor"] == "kpa" and r["explanation"] for r in rows)
    bad = subprocess.run(
        [sys.executable, "-m", "ui.cli", "decisions", "--db", "mysql://nope"], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert bad.returncode == 2 and "database URL" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_read_only_queries_answer_from_the_log_and_the_snapshot(tmp_path: Path) -> None:
    from simulators.snapshot import take_snapshot
    from tools.queries import run_query

    c = small_cluster()
    log = DecisionLog(f"sqlite:///{tmp_path / 'q.db'}")
    run_id = log.start_run("small", "static")
    for t in range(30):
        c.step()
        log.record(run_id, c.t, c.time_s, "hpa" if t % 2 else "kpa", "scale_up", f"step {t}", node="cloud-0", service="api")
        log.sample(run_id, take_snapshot(c))
    log.flush(force=True)
    snap = take_snapshot(c)
    assert run_query(parse_call("get_snapshot", {}), log, snap, run_id)["snapshot"]["tick"] == 30
    assert run_query(parse_call("get_snapshot", {}), log, None, run_id) == {"error": "no snapshot yet"}
    recent = run_query(parse_call("recent_decisions", {"limit": 5, "actor": "hpa"}), log, snap, run_id)["decisions"]
    assert len(recent) == 5 and all(r["actor"] == "hpa" for r in recent) and recent[0]["explanation"] == "step 29"
    metrics = run_query(parse_call("get_metrics", {"last_s": 9}), log, snap, run_id)["metrics"]
    assert [m["tick"] for m in metrics] == list(range(21, 31))
    assert run_query(parse_call("get_metrics", {}), None, snap, run_id) == {"error": "no decision log configured"}


def test_an_invalid_call_is_rejected_and_its_reason_recorded(tmp_path: Path) -> None:
    c = small_cluster()
    log = DecisionLog(f"sqlite:///{tmp_path / 'calls.db'}")
    run_id = log.start_run("small", "manager")
    recorder = DecisionRecorder(log, run_id)
    assert recorder.record_call(c, "manager", "scale", {"service": "api", "replicas": -3}) is None
    valid = recorder.record_call(c, "manager", "scale", {"service": "api", "replicas": 30}, current_replicas={("api", None): 2})
    assert valid is not None and valid.risk == "high"
    log.flush(force=True)
    (row,) = log.decisions(run_id=run_id)
    assert row.status == "failed" and row.actor == "manager" and row.action == "scale"
    assert row.explanation == "rejected: tool scale: replicas: Input should be greater than or equal to 0"
    assert json.loads(row.args_json)["raw"] == '{"service": "api", "replicas": -3}'
