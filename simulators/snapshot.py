"""ClusterSnapshot: the one telemetry shape of AMA. Built by ``take_snapshot`` from a simulators.cluster.Cluster
after each tick (a real backend builds the same shape from its own metrics); read by the manager's detectors, the
decision log's metric samples, the evals' metrics and the operator console, which only ever see snapshots.

Lives in simulators, the bottom layer, so that the simulator can produce it without importing the layers above; a
real backend builds the same dataclasses from its own metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from simulators.cluster import NODE_FAILED, NODE_ON, NODE_STATE_NAMES, TIERS, Cluster, percentile_from_survival


@dataclass(frozen=True)
class NodeTelemetry:
    name: str
    tier: str
    state: str
    utilization: float
    power_w: float
    cost_per_h: float
    """What the replicas on this node cost per hour."""
    node_cost_per_h: float
    """What this node costs per hour while powered."""
    slowdown: float
    net_extra_ms: float
    mem_used_frac: float
    replicas: dict[str, int]
    booting: dict[str, int]
    queue: float
    served_rps: float
    violation_rate: float
    mean_latency_ms: float
    """Mean latency of the requests this node served in the tick (0 when it served none)."""
    network_ms: float
    """Client round trip to this node (its tier's latency plus any degradation), as RTT probes measure it."""
    slowness: float
    """How long this node takes to process a request, relative to the median node running the same service
    (1.0 = typical; a real backend measures it from handler durations)."""
    asleep: bool = False
    """Off because its own agent put it to sleep (it held no replica): that agent boots it again when needed."""


@dataclass(frozen=True)
class ServiceTelemetry:
    name: str
    slo_ms: float
    arrivals_rps: float
    served_rps: float
    queue: float
    replicas_warm: int
    replicas_booting: int
    mean_latency_ms: float
    p95_latency_ms: float
    violation_rate: float
    drops: float
    cold_starts: float


@dataclass(frozen=True)
class ClusterSnapshot:
    """Cluster telemetry at the end of one tick: per node, per service, and cluster-wide aggregates."""

    tick: int
    time_s: float
    nodes: tuple[NodeTelemetry, ...]
    services: tuple[ServiceTelemetry, ...]
    arrivals_rps: float
    served_rps: float
    violation_rate: float
    """Violating plus dropped requests over requests that finished (served or dropped) this tick."""
    drops: float
    cold_starts: float
    cost_per_h: float
    """What the replicas cost per hour at this tick's rate (each its dominant share of its node's price)."""
    node_cost_per_h: float
    """What the powered nodes cost per hour."""
    power_w: float
    nodes_on: int
    nodes_failed: int
    active_anomalies: tuple[dict[str, Any], ...]
    """Ground truth of the injected anomalies in force (for scoring detectors; a real backend leaves it empty)."""

    def node(self, name: str) -> NodeTelemetry:
        return next(n for n in self.nodes if n.name == name)

    def service(self, name: str) -> ServiceTelemetry:
        return next(s for s in self.services if s.name == name)

    def to_dict(self, node_fields: tuple[str, ...] | None = None) -> dict[str, Any]:
        """JSON-ready form (plain lists, dicts, floats) for the decision log and the manager's state; with
        ``node_fields``, each node carries only those (the manager's state keeps what it plans with, so its checkpoint
        stays small on a large cluster)."""
        return {
            "tick": self.tick,
            "time_s": self.time_s,
            "arrivals_rps": self.arrivals_rps,
            "served_rps": self.served_rps,
            "violation_rate": self.violation_rate,
            "drops": self.drops,
            "cold_starts": self.cold_starts,
            "cost_per_h": self.cost_per_h,
            "node_cost_per_h": self.node_cost_per_h,
            "power_w": self.power_w,
            "nodes_on": self.nodes_on,
            "nodes_failed": self.nodes_failed,
            "nodes": [vars(n) if node_fields is None else {k: getattr(n, k) for k in node_fields} for n in self.nodes],
            "services": [vars(s) for s in self.services],
            "active_anomalies": list(self.active_anomalies),
        }


def take_snapshot(cluster: Cluster) -> ClusterSnapshot:
    """Telemetry of the tick the cluster last stepped."""
    c, o = cluster, cluster.out
    tick = c.tick_s
    finished = o.served + o.drops
    served_s, exceed = c.latency_survival()
    p95 = percentile_from_survival(served_s, exceed, 95.0)
    mem_used = (c.warm + c.booting) @ c.svc_mem_mb / c.mem_mb_cap
    node_served = o.served.sum(1)
    node_finished = finished.sum(1)
    node_viol = np.divide(o.violations.sum(1), node_finished, out=np.zeros(c.n_nodes), where=node_finished > 0)
    node_latency = np.divide((o.latency_ms * o.served).sum(1), node_served, out=np.zeros(c.n_nodes), where=node_served > 0)
    node_slowness = _slowness(c)
    svc_finished = finished.sum(0)
    svc_viol = np.divide(o.violations.sum(0), svc_finished, out=np.zeros(c.n_services), where=svc_finished > 0)
    svc_served = o.served.sum(0)
    svc_latency = np.divide((o.latency_ms * o.served).sum(0), svc_served, out=np.zeros(c.n_services), where=svc_served > 0)
    node_cost_per_h = o.node_cost * (3600.0 / tick)
    replica_cost_per_h = o.replica_cost * (3600.0 / tick)
    names = c.service_names
    nodes = tuple(
        NodeTelemetry(
            name=c.node_names[i],
            tier=TIERS[c.tier[i]],
            state=NODE_STATE_NAMES[c.state[i]],
            utilization=float(o.node_util[i]),
            power_w=float(o.node_power_w[i]),
            cost_per_h=float(replica_cost_per_h[i]),
            node_cost_per_h=float(node_cost_per_h[i]),
            slowdown=float(c.slowdown[i]),
            net_extra_ms=float(c.net_extra_ms[i]),
            mem_used_frac=float(mem_used[i]),
            replicas=dict(zip(names, c.warm[i].astype(int).tolist(), strict=True)),
            booting=dict(zip(names, c.booting[i].astype(int).tolist(), strict=True)),
            queue=float(c.queue[i].sum()),
            served_rps=float(node_served[i] / tick),
            violation_rate=float(node_viol[i]),
            mean_latency_ms=float(node_latency[i]),
            network_ms=float(c.tier_latency_ms[i] + c.net_extra_ms[i]),
            slowness=float(node_slowness[i]),
            asleep=bool(c.asleep[i]),
        )
        for i in range(c.n_nodes)
    )
    services = tuple(
        ServiceTelemetry(
            name=names[j],
            slo_ms=float(c.slo_ms[j]),
            arrivals_rps=float(o.requests[j] / tick),
            served_rps=float(svc_served[j] / tick),
            queue=float(c.queue[:, j].sum()),
            replicas_warm=int(c.warm[:, j].sum()),
            replicas_booting=int(c.booting[:, j].sum()),
            mean_latency_ms=float(svc_latency[j]),
            p95_latency_ms=0.0 if np.isnan(p95[j]) else float(p95[j]),
            violation_rate=float(svc_viol[j]),
            drops=float(o.drops[:, j].sum()),
            cold_starts=float(o.cold_starts[j]),
        )
        for j in range(c.n_services)
    )
    total_finished = finished.sum()
    return ClusterSnapshot(
        tick=c.t,
        time_s=c.time_s,
        nodes=nodes,
        services=services,
        arrivals_rps=float(o.requests.sum() / tick),
        served_rps=float(o.served.sum() / tick),
        violation_rate=float(o.violations.sum() / total_finished) if total_finished > 0 else 0.0,
        drops=float(o.drops.sum()),
        cold_starts=float(o.cold_starts.sum()),
        cost_per_h=float(replica_cost_per_h.sum()),
        node_cost_per_h=float(node_cost_per_h.sum()),
        power_w=float(o.node_power_w.sum()),
        nodes_on=int((c.state == NODE_ON).sum()),
        nodes_failed=int((c.state == NODE_FAILED).sum()),
        active_anomalies=tuple(describe_event(c, e) for e in c.active),
    )


def _slowness(c: Cluster) -> np.ndarray:
    """Per node: the mean over its warm services of its processing time over the median node's for that service."""
    running = c.warm > 0
    if not running.any():
        return np.ones(c.n_nodes)
    service_ms = c.service_ms()
    masked = np.where(running, service_ms, np.nan)
    with np.errstate(all="ignore"):
        typical = np.nanmedian(np.where(running.any(0), masked, 1.0), axis=0) if running.any() else np.ones(c.n_services)
    ratio = np.where(running, service_ms / np.where(np.isnan(typical), 1.0, typical), 0.0)
    count = running.sum(1)
    return np.divide(ratio.sum(1), count, out=np.ones(c.n_nodes), where=count > 0)


def describe_event(cluster: Cluster, event: Any) -> dict[str, Any]:
    """An active anomaly as plain data: type, start, end, and the node and service names it concerns."""
    return {
        "type": event.type,
        "label": event.label,
        "start_s": event.at_tick * cluster.tick_s,
        "end_s": None if event.end_tick is None else event.end_tick * cluster.tick_s,
        "nodes": [cluster.node_names[i] for i in event.nodes],
        "services": [cluster.service_names[j] for j in event.services],
        "value": event.value,
    }
