"""Tests for simulators.cluster: the vectorized simulator core, through its public API (ClusterConfig, Workload,
Event, Cluster.step and the state arrays it exposes)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from simulators.cluster import (
    NODE_BOOTING,
    NODE_FAILED,
    NODE_OFF,
    NODE_ON,
    Cluster,
    ClusterConfig,
    Event,
    NodeSpec,
    ServiceSpec,
    StepOutcome,
    Workload,
    percentile_from_survival,
)

# ---------------------------------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------------------------------


def node(name: str = "n0", **kw: Any) -> NodeSpec:
    return NodeSpec(name=name, **kw)


def svc(name: str = "s0", **kw: Any) -> ServiceSpec:
    return ServiceSpec(name=name, **kw)


def make_cluster(
    nodes: Sequence[NodeSpec],
    services: Sequence[ServiceSpec],
    arrivals: np.ndarray | Sequence[Sequence[float]],
    events: list[Event] | None = None,
    **config: Any,
) -> Cluster:
    config_obj = ClusterConfig(nodes=tuple(nodes), services=tuple(services), **config)
    return Cluster(config_obj, Workload(arrivals=np.asarray(arrivals, dtype=np.float64)), events)


def const_arrivals(ticks: int, *per_service: float) -> np.ndarray:
    return np.tile(np.asarray(per_service, dtype=np.float64), (ticks, 1))


def copy_outcome(o: StepOutcome) -> StepOutcome:
    return StepOutcome(**{f.name: np.array(getattr(o, f.name), copy=True) for f in dataclasses.fields(o)})


def run(cluster: Cluster, ticks: int | None = None, offload: np.ndarray | None = None) -> list[StepOutcome]:
    """Step ``ticks`` times (default: to the end) with no target and an optional offload; copies of the outcomes."""
    outcomes = []
    for _ in range(cluster.horizon - cluster.t if ticks is None else ticks):
        outcomes.append(copy_outcome(cluster.step(offload=offload)))
    return outcomes


def mm1_mean_ms(base_ms: float, work_ms: float, rho: float, servers: float = 1.0) -> float:
    """Mean latency of the core's model for one cell: base + P(wait) / theta (Sakasegawa's P(wait))."""
    p_wait = rho ** (math.sqrt(2.0 * servers + 2.0) - 1.0)
    theta = servers / work_ms * (1.0 - rho)
    return base_ms + p_wait / theta


def assert_fits(cluster: Cluster) -> None:
    """Reservations (warm + booting) fit every node's CPU, memory and GPUs; nothing on off or failed nodes."""
    reps = cluster.replicas()
    assert (reps >= 0).all()
    np.testing.assert_array_equal(reps, np.round(reps))
    assert (reps @ cluster.svc_cpu <= cluster.cpus + 1e-9).all()
    assert (reps @ cluster.svc_mem_mb <= cluster.mem_mb_cap + 1e-9).all()
    assert (reps @ cluster.svc_gpu <= cluster.gpus + 1e-9).all()
    dead = (cluster.state == NODE_OFF) | (cluster.state == NODE_FAILED)
    assert reps[dead].sum() == 0


# ---------------------------------------------------------------------------------------------------------------
# Construction
# ---------------------------------------------------------------------------------------------------------------


def test_constructor_rejects_empty_config_and_wrong_arrival_shape() -> None:
    with pytest.raises(ValueError, match="at least one node"):
        make_cluster([], [svc()], np.zeros((3, 1)))
    with pytest.raises(ValueError, match="arrivals must have shape"):
        make_cluster([node()], [svc(), svc("s1")], np.zeros((3, 1)))


def test_initial_replicas_are_warm_and_spread_over_on_nodes() -> None:
    c = make_cluster(
        [node("a"), node("b"), node("off", initially_on=False)],
        [svc("x", initial_replicas=4), svc("y", min_replicas=3)],
        np.zeros((2, 2)),
    )
    np.testing.assert_array_equal(c.warm, [[2, 2], [2, 1], [0, 0]])
    np.testing.assert_array_equal(c.booting, 0)
    np.testing.assert_array_equal(c.state, [NODE_ON, NODE_ON, NODE_OFF])


def test_step_past_the_horizon_raises_and_reset_rewinds() -> None:
    c = make_cluster([node()], [svc()], const_arrivals(2, 1.0))
    run(c)
    assert c.done
    with pytest.raises(RuntimeError, match="workload ends"):
        c.step()
    c.reset()
    assert c.t == 0 and not c.done
    np.testing.assert_array_equal(c.queue, 0)


# ---------------------------------------------------------------------------------------------------------------
# 1. Conservation
# ---------------------------------------------------------------------------------------------------------------


def _conservation_cluster(events: list[Event] | None = None) -> Cluster:
    rng = np.random.default_rng(3)
    arrivals = rng.uniform(0.0, 90.0, size=(60, 3))
    arrivals[10:20, 1] = 400.0  # an overload burst: queues and timeout drops
    arrivals[:5, 2] = 0.0
    return make_cluster(
        [node("e0", tier="edge", cpus=4), node("e1", tier="edge", cpus=4), node("c0", cpus=8), node("c1", cpus=8)],
        [
            svc("a", work_ms=50.0, initial_replicas=4, timeout_s=3.0),
            svc("b", work_ms=80.0, initial_replicas=3, timeout_s=2.0),
            svc("cold", work_ms=30.0, min_replicas=0, cold_start_s=4.0),
        ],
        arrivals,
        events,
    )


