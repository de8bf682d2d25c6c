"""The runtime: anomalies open incidents, the manager rewrites weights at once and waits for an operator on
high-impact actions; a runtime killed while an approval is pending is started again, the operator approves, and the
action is applied exactly once; unanswered proposals expire."""

from __future__ import annotations

import json
from pathlib import Path

from manager.graph import checkpointer
from manager.loop import Runtime, RuntimeSettings
from manager.state import PLANNING_NODE_FIELDS
from manager.verify import VerifySettings
from simulators.cluster import NODE_BOOTING, NODE_ON
from simulators.scenarios import SCENARIO_DIR
from tests.spike import spike_scenario
from tools.decision_log import DecisionLog


def settings(tmp_path: Path, **extra: object) -> RuntimeSettings:
    """Unverified plans (the rule planner's answer as the guard leaves it): these tests are about the gate, approvals
    and restarts, which must hold whatever verification decides (tests/manager/test_verify.py tests that)."""
    extra = {"verify": VerifySettings(candidates=0), **extra}
    return RuntimeSettings(scenario=spike_scenario(tmp_path), controller="kpa", checkpoints=tmp_path / "checkpoints.db", **extra)  # type: ignore[arg-type]


def test_a_spike_rewrites_the_weights_and_proposes_nodes_for_approval(tmp_path: Path) -> None:
    log = DecisionLog(f"sqlite:///{tmp_path / 'log.db'}")
    runtime = Runtime(settings(tmp_path, ticks=200), log)
    summary = runtime.run()
    rows = log.decisions(run_id=runtime.run_id, actor="manager", limit=1000)
    weights = [r for r in rows if r.action == "set_reward_weights"]
    assert weights and weights[-1].status == "applied" and "traffic spike on api" in weights[-1].explanation
    assert runtime.schedule.current.sla > 0.4
    (proposal,) = [r for r in rows if r.action == "add_nodes"]
    assert proposal.status == "proposed" and proposal.risk == "high"
    assert summary["incidents_waiting"] == [proposal.incident_id]
    preview = json.loads(proposal.result_json or "{}")["preview"]  # the operator sees what adding nodes would do
    assert preview["horizon_s"] == 400.0 - proposal.time_s and "What-if over the next 277 s" in proposal.explanation  # to the end
    assert preview["with_proposal"]["cost"] > preview["status_quo"]["cost"]  # more nodes, more cost ...
    delta = preview["delta"]["sla_violation_rate"]  # the prediction, whichever way it goes (here spreading costs a little pooling)
    assert delta == preview["with_proposal"]["sla_violation_rate"] - preview["status_quo"]["sla_violation_rate"]
    assert (runtime.cluster.state == NODE_BOOTING).sum() == 0  # nothing runs without an approval
    saver = checkpointer(tmp_path / "checkpoints.db")
    saved = saver.get_tuple({"configurable": {"thread_id": proposal.incident_id}})
    saver.conn.close()
    assert saved is not None
    nodes = saved.checkpoint["channel_values"]["snapshot"]["nodes"]  # what the paused incident keeps of each node
    assert {tuple(n) for n in nodes} == {PLANNING_NODE_FIELDS} and len(nodes) == runtime.cluster.n_nodes


def test_restart_while_waiting_then_approval_applies_the_action_once(tmp_path: Path) -> None:
    log = DecisionLog(f"sqlite:///{tmp_path / 'log.db'}")
    first = Runtime(settings(tmp_path, ticks=200), log)
    first.run()
    (proposal,) = log.pending_approvals()
    del first  # the runtime dies with the approval pending

    log.decide_approval(proposal.id, "alice", approve=True, reason="spike is real")  # answered while nothing runs
    second = Runtime(settings(tmp_path, ticks=50), DecisionLog(f"sqlite:///{tmp_path / 'log.db'}"))
    assert proposal.incident_id in second.waiting
    second.run()
    row = second.log.decision(proposal.id)
    assert row is not None and row.status == "applied" and row.approved_by == "alice"
    assert (second.cluster.state == NODE_BOOTING).sum() + (second.cluster.state == NODE_ON).sum() > 4
    assert proposal.incident_id not in second.waiting
    applied = [r for r in second.log.decisions(actor="manager", limit=1000) if r.action == "add_nodes" and r.status == "applied"]
    assert len(applied) == 1


