"""Tests for simulators.snapshot (take_snapshot, ClusterSnapshot) and simulators.metrics (RunRecorder), driven by a
small simulators.cluster.Cluster."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from simulators.cluster import (
    NODE_FAILED,
    NODE_ON,
    Cluster,
    Event,
    NodeSpec,
    ServiceSpec,
    percentile_from_survival,
)
from simulators.metrics import SERIES, VIOLATION_MINUTE_THRESHOLD, RunRecorder
from simulators.snapshot import ClusterSnapshot, take_snapshot
from tests.simulators.test_cluster import make_cluster


def busy_cluster(events: list[Event] | None = None, ticks: int = 30) -> Cluster:
    """Edge and cloud nodes, three services (one overloaded, one cold), a GPU node: every outcome is non-trivial."""
    rng = np.random.default_rng(5)
    arrivals = np.column_stack(
        [
            rng.uniform(10.0, 60.0, ticks),
            np.full(ticks, 70.0),  # more than its 3 replicas serve: queues, drops, violations
            np.where(np.arange(ticks) >= 4, 3.0, 0.0),  # a cold service that gets traffic from tick 4
        ]
    )
    return make_cluster(
        [
            NodeSpec("edge-0", tier="edge", cpus=4, mem_gb=8),
            NodeSpec("cloud-0", cpus=16),
            NodeSpec("gpu-0", cpus=16, gpus=2, price_per_h=3.0, power_idle_w=200.0, power_peak_w=700.0),
            NodeSpec("spare", initially_on=False),
        ],
        [
            ServiceSpec("web", work_ms=40.0, slo_ms=200.0, initial_replicas=3),
            ServiceSpec("llm", kind="gpu", gpu_per_replica=1, work_ms=120.0, slo_ms=600.0, initial_replicas=2, timeout_s=2.0),
            ServiceSpec("cron", work_ms=20.0, min_replicas=0, cold_start_s=3.0),
        ],
        arrivals,
        events,
        tick_s=0.5,
    )


# ---------------------------------------------------------------------------------------------------------------
# take_snapshot
# ---------------------------------------------------------------------------------------------------------------


def _check_snapshot(c: Cluster, snap: ClusterSnapshot) -> None:
    o, tick = c.out, c.tick_s
    assert snap.tick == c.t and snap.time_s == pytest.approx(c.t * tick)
    assert [n.name for n in snap.nodes] == list(c.node_names)
    assert [s.name for s in snap.services] == list(c.service_names)
    # cluster-wide aggregates agree with the per-service and per-node values
    assert sum(s.served_rps for s in snap.services) == pytest.approx(snap.served_rps)
    assert sum(n.served_rps for n in snap.nodes) == pytest.approx(snap.served_rps)
    assert sum(s.arrivals_rps for s in snap.services) == pytest.approx(snap.arrivals_rps)
    assert sum(s.drops for s in snap.services) == pytest.approx(snap.drops)
    assert sum(s.cold_starts for s in snap.services) == pytest.approx(snap.cold_starts)
    assert sum(n.cost_per_h for n in snap.nodes) == pytest.approx(snap.cost_per_h)
    assert sum(n.node_cost_per_h for n in snap.nodes) == pytest.approx(snap.node_cost_per_h)
    assert sum(n.power_w for n in snap.nodes) == pytest.approx(snap.power_w)
    # and with the cluster's arrays
    assert snap.served_rps == pytest.approx(o.served.sum() / tick)
    assert snap.arrivals_rps == pytest.approx(o.arrivals.sum() / tick)
    assert snap.drops == pytest.approx(o.drops.sum())
    assert snap.power_w == pytest.approx(o.node_power_w.sum())
    assert snap.cost_per_h == pytest.approx(o.replica_cost.sum() * 3600.0 / tick)
    assert snap.node_cost_per_h == pytest.approx(o.node_cost.sum() * 3600.0 / tick)
    assert snap.nodes_on == int((c.state == NODE_ON).sum())
    assert snap.nodes_failed == int((c.state == NODE_FAILED).sum())
    finished = o.served.sum() + o.drops.sum()
    assert snap.violation_rate == pytest.approx(o.violations.sum() / finished if finished > 0 else 0.0)
    assert 0.0 <= snap.violation_rate <= 1.0
    p95 = percentile_from_survival(*c.latency_survival(), 95.0)
    for j, s in enumerate(snap.services):
        assert s.replicas_warm == int(c.warm[:, j].sum())
        assert s.replicas_booting == int(c.booting[:, j].sum())
        assert s.queue == pytest.approx(c.queue[:, j].sum())
        assert s.served_rps == pytest.approx(o.served[:, j].sum() / tick)
        assert s.slo_ms == c.slo_ms[j]
        served = o.served[:, j].sum()
        if served > 0:
            assert s.mean_latency_ms == pytest.approx((o.latency_ms[:, j] * o.served[:, j]).sum() / served)
            assert s.p95_latency_ms == pytest.approx(p95[j])
            assert s.p95_latency_ms >= o.latency_ms[:, j][o.served[:, j] > 0].min() * 0.9
        else:
            assert s.mean_latency_ms == 0.0 and s.p95_latency_ms == 0.0
    for i, n in enumerate(snap.nodes):
        assert n.replicas == {name: int(c.warm[i, j]) for j, name in enumerate(c.service_names)}
        assert n.booting == {name: int(c.booting[i, j]) for j, name in enumerate(c.service_names)}
        assert n.queue == pytest.approx(c.queue[i].sum())
        assert n.utilization == pytest.approx(o.node_util[i])
        assert n.slowdown == c.slowdown[i] and n.net_extra_ms == c.net_extra_ms[i]
        assert n.mem_used_frac == pytest.approx(float((c.warm[i] + c.booting[i]) @ c.svc_mem_mb) / (c.config.nodes[i].mem_gb * 1024))
        assert n.state == ("off", "booting", "on", "failed")[c.state[i]]
        assert n.tier == c.config.nodes[i].tier


def test_snapshot_is_consistent_with_the_cluster_every_tick() -> None:
    events = [Event(at_tick=8, type="node_failure", nodes=(0,), duration_ticks=6)]
    c = busy_cluster(events)
    rng = np.random.default_rng(1)
    saw = {"drops": False, "cold": False, "failed": False, "booting": False}
    for t in range(c.horizon):
        target = rng.integers(0, 4, size=(c.n_nodes, c.n_services)).astype(np.float64) if t % 6 == 5 else None
        if t == 3:
            c.power_on(np.array([3]))
        c.step(target)
        snap = take_snapshot(c)
        _check_snapshot(c, snap)
        saw["drops"] |= snap.drops > 0
        saw["cold"] |= snap.cold_starts > 0
        saw["failed"] |= snap.nodes_failed == 1
        saw["booting"] |= any(n.state == "booting" for n in snap.nodes)
    assert all(saw.values()), saw


def test_snapshot_lookup_by_name() -> None:
    c = busy_cluster()
    c.step()
    snap = take_snapshot(c)
    assert snap.node("gpu-0").replicas["llm"] == int(c.warm[2, 1])
    assert snap.node("spare").state == "off" and snap.node("spare").power_w == 0.0
    assert snap.service("llm").replicas_warm == 2
    with pytest.raises(StopIteration):
        snap.node("nope")


def test_snapshot_to_dict_is_json_serialisable() -> None:
    events = [
        Event(at_tick=1, type="straggler", nodes=(1,), value=2.0, duration_ticks=5, label="slow cloud"),
        Event(at_tick=2, type="node_failure", nodes=(0,)),
    ]
    c = busy_cluster(events)
    for _ in range(4):
        c.step()
    d = take_snapshot(c).to_dict()
    text = json.dumps(d)
    back = json.loads(text)
    assert back == d
    assert back["nodes"][0]["state"] == "failed"
    assert back["nodes"][1]["slowdown"] == 2.0
    assert {a["type"] for a in back["active_anomalies"]} == {"straggler", "node_failure"}
    assert len(back["services"]) == 3 and back["services"][0]["name"] == "web"


def test_active_anomalies_list_events_only_while_in_force() -> None:
    events = [
        Event(at_tick=2, type="network_degradation", nodes=(0,), value=40.0, duration_ticks=3, label="wan"),
        Event(at_tick=4, type="traffic_spike", services=(0,), value=3.0, duration_ticks=2),
        Event(at_tick=6, type="node_failure", nodes=(1,)),
        Event(at_tick=9, type="node_recovery", nodes=(1,)),
    ]
    c = busy_cluster(events, ticks=12)
    active = []
    for _ in range(c.horizon):
        c.step()
        active.append(sorted(a["type"] for a in take_snapshot(c).active_anomalies))
    assert active[:2] == [[], []]
    assert active[2] == active[3] == ["network_degradation"]
    assert active[4] == ["network_degradation", "traffic_spike"]
    assert active[5] == ["traffic_spike"]
    assert active[6] == active[7] == active[8] == ["node_failure"]
    assert active[9:] == [[], [], []]  # a recovery ends the failure and is not an anomaly itself
    c.reset()
    for _ in range(3):
        c.step()
    (wan,) = take_snapshot(c).active_anomalies
    assert wan == {
        "type": "network_degradation",
        "label": "wan",
        "start_s": 1.0,
        "end_s": 2.5,
        "nodes": ["edge-0"],
        "services": [],
        "value": 40.0,
    }


# ---------------------------------------------------------------------------------------------------------------
# RunRecorder
# ---------------------------------------------------------------------------------------------------------------


def _recorded_run(keep_series: bool = True) -> tuple[Cluster, RunRecorder, list[dict[str, Any]]]:
    events = [Event(at_tick=10, type="node_failure", nodes=(1,), duration_ticks=5)]
    c = busy_cluster(events, ticks=40)
    rec = RunRecorder(c, keep_series=keep_series)
    per_tick = []
    for t in range(c.horizon):
        if t == 24:
            emptied = c.replicas().copy()
            emptied[0] = 0
            c.set_targets(emptied)  # edge-0 stops its replicas, and its agent puts it to sleep
            c.sleep(np.array([0]))
        c.step(None, np.array([0.3, 0.0, 0.0, 0.0]) if t == 20 else None)
        rec.record()
        o = c.out
        per_tick.append(
            {
                "requests": float(o.requests.sum()),  # new requests (arrivals also count work re-routed off a drained node)
                "served": float(o.served.sum()),
                "drops": float(o.drops.sum()),
                "violations": float(o.violations.sum()),
                "cost": float(o.replica_cost.sum()),
                "node_cost": float(o.node_cost.sum()),
                "energy_j": float(o.node_power_w.sum()) * c.tick_s,
                "cold_starts": float(o.cold_starts.sum()),
                "replica_changes": float(o.replica_changes.sum()),
                "wasted": float(o.wasted_mem_gbs.sum()),
                "asleep": float(c.asleep.sum()),
            }
        )
    return c, rec, per_tick


def test_run_recorder_summary_equals_the_sums_of_the_outcomes() -> None:
    c, rec, per_tick = _recorded_run()
    total = {k: sum(row[k] for row in per_tick) for k in per_tick[0]}
    s = rec.summary()
    assert s["ticks"] == c.horizon and s["duration_s"] == pytest.approx(c.horizon * c.tick_s)
    assert s["requests"] == pytest.approx(total["requests"], abs=0.051)
    assert s["served"] == pytest.approx(total["served"], abs=0.051)
    assert s["drops"] == pytest.approx(total["drops"])
    assert s["cost"] == pytest.approx(total["cost"])
    assert s["node_cost"] == pytest.approx(total["node_cost"])
    assert s["energy_kwh"] == pytest.approx(total["energy_j"] / 3.6e6)
    assert s["cold_starts"] == pytest.approx(total["cold_starts"])
    assert s["scale_actions"] == pytest.approx(total["replica_changes"])
    assert s["wasted_mem_gb_s"] == pytest.approx(total["wasted"])
    assert s["asleep_node_minutes"] == pytest.approx(total["asleep"] * c.tick_s / 60.0) and total["asleep"] > 0
    assert s["sla_violation_rate"] == pytest.approx(total["violations"] / (total["served"] + total["drops"]))
    bad_ticks = sum(row["violations"] / (row["served"] + row["drops"]) > VIOLATION_MINUTE_THRESHOLD for row in per_tick)
    assert s["sla_violation_minutes"] == pytest.approx(bad_ticks * c.tick_s / 60.0)
    assert total["drops"] > 0 and total["cold_starts"] > 0 and total["cost"] > 0  # a run that exercises every sum
    # the node bill of a tick: each powered node's price for tick_s seconds
    assert per_tick[0]["node_cost"] == pytest.approx((0.8 + 0.8 + 3.0) * c.tick_s / 3600.0)
    assert json.dumps(s)


def test_run_recorder_percentiles_are_ordered_and_plausible() -> None:
    _, rec, _ = _recorded_run()
    s = rec.summary()
    p50, p95, p99 = s["p50_latency_ms"], s["p95_latency_ms"], s["p99_latency_ms"]
    assert p50 is not None and p95 is not None and p99 is not None
    assert 0 < p50 <= p95 <= p99
    assert p50 >= 20.0 + 5.0  # no request is faster than the fastest service time plus the edge network
    assert p99 > p50  # the overloaded service makes a real tail


def test_run_recorder_series_have_one_point_per_tick() -> None:
    c, rec, per_tick = _recorded_run()
    assert set(rec.series) == set(SERIES)
    for name, values in rec.series.items():
        assert len(values) == c.horizon, name
        assert all(math.isfinite(v) for v in values), name
    np.testing.assert_allclose(rec.series["served_rps"], [row["served"] / c.tick_s for row in per_tick])
    np.testing.assert_allclose(rec.series["drops"], [row["drops"] for row in per_tick])
    np.testing.assert_allclose(rec.series["cost_per_h"], [row["cost"] * 3600.0 / c.tick_s for row in per_tick])
    assert all(0.0 <= v <= 1.0 for v in rec.series["violation_rate"])


def test_run_recorder_without_series_keeps_none_and_empty_run_has_no_percentiles() -> None:
    _, rec, _ = _recorded_run(keep_series=False)
    assert all(values == [] for values in rec.series.values())
    empty = RunRecorder(busy_cluster()).summary()
    assert empty["ticks"] == 0 and empty["requests"] == 0
    assert empty["p95_latency_ms"] is None and empty["sla_violation_rate"] == 0.0


def test_run_recorder_counts_unroutable_arrivals_as_requests() -> None:
    c = make_cluster([NodeSpec("cpu-only")], [ServiceSpec("llm", kind="gpu", gpu_per_replica=1, min_replicas=0)], np.full((3, 1), 5.0))
    rec = RunRecorder(c)
    for _ in range(3):
        c.step()
        rec.record()
    s = rec.summary()
    assert s["drops"] == pytest.approx(15.0)
    assert s["requests"] == pytest.approx(15.0)


def test_run_recorder_counts_drained_requests_once() -> None:
    c = make_cluster([NodeSpec("a", cpus=1), NodeSpec("b", cpus=1)], [ServiceSpec("s", initial_replicas=2)], np.full((6, 1), 60.0))
    rec = RunRecorder(c)
    for t in range(c.horizon):
        if t == 3:
            c.drain(np.array([0]))
        c.step()
        rec.record()
    assert rec.served + rec.drops + c.queue.sum() == pytest.approx(360.0)  # conservation holds in the core
    assert rec.summary()["requests"] == pytest.approx(360.0)


def test_scale_moves_reversed_within_ten_seconds_count_as_undone() -> None:
    """Up at t=1, down at t=5 (undone), up at t=20 and down at t=40 (not undone: 20 s apart); a node's failure
    taking its replicas is no move."""
    c = make_cluster([NodeSpec("a"), NodeSpec("b")], [ServiceSpec("api", initial_replicas=2, min_replicas=0)], np.full((60, 1), 10.0))
    recorder = RunRecorder(c)
    plan = {1: 3, 5: 1, 20: 3, 40: 1}
    for t in range(60):
        if t in plan:
            target = c.warm + c.booting
            target[0, 0] = plan[t]
            c.step(target)
        elif t == 50:
            c.events = [Event(at_tick=50, type="node_failure", nodes=(0,))]
            c.step()
        else:
            c.step()
        recorder.record()
    summary = recorder.summary()
    assert c.state[0] == NODE_FAILED and c.warm[0, 0] == 0  # the failure took a replica, which is no move
    assert summary["scale_moves"] == 4 and summary["moves_undone_10s"] == 1 and summary["undone_share"] == 0.25