def _assert_conserved(c: Cluster, outcomes: list[StepOutcome]) -> None:
    total_in = float(c.workload.arrivals.sum())
    served = sum(float(o.served.sum()) for o in outcomes)
    drops = sum(float(o.drops.sum()) for o in outcomes)
    left = float(c.queue.sum() + c.spill.sum())
    assert served > 0 and drops > 0  # the scenario really exercises both
    assert served + drops + left == pytest.approx(total_in, rel=1e-6)
    # per service too
    per_service = sum(o.served.sum(0) + o.drops.sum(0) for o in outcomes) + c.queue.sum(0) + c.spill
    np.testing.assert_allclose(per_service, c.workload.arrivals.sum(0), rtol=1e-6)


@pytest.mark.parametrize("offload", [None, np.array([0.4, 0.7, 0.0, 0.2])], ids=["no-offload", "offload"])
def test_conservation_arrivals_equal_served_plus_drops_plus_queue(offload: np.ndarray | None) -> None:
    c = _conservation_cluster()
    _assert_conserved(c, run(c, offload=offload))


@pytest.mark.parametrize("offload", [None, np.array([0.5, 0.5, 0.0, 0.0])], ids=["no-offload", "offload"])
def test_conservation_through_a_node_failure(offload: np.ndarray | None) -> None:
    events = [Event(at_tick=15, type="node_failure", nodes=(2,), duration_ticks=10), Event(at_tick=30, type="node_failure", nodes=(0,))]
    c = _conservation_cluster(events)
    outcomes = run(c, offload=offload)
    assert c.state[0] == NODE_FAILED
    _assert_conserved(c, outcomes)


def test_conservation_with_scaling_and_a_drain() -> None:
    c = _conservation_cluster()
    rng = np.random.default_rng(11)
    outcomes = []
    for t in range(c.horizon):
        if t == 25:
            c.drain(np.array([1]))
        target = rng.integers(0, 4, size=(c.n_nodes, c.n_services)).astype(np.float64) if t % 7 == 0 else None
        outcomes.append(copy_outcome(c.step(target)))
    _assert_conserved(c, outcomes)


# ---------------------------------------------------------------------------------------------------------------
# 2. Replica boot, scale-down order, set_targets limits
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cold_start_s", [1.0, 3.0, 7.0])
def test_replica_boots_for_exactly_its_cold_start(cold_start_s: float) -> None:
    c = make_cluster([node()], [svc(min_replicas=0, cold_start_s=cold_start_s), svc("other", cold_start_s=9.0)], np.zeros((20, 2)))
    cold = int(cold_start_s)
    start = 2
    run(c, start)
    target = c.replicas().copy()
    target[0, 0] = 1
    c.step(target)  # tick `start`
    booting_ticks = 1
    assert (c.warm[0, 0], c.booting[0, 0]) == (0, 1)
    while c.booting[0, 0] == 1:
        assert c.warm[0, 0] == 0
        c.step()
        booting_ticks += int(c.booting[0, 0] == 1)
    assert booting_ticks == cold
    assert c.t - 1 == start + cold  # warm from the step at tick start + cold
    assert c.warm[0, 0] == 1


def test_cold_start_rounds_up_to_whole_ticks() -> None:
    c = make_cluster([node()], [svc(min_replicas=0, cold_start_s=5.0)], np.zeros((10, 1)), tick_s=2.0)
    c.step(np.array([[1.0]]))
    booting = 1
    while c.booting[0, 0]:
        c.step()
        booting += int(c.booting[0, 0] > 0)
    assert booting == 3  # ceil(5 / 2)


def test_replica_counts_advance_through_a_capacity_run() -> None:
    c = make_cluster([node()], [svc(min_replicas=0, cold_start_s=2.0)], np.zeros((8, 1)))
    c.step(np.array([[2.0]]))  # t=0: two start
    c.step(np.array([[3.0]]))  # t=1: one more
    assert (c.warm[0, 0], c.booting[0, 0]) == (0, 3)
    c.step()  # t=2: the first two are warm
    assert (c.warm[0, 0], c.booting[0, 0]) == (2, 1)
    c.step()  # t=3
    assert (c.warm[0, 0], c.booting[0, 0]) == (3, 0)


def test_scale_down_removes_booting_replicas_before_warm_ones() -> None:
    c = make_cluster([node()], [svc(initial_replicas=2, min_replicas=0, cold_start_s=5.0)], np.zeros((10, 1)))
    c.step(np.array([[5.0]]))
    assert (c.warm[0, 0], c.booting[0, 0]) == (2, 3)
    c.step(np.array([[3.0]]))
    assert (c.warm[0, 0], c.booting[0, 0]) == (2, 1)
    c.step(np.array([[1.0]]))
    assert (c.warm[0, 0], c.booting[0, 0]) == (1, 0)
    np.testing.assert_array_equal(c.out.replica_changes, [[2.0]])


def test_scale_down_removes_the_newest_booting_replica_first() -> None:
    c = make_cluster([node()], [svc(min_replicas=0, cold_start_s=4.0)], np.zeros((10, 1)))
    c.step(np.array([[1.0]]))  # t=0: ready at t=4
    c.step(np.array([[2.0]]))  # t=1: ready at t=5
    c.step(np.array([[1.0]]))  # t=2: the t=1 one goes
    c.step()  # t=3
    assert c.warm[0, 0] == 0
    c.step()  # t=4: the survivor (started at t=0) is warm
    assert (c.warm[0, 0], c.booting[0, 0]) == (1, 0)