def test_unanswered_proposals_expire(tmp_path: Path) -> None:
    log = DecisionLog(f"sqlite:///{tmp_path / 'log.db'}")
    runtime = Runtime(settings(tmp_path, approval_timeout_s=60.0), log)
    runtime.run()
    rows = [r for r in log.decisions(actor="manager", limit=1000) if r.action == "add_nodes"]
    expired = [r for r in rows if r.status == "expired"]
    assert expired and all("no operator answer within 60 s" in (r.result_json or "") for r in expired)
    assert {r.status for r in rows} <= {"expired", "proposed"}  # a later review may propose again; nothing ran
    assert (runtime.cluster.state == NODE_BOOTING).sum() == 0 and (runtime.cluster.state == NODE_ON).sum() == 4


def test_demo_mode_approves_and_applies(tmp_path: Path) -> None:
    log = DecisionLog(f"sqlite:///{tmp_path / 'log.db'}")
    runtime = Runtime(settings(tmp_path, auto_approve="demo"), log)
    runtime.run()
    (row,) = [r for r in log.decisions(actor="manager", limit=1000) if r.action == "add_nodes"]
    assert row.status == "applied" and row.approved_by == "demo"
    assert (runtime.cluster.state == NODE_ON).sum() > 4


def test_manager_off_only_runs_the_local_controller(tmp_path: Path) -> None:
    log = DecisionLog(f"sqlite:///{tmp_path / 'log.db'}")
    runtime = Runtime(
        RuntimeSettings(scenario=SCENARIO_DIR / "traffic-spike-small.yaml", manager="off", ticks=100, checkpoints=tmp_path / "c.db"), log
    )
    runtime.run()
    assert log.decisions(actor="manager") == []