def test_set_targets_respects_resources_state_and_replica_bounds() -> None:
    nodes = [
        node("small", cpus=3, mem_gb=2),
        node("big", cpus=16, mem_gb=64),
        node("gpu", cpus=8, mem_gb=32, gpus=2),
        node("off", initially_on=False),
        node("doomed", cpus=16),
    ]
    services = [
        svc("web", cpu_per_replica=1.0, mem_mb=700.0, min_replicas=2, max_replicas=9, cold_start_s=2.0),
        svc("batch", cpu_per_replica=2.0, mem_mb=2048.0, min_replicas=1, max_replicas=5, cold_start_s=3.0),
        svc("llm", kind="gpu", cpu_per_replica=2.0, gpu_per_replica=1, mem_mb=8192.0, min_replicas=0, max_replicas=3, cold_start_s=4.0),
    ]
    c = make_cluster(nodes, services, const_arrivals(80, 30.0, 5.0, 2.0), [Event(at_tick=0, type="node_failure", nodes=(4,))])
    rng = np.random.default_rng(0)
    highest_seen = np.zeros(3)
    for t in range(c.horizon):
        before = c.per_service(c.replicas())
        target = rng.integers(0, 7, size=(c.n_nodes, c.n_services)).astype(np.float64)
        if t % 5 == 0:
            target[:] = 0.0  # scale everything to zero: min_replicas must hold
        c.step(target)
        after = c.per_service(c.replicas())
        assert_fits(c)
        assert (after <= c.max_replicas).all(), (t, after)
        if t > 0:  # at t=0 the failure, not set_targets, removes the replicas on "doomed"
            assert (after >= np.minimum(before, c.min_replicas)).all(), (t, before, after)
        assert c.replicas()[:2, 2].sum() == 0  # no GPU on small / big
        highest_seen = np.maximum(highest_seen, after)
    assert c.state[4] == NODE_FAILED and c.state[3] == NODE_OFF
    assert (highest_seen > c.min_replicas).all()  # the targets did scale things up


def test_set_targets_caps_at_max_replicas_cluster_wide() -> None:
    c = make_cluster([node("a"), node("b")], [svc(min_replicas=0, max_replicas=5)], np.zeros((3, 1)))
    c.step(np.array([[4.0], [4.0]]))
    assert c.replicas().sum() == 5


def test_set_targets_stops_at_min_replicas() -> None:
    c = make_cluster([node("a"), node("b")], [svc(initial_replicas=6, min_replicas=3)], np.zeros((3, 1)))
    c.step(np.zeros((2, 1)))
    assert c.replicas().sum() == 3


def test_set_targets_fits_node_cpu_and_memory() -> None:
    c = make_cluster(
        [node(cpus=4, mem_gb=1.5)],
        [svc("cpu", cpu_per_replica=1.5, mem_mb=128), svc("mem", cpu_per_replica=0.1, mem_mb=600)],
        np.zeros((3, 2)),
    )
    assert c.replicas().sum() == 2
    c.step(np.array([[10.0, 10.0]]))
    assert_fits(c)
    assert c.replicas().sum() > 2  # it did add what fits


# ---------------------------------------------------------------------------------------------------------------
# 3. GPU placement
# ---------------------------------------------------------------------------------------------------------------


def test_gpu_services_only_land_on_gpu_nodes() -> None:
    nodes = [node("cpu-big", cpus=64, mem_gb=512), node("gpu1", gpus=1, cpus=8), node("gpu4", gpus=4, cpus=32)]
    services = [svc("llm", kind="gpu", gpu_per_replica=1, initial_replicas=4, max_replicas=20), svc("web", initial_replicas=3)]
    c = make_cluster(nodes, services, const_arrivals(5, 10.0, 10.0))
    assert c.warm[0, 0] == 0 and c.warm[1:, 0].sum() == 4
    c.step(np.full((3, 2), 10.0))
    assert c.replicas()[0, 0] == 0
    assert c.replicas()[1, 0] <= 1 and c.replicas()[2, 0] <= 4
    assert c.replicas()[0, 1] == 10  # the CPU service is free to use the CPU node
    assert_fits(c)


def test_gpu_service_needing_two_gpus_skips_single_gpu_nodes() -> None:
    c = make_cluster([node("gpu1", gpus=1), node("gpu2", gpus=2)], [svc(kind="gpu", gpu_per_replica=2, min_replicas=0)], np.zeros((3, 1)))
    c.step(np.array([[3.0], [3.0]]))
    np.testing.assert_array_equal(c.replicas(), [[0.0], [1.0]])


def test_demand_cold_start_of_gpu_service_picks_a_gpu_node() -> None:
    c = make_cluster(
        [node("cpu", mem_gb=512), node("gpu", gpus=1, mem_gb=16)],
        [svc(kind="gpu", gpu_per_replica=1, min_replicas=0)],
        const_arrivals(3, 5.0),
    )
    c.step()
    np.testing.assert_array_equal(c.booting, [[0.0], [1.0]])


# ---------------------------------------------------------------------------------------------------------------
# 4. Demand-triggered cold start
# ---------------------------------------------------------------------------------------------------------------


def _cold_cluster(arrivals: np.ndarray, cold_start_s: float = 3.0) -> Cluster:
    return make_cluster(
        [node("small", mem_gb=16), node("roomy", mem_gb=64), node("off-huge", mem_gb=512, initially_on=False)],
        [svc("warm", initial_replicas=2), svc("cold", min_replicas=0, cold_start_s=cold_start_s, work_ms=20.0)],
        arrivals,
    )


def test_demand_cold_start_starts_one_replica_on_the_roomiest_on_node() -> None:
    arrivals = np.zeros((10, 2))
    arrivals[:, 0] = 5.0
    arrivals[0, 1] = 10.0
    c = _cold_cluster(arrivals, cold_start_s=3.0)
    o = c.step()
    np.testing.assert_array_equal(c.booting[:, 1], [0.0, 1.0, 0.0])
    np.testing.assert_array_equal(o.cold_starts, [0.0, 10.0])
    np.testing.assert_array_equal(o.replica_changes[:, 1], [0.0, 1.0, 0.0])
    assert o.served[:, 1].sum() == 0 and o.drops.sum() == 0
    assert c.queue[1, 1] == pytest.approx(10.0)
    outcomes = run(c, 3)  # t=1, 2 still booting; t=3 warm and serving
    for o in outcomes[:2]:
        assert o.served[:, 1].sum() == 0
        assert o.cold_starts[1] == 0  # no new arrivals there
    assert c.booting.sum() == 0 and c.warm[1, 1] == 1
    first = outcomes[2]
    assert first.served[1, 1] == pytest.approx(10.0)
    assert first.latency_ms[1, 1] >= 3000.0
    assert first.latency_ms[1, 1] == pytest.approx(3000.0 + 20.0 + 25.0, rel=0.05)


def test_demand_cold_start_with_steady_traffic_starts_exactly_one_replica() -> None:
    arrivals = np.zeros((10, 2))
    arrivals[:, 1] = 4.0
    c = _cold_cluster(arrivals, cold_start_s=4.0)
    outcomes = run(c, 5)
    for o in outcomes[:4]:
        np.testing.assert_array_equal(o.cold_starts, [0.0, 4.0])
        assert o.served[:, 1].sum() == 0
    assert sum(float(o.replica_changes[:, 1].sum()) for o in outcomes) == 1.0
    first = outcomes[4]
    np.testing.assert_array_equal(first.cold_starts, 0.0)
    assert first.served[:, 1].sum() == pytest.approx(20.0)  # everything queued, plus this tick's arrivals
    # the fluid queue gives served requests the mean wait: (4 + 3 + 2 + 1 + 0) ticks over 5 batches = 2 s
    assert first.latency_ms[1, 1] >= 2000.0
    assert first.latency_ms[1, 1] == pytest.approx(2000.0 + 20.0 + 25.0, rel=0.05)


def test_cold_service_with_no_room_anywhere_drops_its_arrivals() -> None:
    c = make_cluster([node(cpus=1)], [svc("hog", cpu_per_replica=1.0), svc("cold", min_replicas=0)], const_arrivals(3, 0.0, 6.0))
    o = c.step()
    assert c.booting.sum() == 0
    assert o.drops[:, 1].sum() == pytest.approx(6.0)
    np.testing.assert_array_equal(o.cold_starts, [0.0, 6.0])


# ---------------------------------------------------------------------------------------------------------------
# 5. Node failure and recovery
# ---------------------------------------------------------------------------------------------------------------


def test_node_failure_drops_queue_removes_replicas_and_stops_cost() -> None:
    events = [Event(at_tick=4, type="node_failure", nodes=(0,), duration_ticks=3)]
    c = make_cluster(
        [node("a", cpus=2, boot_s=3.0), node("b", cpus=2)],
        [svc(work_ms=100.0, initial_replicas=2, timeout_s=60.0, min_replicas=0, cold_start_s=2.0)],
        const_arrivals(25, 30.0),  # 15 per node per tick against 10 of capacity: queues build
        events,
    )
    run(c, 4)
    queued = float(c.queue[0, 0])
    assert queued > 0
    o = c.step()  # t=4: failure
    assert c.state[0] == NODE_FAILED
    assert c.warm[0].sum() == 0 and c.booting[0].sum() == 0 and c.queue[0].sum() == 0
    assert o.drops[0, 0] == pytest.approx(queued)
    assert o.node_cost[0] == 0 and o.node_power_w[0] == 0 and o.served[0].sum() == 0
    assert o.node_cost[1] > 0 and o.served[1, 0] == pytest.approx(10.0)  # b takes all traffic now
    assert o.arrivals[1, 0] == pytest.approx(30.0)
    run(c, 2)  # t=5, 6: still failed
    assert c.state[0] == NODE_FAILED
    c.step()  # t=7: recovery starts the boot
    assert c.state[0] == NODE_BOOTING
    assert c.out.node_cost[0] > 0 and c.out.node_power_w[0] == pytest.approx(100.0)
    while c.state[0] == NODE_BOOTING:
        c.step()
    assert c.state[0] == NODE_ON and c.t <= 7 + 3 + 1
    for _ in range(3):  # on, but empty: serves nothing until replicas are started
        assert c.step().served[0].sum() == 0
    assert c.warm[0].sum() == 0
    target = c.replicas().copy()
    target[0, 0] = 1
    assert c.step(target).served[0].sum() == 0  # booting replica
    assert c.step().served[0].sum() == 0
    assert c.step().served[0, 0] > 0  # warm after its 2 s cold start


def test_node_recovery_event_reboots_a_failed_node_and_ends_the_anomaly() -> None:
    events = [Event(at_tick=1, type="node_failure", nodes=(0,)), Event(at_tick=3, type="node_recovery", nodes=(0,))]
    c = make_cluster([node("a", boot_s=2.0), node("b")], [svc(initial_replicas=2)], const_arrivals(10, 5.0), events)
    run(c, 1)
    assert c.active == []
    run(c, 2)
    assert c.state[0] == NODE_FAILED and [e.type for e in c.active] == ["node_failure"]
    c.step()
    assert c.state[0] == NODE_BOOTING and c.active == []
    run(c, 3)
    assert c.state[0] == NODE_ON


@pytest.mark.parametrize("via", ["recovery", "power_on"])
def test_node_boots_for_exactly_boot_s(via: str) -> None:
    boot = 3
    if via == "recovery":
        events = [Event(at_tick=2, type="node_failure", nodes=(0,), duration_ticks=2)]
        c = make_cluster([node("a", boot_s=float(boot)), node("b")], [svc()], np.zeros((12, 1)), events)
        run(c, 4)  # the failure ends at tick 4
    else:
        c = make_cluster([node("a", boot_s=float(boot), initially_on=False), node("b")], [svc()], np.zeros((12, 1)))
        run(c, 4)
        c.power_on(np.array([0]))
    seen = []
    for _ in range(boot + 1):
        o = c.step()
        seen.append((int(c.state[0]), bool(o.node_cost[0] > 0)))
    # booting (and paying) for the boot_s ticks from tick 4, on from the step at tick 4 + boot_s, like replicas
    assert seen == [(NODE_BOOTING, True)] * boot + [(NODE_ON, True)]