def test_manager_benchmark_runs_with_a_tiny_budget() -> None:
    import os
    import subprocess
    import sys

    cpu = max(os.sched_getaffinity(0))
    command = [sys.executable, "-m", "manager.bench", "--runs", "3", "--json", "--cpu", str(cpu)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["pinned_to_cpu"] == cpu
    assert report["rule_planner_anomaly_to_weights_with_log"]["p50_ms"] > 0
    assert report["langgraph_floor_same_graph_noop_nodes"]["p50_ms"] > 0
    out = subprocess.run([*command[:-1], "4096"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "--cpu 4096: this process may run on CPUs" in out.stderr


def _affinities_after_pinning(cpu: int) -> tuple[set[int], set[int], set[int]]:
    """In a child process: pin with a thread already running, then start another; the affinities of all three."""
    import os
    import threading

    from manager.loop import pin_to_cpu

    release = threading.Event()
    before = threading.Thread(target=release.wait)
    before.start()
    pin_to_cpu(cpu)
    after = threading.Thread(target=release.wait)
    after.start()
    try:
        return os.sched_getaffinity(0), os.sched_getaffinity(before.native_id), os.sched_getaffinity(after.native_id)  # type: ignore[arg-type]
    finally:
        release.set()
        before.join()
        after.join()


def test_pinning_keeps_every_thread_on_the_chosen_core_and_refuses_one_it_may_not_use() -> None:
    import multiprocessing
    import os

    import pytest

    from manager.loop import pin_to_cpu
    from simulators.errors import ConfigError

    before = os.sched_getaffinity(0)
    with pytest.raises(ConfigError, match="--cpu 4096: this process may run on CPUs"):
        pin_to_cpu(4096)
    assert os.sched_getaffinity(0) == before  # refused: nothing changed
    if len(before) < 2:
        pytest.skip("pinning is only visible with two CPUs or more")
    cpu = max(before)
    with multiprocessing.get_context("fork").Pool(1) as pool:  # a child: this test process keeps all its cores
        assert pool.apply(_affinities_after_pinning, (cpu,)) == ({cpu}, {cpu}, {cpu})


def test_weights_are_reverted_when_slos_get_worse_after_a_change(tmp_path: Path) -> None:
    from simulators.rewards import RewardWeights

    log = DecisionLog(f"sqlite:///{tmp_path / 'log.db'}")
    runtime = Runtime(settings(tmp_path, ticks=100), log)
    for _ in range(10):
        runtime.tick()
    before = runtime.schedule.current
    runtime._weights_applied(RewardWeights(churn=0.5), 600.0, "inc-earlier")  # a change still in force beneath
    changed = RewardWeights(energy=0.9, sla=0.1)
    runtime._weights_applied(changed, 600.0, "inc-test")  # what the graph's apply step calls
    assert runtime.schedule.current == changed
    for _ in range(70):
        runtime.recent_violations = 0.5  # as if the change had made things much worse
        runtime.tick()
    assert runtime.schedule.current == before and runtime.schedule.changes == []  # both changes undone, for good
    log.flush(force=True)
    rows = [r for r in log.decisions(run_id=runtime.run_id, actor="manager", limit=100) if "reverted the weights" in r.explanation]
    assert len(rows) == 1 and "SLA violations rose" in rows[0].explanation


def test_the_planner_sees_the_agents_reward_statistics_from_the_recent_window(tmp_path: Path) -> None:
    from manager.planners import RulePlanner
    from simulators.rewards import REWARD_COMPONENTS

    seen: list[dict[str, dict[str, float]]] = []

    class Recording(RulePlanner):
        def plan(self, diagnosis, weights, reward_stats, snapshot):  # type: ignore[no-untyped-def]
            seen.append(reward_stats)
            return super().plan(diagnosis, weights, reward_stats, snapshot)

    log = DecisionLog(f"sqlite:///{tmp_path / 'log.db'}")
    Runtime(settings(tmp_path, ticks=200), log, planner=Recording()).run()
    assert seen, "the spike opened no incident"
    stats = seen[0]
    assert set(stats) == set(REWARD_COMPONENTS)
    for name, row in stats.items():
        assert -1.0 <= row["min"] <= row["mean"] <= row["max"] <= 1.0, name
    assert stats["sla"]["min"] < 0.0  # the spike made some node miss its SLO in the window before the incident


# ---------------------------------------------------------------------------------------------- robustness


NODES = "{prefix: cloud, count: 6, tier: cloud, cpus: 8, mem_gb: 32, boot_s: 30}"


def scenario_file(tmp_path: Path, events: str, nodes: str = NODES) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(f"""\
name: robustness
seed: 3
duration_s: 600
cluster:
  nodes:
    - {nodes}
services:
  - {{name: api, work_ms: 40, slo_ms: 300, min_replicas: 2, max_replicas: 64, initial_replicas: 8}}
workload:
  - {{service: api, type: poisson, rps: 100}}
events:
{events}
""")
    return path


def test_a_price_change_alone_opens_one_incident_whose_rule_fires(tmp_path: Path) -> None:
    """The crash of the last round: a price change was reported but never in force, so its incident had no anomaly."""
    path = scenario_file(tmp_path, "  - {at_s: 200, type: price_change, tier: cloud, factor: 3}")
    log = DecisionLog(f"sqlite:///{tmp_path / 'log.db'}")
    unverified = VerifySettings(candidates=0)  # the rule's own answer, as the guard leaves it
    runtime = Runtime(RuntimeSettings(scenario=path, controller="marl", checkpoints=tmp_path / "c.db", verify=unverified), log)
    summary = runtime.run()
    assert summary["incidents_opened"] == 1 and summary["incidents_failed"] == 0
    rows = log.decisions(run_id=runtime.run_id, actor="manager", limit=1000)
    weights = sorted((r for r in rows if r.action == "set_reward_weights"), key=lambda r: r.tick)
    assert weights[0].status == "applied" and "price change on cloud (prices x3.00): raise cost 0.15 -> 0.30" in weights[0].explanation
    assert all(r.explanation.startswith("reverted") for r in weights[1:])  # the SLO watch may take it back; nothing else


def test_an_incident_that_raises_is_recorded_as_failed_and_the_run_goes_on(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import manager.graph

    def broken_guard(*args: object, **kwargs: object) -> None:
        raise RuntimeError("guard exploded")

    monkeypatch.setattr(manager.graph, "guard", broken_guard)
    log = DecisionLog(f"sqlite:///{tmp_path / 'log.db'}")
    runtime = Runtime(settings(tmp_path), log)
    summary = runtime.run()
    assert summary["ticks"] == runtime.cluster.horizon  # the run went to its end
    assert summary["incidents_failed"] >= 1
    failed = [r for r in log.decisions(run_id=runtime.run_id, actor="manager", limit=1000) if r.action == "incident"]
    assert failed and all(r.status == "failed" and "RuntimeError: guard exploded" in r.explanation for r in failed)
    assert runtime.schedule.current == runtime.schedule.initial  # nothing was changed for it


def test_one_failure_of_many_nodes_is_one_incident_closed_when_they_recover(tmp_path: Path) -> None:
    events = (
        "  - {at_s: 150, type: node_failure, node: [cloud-0, cloud-1, cloud-2]}\n"
        "  - {at_s: 400, type: node_recovery, node: [cloud-0, cloud-1, cloud-2]}"
    )
    path = scenario_file(tmp_path, events)
    log = DecisionLog(f"sqlite:///{tmp_path / 'log.db'}")
    runtime = Runtime(RuntimeSettings(scenario=path, controller="kpa", checkpoints=tmp_path / "c.db"), log)
    summary = runtime.run()
    failures = [a for a in runtime.reports if a.type == "node_failure"]
    assert len(failures) == 3
    rows = log.decisions(run_id=runtime.run_id, actor="manager", limit=1000)
    failure_incidents = {r.incident_id for r in rows if "node failure" in r.explanation}
    assert len(failure_incidents) == 1
    (incident,) = failure_incidents
    closed = [r for r in rows if r.action == "note" and r.incident_id == incident and "closed" in r.explanation]
    assert len(closed) == 1 and closed[0].time_s >= 400
    assert summary["incidents_opened"] == len({a.since_s for a in runtime.reports})  # one per tick anomalies started on


def test_a_drained_straggler_is_offered_back_once_its_slowdown_ends(tmp_path: Path) -> None:
    events = "  - {at_s: 120, type: straggler, node: cloud-1, slowdown: 5, duration_s: 200}"
    path = scenario_file(tmp_path, events)
    log = DecisionLog(f"sqlite:///{tmp_path / 'log.db'}")
    runtime = Runtime(RuntimeSettings(scenario=path, controller="kpa", checkpoints=tmp_path / "c.db", auto_approve="op"), log)
    runtime.run()
    rows = log.decisions(run_id=runtime.run_id, actor="manager", limit=1000)
    (drain,) = [r for r in rows if r.action == "drain_node"]
    (restore,) = [r for r in rows if r.action == "restore_node"]
    assert drain.status == "applied" and restore.status == "applied" and restore.risk == "high"
    assert 320 <= restore.time_s <= 340 and "cloud-1" in restore.explanation and "drained by incident" in restore.explanation
    assert runtime.cluster.state[runtime.cluster.node_names.index("cloud-1")] in (NODE_BOOTING, NODE_ON)


def test_the_llm_manager_refuses_in_one_line_without_a_server(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import socket

    import pytest

    from simulators.errors import ConfigError

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("AMA_LLM_BASE_URL", f"http://127.0.0.1:{port}/v1")
    log = DecisionLog(f"sqlite:///{tmp_path / 'log.db'}")
    with pytest.raises(ConfigError) as error:
        Runtime(settings(tmp_path, manager="llm"), log)
    assert "\n" not in str(error.value) and f"no LLM server answers at http://127.0.0.1:{port}/v1" in str(error.value)


def test_the_llm_manager_plans_with_the_llm_and_an_empty_reply_falls_back(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tests.manager.fake_openai import FakeOpenAI

    good = {"content": json.dumps({"weights": {"sla": 0.55}, "expires_in_s": 300, "explanation": "spike: more sla", "confidence": 0.7})}
    empty = {"content": json.dumps({"weights": {}, "explanation": "nothing to do", "confidence": 0.9})}
    with FakeOpenAI([good, empty, empty, empty]) as server:
        monkeypatch.setenv("AMA_LLM_BASE_URL", server.base_url)
        monkeypatch.setenv("AMA_LLM_RESPONSE_FORMAT", "json_object")
        log = DecisionLog(f"sqlite:///{tmp_path / 'log.db'}")
        runtime = Runtime(settings(tmp_path, manager="llm", ticks=200), log)
        runtime.run()
    assert server.requests, "the llm manager never asked the LLM"
    rows = log.decisions(run_id=runtime.run_id, actor="manager", limit=1000)
    weights = [r for r in rows if r.action == "set_reward_weights"]
    assert "spike: more sla" in weights[0].explanation  # the LLM's own plan
    notes = [r.explanation for r in rows if r.action == "note"]
    if len(server.requests) > 1:  # a second incident got the empty reply: a planner failure, the rule planner answered
        assert any("llm planner failed (its plan changes nothing" in n for n in notes)