def test_only_empty_on_nodes_sleep_and_only_their_agents_may_wake_them() -> None:
    events = [Event(at_tick=3, type="node_failure", nodes=(1,), duration_ticks=2)]
    c = make_cluster([node("a"), node("b"), node("c")], [svc(initial_replicas=1, min_replicas=0)], const_arrivals(20, 5.0), events)
    assert c.replicas()[:, 0].tolist() == [1, 0, 0]
    c.step()
    c.sleep(np.arange(3))  # a holds the replica: left alone
    assert c.state.tolist() == [NODE_ON, NODE_OFF, NODE_OFF] and c.asleep.tolist() == [False, True, True]
    o = c.step()
    assert o.node_power_w[1:].sum() == 0 and o.node_cost[1:].sum() == 0 and o.served[0].sum() > 0
    c.drain(np.array([2]))  # an operator's drain of a sleeping node: no longer its agent's to wake
    assert c.asleep.tolist() == [False, True, False]
    run(c, 4)  # b fails at tick 3 and recovers at 5: it was asleep, so it stays off, and asleep
    assert c.state[1] == NODE_OFF and c.asleep[1]
    c.power_on(np.array([1]))
    assert c.state[1] == NODE_BOOTING and not c.asleep.any()


# ---------------------------------------------------------------------------------------------------------------
# 6. Stragglers, network degradation, price changes, cold-start storms
# ---------------------------------------------------------------------------------------------------------------


def test_straggler_slows_its_node_and_reverts() -> None:
    events = [Event(at_tick=3, type="straggler", nodes=(1,), value=3.0, duration_ticks=4)]
    c = make_cluster([node("a"), node("b")], [svc(work_ms=40.0, initial_replicas=2)], const_arrivals(12, 0.4), events)
    outcomes = run(c)
    before, during, after = outcomes[2], outcomes[4], outcomes[8]
    np.testing.assert_allclose(before.latency_ms[0], before.latency_ms[1])
    # service time 40 -> 120 ms: the slow node's latency rises by about the slowdown of its service time
    rise = during.latency_ms[1, 0] - before.latency_ms[1, 0]
    assert 80.0 <= rise <= 80.0 * 1.2
    assert during.latency_ms[1, 0] == pytest.approx(mm1_mean_ms(25.0 + 120.0, 120.0, 0.2 / (1000.0 / 120.0)))
    assert during.latency_ms[0, 0] == pytest.approx(before.latency_ms[0, 0])
    assert during.busy_replicas[1, 0] == pytest.approx(3.0 * before.busy_replicas[1, 0])
    np.testing.assert_allclose(after.latency_ms, before.latency_ms)
    np.testing.assert_array_equal(c.slowdown, [1.0, 1.0])


def test_straggler_latency_tracks_the_slowdown() -> None:
    rises = []
    for value in (2.0, 4.0):
        events = [Event(at_tick=1, type="straggler", nodes=(0,), value=value)]
        c = make_cluster([node()], [svc(work_ms=30.0)], const_arrivals(4, 0.1), events)
        outcomes = run(c)
        np.testing.assert_allclose(c.service_ms(), [[30.0 * value]])
        rises.append(outcomes[2].latency_ms[0, 0] - outcomes[0].latency_ms[0, 0])
    assert rises[0] == pytest.approx(30.0, rel=0.1)
    assert rises[1] == pytest.approx(90.0, rel=0.1)


def test_straggler_handover_between_nodes_updates_service_times() -> None:
    events = [
        Event(at_tick=1, type="straggler", nodes=(1,), value=2.0, duration_ticks=3),
        Event(at_tick=4, type="straggler", nodes=(2,), value=2.0),
    ]
    c = make_cluster([node("a"), node("b"), node("c")], [svc(work_ms=40.0, initial_replicas=3)], const_arrivals(6, 3.0), events)
    run(c, 5)
    np.testing.assert_array_equal(c.slowdown, [1.0, 1.0, 2.0])
    np.testing.assert_allclose(c.service_ms()[:, 0], [40.0, 40.0, 80.0])


def test_network_degradation_adds_exactly_its_latency_to_the_tier() -> None:
    nodes = [node("e0", tier="edge"), node("e1", tier="edge"), node("c0")]
    events = [Event(at_tick=2, type="network_degradation", nodes=(0, 1), value=37.5, duration_ticks=2)]
    c = make_cluster(nodes, [svc(initial_replicas=3)], const_arrivals(6, 6.0), events)
    outcomes = run(c)
    np.testing.assert_allclose(outcomes[2].latency_ms[:2] - outcomes[1].latency_ms[:2], 37.5)
    np.testing.assert_allclose(outcomes[3].latency_ms, outcomes[2].latency_ms)
    assert outcomes[2].latency_ms[2, 0] == pytest.approx(outcomes[1].latency_ms[2, 0])
    np.testing.assert_allclose(outcomes[4].latency_ms, outcomes[1].latency_ms)
    # the base latencies are the tiers' network latencies plus the service time and the queueing tail
    assert outcomes[1].latency_ms[0, 0] == pytest.approx(mm1_mean_ms(5.0 + 40.0, 40.0, 2.0 / 25.0))
    assert outcomes[1].latency_ms[2, 0] == pytest.approx(mm1_mean_ms(25.0 + 40.0, 40.0, 2.0 / 25.0))


def test_network_degradation_can_break_the_slo() -> None:
    events = [Event(at_tick=1, type="network_degradation", nodes=(0,), value=500.0, duration_ticks=1)]
    c = make_cluster([node()], [svc(slo_ms=300.0)], const_arrivals(3, 2.0), events)
    outcomes = run(c)
    assert outcomes[0].violations.sum() < 0.01 * outcomes[0].served.sum()
    assert outcomes[1].violations.sum() == pytest.approx(outcomes[1].served.sum())
    assert outcomes[2].violations.sum() < 0.01 * outcomes[2].served.sum()


def test_price_change_multiplies_node_cost_and_reverts() -> None:
    events = [Event(at_tick=2, type="price_change", nodes=(1,), value=2.5, duration_ticks=3)]
    c = make_cluster([node("a", price_per_h=0.8), node("b", price_per_h=1.2)], [svc()], np.zeros((8, 1)), events)
    outcomes = run(c)
    base = np.array([0.8, 1.2]) / 3600.0
    for t, o in enumerate(outcomes):
        factor = 2.5 if 2 <= t < 5 else 1.0
        np.testing.assert_allclose(o.node_cost, base * [1.0, factor], rtol=1e-12)


def test_cold_start_storm_moves_named_warm_replicas_to_booting() -> None:
    events = [Event(at_tick=2, type="cold_start_storm", nodes=(0,), services=(0,))]
    c = make_cluster(
        [node("a"), node("b")],
        [svc("x", initial_replicas=4, cold_start_s=3.0), svc("y", initial_replicas=2)],
        const_arrivals(10, 8.0, 4.0),
        events,
    )
    run(c, 2)
    o = c.step()  # t=2
    np.testing.assert_array_equal(c.warm, [[0, 1], [2, 1]])
    np.testing.assert_array_equal(c.booting, [[2, 0], [0, 0]])
    np.testing.assert_array_equal(o.replica_changes, [[4, 0], [0, 0]])
    assert o.served[0, 0] == 0 and o.arrivals[1, 0] == pytest.approx(8.0)
    run(c, 2)
    assert c.booting[0, 0] == 2
    c.step()  # t=5: back after the 3 s cold start
    np.testing.assert_array_equal(c.warm, [[2, 1], [2, 1]])
    assert c.booting.sum() == 0


# ---------------------------------------------------------------------------------------------------------------
# 7. Offload
# ---------------------------------------------------------------------------------------------------------------


def _edge_cloud(edge_replicas: float, cloud_replicas: float) -> Cluster:
    """An edge and a cloud node with the given warm replicas of one 10 ms service; 40 requests a tick from tick 6."""
    arrivals = np.zeros((10, 1))
    arrivals[6:] = 40.0
    c = make_cluster([node("edge", tier="edge"), node("cloud")], [svc(work_ms=10.0, min_replicas=0)], arrivals)
    c.step(np.array([[edge_replicas], [cloud_replicas]]))
    run(c, 5)  # every replica warm (cold start 5 s), nothing queued
    assert c.booting.sum() == 0 and c.queue.sum() == 0
    np.testing.assert_array_equal(c.warm[:, 0], [edge_replicas, cloud_replicas])
    return c


@pytest.mark.parametrize("share", [0.25, 0.6])
def test_offload_moves_the_share_of_edge_arrivals_to_the_cloud_with_the_hop(share: float) -> None:
    c = _edge_cloud(3, 1)
    o = c.step(offload=np.array([share, 0.0]))
    edge_own, offloaded = 30.0 * (1 - share), 30.0 * share  # 3 of 4 warm replicas are on the edge
    np.testing.assert_allclose(o.arrivals[:, 0], [edge_own, 10.0 + offloaded])
    np.testing.assert_allclose(o.served[:, 0], o.arrivals[:, 0])
    # about `share` of the edge's arrivals are served in the cloud
    assert (o.served[1, 0] - 10.0) / 30.0 == pytest.approx(share)
    cloud_new = 10.0 + offloaded
    hop = offloaded / cloud_new * 10.0  # the mean hop over the cloud cell's requests
    assert o.latency_ms[1, 0] == pytest.approx(mm1_mean_ms(10.0 + 25.0 + hop, 10.0, cloud_new / 100.0))
    assert o.latency_ms[0, 0] == pytest.approx(mm1_mean_ms(10.0 + 5.0, 10.0, edge_own / 300.0, servers=3.0))


def test_offload_without_warm_replicas_elsewhere_moves_and_loses_nothing() -> None:
    plain = _edge_cloud(2, 0)
    off = _edge_cloud(2, 0)
    a = copy_outcome(plain.step())
    b = off.step(offload=np.array([0.5, 0.0]))
    np.testing.assert_allclose(b.arrivals, a.arrivals)
    np.testing.assert_allclose(b.served, a.served)
    assert b.served.sum() == pytest.approx(40.0) and b.drops.sum() == 0
    assert b.served[1].sum() == 0
    np.testing.assert_allclose(b.latency_ms, a.latency_ms)  # and pays no hop


def test_edge_only_offload_goes_to_peers_not_back_to_the_node() -> None:
    c = make_cluster([node("a", tier="edge"), node("b", tier="edge")], [svc(work_ms=10.0, initial_replicas=2)], const_arrivals(3, 20.0))
    o = c.step(offload=np.array([0.5, 0.0]))
    np.testing.assert_allclose(o.arrivals[:, 0], [5.0, 15.0])


def test_offload_share_is_clipped_and_kept_between_steps() -> None:
    c = _edge_cloud(3, 1)
    c.step(offload=np.array([2.0, -1.0]))
    np.testing.assert_allclose(c.offload, [0.95, 0.0])
    o = c.step()
    np.testing.assert_allclose(o.arrivals[:, 0], [30.0 * 0.05, 10.0 + 30.0 * 0.95])


# ---------------------------------------------------------------------------------------------------------------
# 8. Overload
# ---------------------------------------------------------------------------------------------------------------


def test_overload_grows_queue_and_latency_then_drops_beyond_timeout() -> None:
    # one replica at 100 ms: 10 requests per tick; 20 arrive; timeout 5 s = 50 requests of queue
    c = make_cluster([node()], [svc(work_ms=100.0, timeout_s=5.0, slo_ms=10_000.0)], const_arrivals(12, 20.0))
    outcomes, queues = [], []
    for _ in range(c.horizon):
        outcomes.append(copy_outcome(c.step()))
        queues.append(float(c.queue.sum()))
    latencies = [float(o.latency_ms[0, 0]) for o in outcomes]
    np.testing.assert_allclose(queues[:5], [10.0, 20.0, 30.0, 40.0, 50.0])
    np.testing.assert_allclose(queues[5:], 50.0)  # capped at capacity x timeout
    assert all(latencies[k + 1] > latencies[k] for k in range(5)), latencies
    assert all(o.served.sum() == pytest.approx(10.0) for o in outcomes)
    np.testing.assert_allclose([o.drops.sum() for o in outcomes], [0.0] * 5 + [10.0] * 7)


def test_violation_rate_is_one_when_base_latency_exceeds_the_slo() -> None:
    c = make_cluster([node()], [svc(work_ms=40.0, slo_ms=50.0, timeout_s=1.0)], const_arrivals(5, 60.0))  # 25 + 40 ms > 50
    for o in run(c):
        finished = o.served.sum() + o.drops.sum()
        assert o.violations.sum() == pytest.approx(finished)
    assert o.drops.sum() > 0


def test_violations_are_few_when_lightly_loaded_under_a_generous_slo() -> None:
    c = make_cluster([node()], [svc(work_ms=40.0, slo_ms=2000.0, initial_replicas=4)], const_arrivals(5, 10.0))
    o = run(c)[-1]
    assert 0.0 <= o.violations.sum() < 1e-6 * o.served.sum() + 1e-12


# ---------------------------------------------------------------------------------------------------------------
# 9. Latency model
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rho", [0.3, 0.6, 0.85])
def test_mm1_p95_matches_the_analytic_waiting_tail(rho: float) -> None:
    work_ms, tier_ms = 40.0, 25.0
    mu = 1.0 / work_ms  # per ms
    c = make_cluster([node()], [svc(work_ms=work_ms, slo_ms=1e6)], const_arrivals(3, rho * 25.0))
    c.step()
    served, exceed = c.latency_survival()
    assert served[0] == pytest.approx(rho * 25.0)
    p95 = percentile_from_survival(served, exceed, 95.0)[0]
    base = work_ms + tier_ms
    expected = base + math.log(rho / 0.05) / (mu * (1.0 - rho))
    assert p95 == pytest.approx(expected, rel=0.02)
    # and the mean latency is the M/M/1 mean wait on top of the base
    assert c.out.latency_ms[0, 0] == pytest.approx(base + rho / (mu * (1.0 - rho)))


def test_latency_tail_is_the_atom_at_base_below_the_wait_probability() -> None:
    c = make_cluster([node()], [svc(work_ms=40.0)], const_arrivals(3, 5.0))  # rho = 0.2: P(wait) = 0.2 < 0.5
    c.step()
    served, exceed = c.latency_survival()
    p50 = percentile_from_survival(served, exceed, 50.0)[0]
    assert p50 == pytest.approx(65.0, rel=0.1)  # the median request does not wait


def test_more_servers_shrink_the_tail_at_the_same_utilisation() -> None:
    p95 = []
    for replicas in (1, 4):
        c = make_cluster([node()], [svc(work_ms=40.0, initial_replicas=replicas)], const_arrivals(2, 0.7 * 25.0 * replicas))
        c.step()
        p95.append(percentile_from_survival(*c.latency_survival(), 95.0)[0])
    assert p95[1] < p95[0]


def test_percentile_from_survival_is_nan_where_nothing_was_served() -> None:
    out = percentile_from_survival(np.array([0.0]), np.zeros((1, 96)), 95.0)
    assert np.isnan(out[0])


# ---------------------------------------------------------------------------------------------------------------
# 10. Energy and cost
# ---------------------------------------------------------------------------------------------------------------


def test_idle_power_and_cost_per_tick() -> None:
    nodes = [
        node("loaded", cpus=16, power_idle_w=100.0, power_peak_w=300.0, price_per_h=0.9),
        node("empty", cpus=1, power_idle_w=50.0, power_peak_w=150.0, price_per_h=0.4),  # too small for a replica
        node("off", initially_on=False, price_per_h=5.0),
    ]
    services = [svc(cpu_per_replica=2.0, initial_replicas=4, min_replicas=0)]
    c = make_cluster(nodes, services, np.zeros((3, 1)), tick_s=2.0, idle_replica_power_share=0.25)
    np.testing.assert_array_equal(c.warm[:, 0], [4.0, 0.0, 0.0])
    o = c.step()
    # 4 idle replicas x 2 cores on 16 cores, each at a quarter of a busy one
    np.testing.assert_allclose(o.node_power_w, [100.0 + 200.0 * 0.25 * 8.0 / 16.0, 50.0, 0.0])
    np.testing.assert_allclose(o.node_cost, np.array([0.9, 0.4, 0.0]) * 2.0 / 3600.0)
    # replicas pay their dominant share of the node: 4 x max(2/16 cores, 0.5/64 GB) of 0.9 $/h
    np.testing.assert_allclose(o.replica_cost, np.array([4 * 2.0 / 16.0 * 0.9, 0.0, 0.0]) * 2.0 / 3600.0)
    np.testing.assert_allclose(o.node_util, 0.0)
    np.testing.assert_allclose(o.wasted_mem_gbs, [4 * 512.0 * 2.0 / 1024.0])


def test_busy_node_power_follows_utilisation() -> None:
    # 2 replicas of 1 core on 4 cores, 40 ms work: 25 requests per replica-second; 25 arrive: one replica busy
    c = make_cluster([node(cpus=4, power_idle_w=100.0, power_peak_w=300.0)], [svc(initial_replicas=2)], const_arrivals(2, 25.0))
    o = c.step()
    assert o.node_util[0] == pytest.approx(0.25)
    np.testing.assert_allclose(o.busy_replicas, [[1.0]])
    assert o.node_power_w[0] == pytest.approx(100.0 + 200.0 * (0.25 + 0.2 * 1.0 / 4.0))


def test_booting_node_pays_idle_power_and_price() -> None:
    c = make_cluster([node("a", initially_on=False, boot_s=10.0, price_per_h=3.6), node("b")], [svc()], np.zeros((3, 1)))
    o = c.step()
    assert o.node_power_w[0] == 0 and o.node_cost[0] == 0
    c.power_on(np.array([True, False]))
    o = c.step()
    assert c.state[0] == NODE_BOOTING
    assert o.node_power_w[0] == pytest.approx(100.0) and o.node_cost[0] == pytest.approx(3.6 / 3600.0)


def test_gpu_node_power_does_not_depend_on_unrelated_services() -> None:
    power = []
    for with_gpu_service in (False, True):
        services = [svc("web", initial_replicas=4)] + (
            [svc("llm", kind="gpu", gpu_per_replica=1, min_replicas=0)] if with_gpu_service else []
        )
        arrivals = np.zeros((2, len(services)))
        arrivals[:, 0] = 50.0
        c = make_cluster([node("gpu", gpus=2, cpus=8)], services, arrivals)
        power.append(float(c.step().node_power_w[0]))
    assert power[0] == pytest.approx(power[1])


# ---------------------------------------------------------------------------------------------------------------
# 11. Determinism
# ---------------------------------------------------------------------------------------------------------------


def _scripted_run(c: Cluster) -> list[StepOutcome]:
    rng = np.random.default_rng(42)
    outcomes = []
    for t in range(c.horizon):
        target = rng.integers(0, 5, size=(c.n_nodes, c.n_services)).astype(np.float64) if t % 3 == 0 else None
        offload = rng.uniform(0.0, 0.6, size=c.n_nodes) if t % 4 == 0 else None
        outcomes.append(copy_outcome(c.step(target, offload)))
    return outcomes


def test_identical_inputs_and_actions_give_identical_outcomes() -> None:
    events = [
        Event(at_tick=10, type="node_failure", nodes=(2,), duration_ticks=8),
        Event(at_tick=5, type="straggler", nodes=(0,), value=2.0, duration_ticks=10),
        Event(at_tick=20, type="cold_start_storm", nodes=(1, 3), services=(0, 1)),
    ]
    first, second = _conservation_cluster(events), _conservation_cluster(events)
    a, b = _scripted_run(first), _scripted_run(second)
    for oa, ob in zip(a, b, strict=True):
        for f in dataclasses.fields(StepOutcome):
            np.testing.assert_array_equal(getattr(oa, f.name), getattr(ob, f.name), err_msg=f.name)
    np.testing.assert_array_equal(first.warm, second.warm)
    np.testing.assert_array_equal(first.queue, second.queue)
    first.reset()
    again = _scripted_run(first)
    for oa, ob in zip(a, again, strict=True):
        np.testing.assert_array_equal(oa.served, ob.served)
        np.testing.assert_array_equal(oa.latency_ms, ob.latency_ms)
    assert sum(float(o.served.sum()) for o in a) > 0


def test_outcome_arrays_are_replaced_not_overwritten() -> None:
    c = make_cluster([node()], [svc()], const_arrivals(3, 5.0))
    served = c.step().served
    kept = served.copy()
    c.step()
    np.testing.assert_array_equal(served, kept)
    assert c.out.served is not served


def test_drain_between_steps_reports_its_replica_changes() -> None:
    c = make_cluster([node("a"), node("b")], [svc(initial_replicas=4)], const_arrivals(3, 5.0))
    c.step()
    c.drain(np.array([0]))
    o = c.step()
    assert c.state[0] == NODE_OFF
    assert o.replica_changes.sum() == 2.0


def test_least_loaded_routing_steers_work_away_from_a_straggler() -> None:
    results = {}
    for routing in ("replicas", "least-loaded"):
        nodes = [node("fast"), node("slow")]
        c = make_cluster(
            nodes,
            [svc(work_ms=40.0, initial_replicas=4)],
            const_arrivals(30, 40.0),
            [Event(0, "straggler", nodes=(1,), value=3.0)],
            routing=routing,
        )
        served, violations = 0.0, 0.0
        for _ in range(30):
            o = c.step()
            served += o.served.sum()
            violations += o.violations.sum()
        results[routing] = (violations / served, c.out.arrivals[:, 0].copy())
    by_replicas, by_load = results["replicas"], results["least-loaded"]
    assert by_replicas[1][0] == pytest.approx(by_replicas[1][1])  # split by replicas: 2 and 2
    assert by_load[1][0] > 2 * by_load[1][1]  # the fast node takes the bulk
    assert by_load[0] < by_replicas[0] / 2


def test_unknown_routing_is_rejected() -> None:
    with pytest.raises(ValueError, match="routing"):
        make_cluster([node()], [svc()], const_arrivals(2, 1.0), routing="nearest")
