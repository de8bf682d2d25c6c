"""One interface for every local controller: the baselines (HPA, KPA, keep-alive), the clairvoyant bound and the
MARL policy. Called by ``ama sim``, the evals' runner and the runtime once per tick, before the cluster steps;
feeds ``Cluster.step`` (replica targets per cell and offload shares) and the decision log (one reason per action).

Service-level controllers (the shape of a Kubernetes Deployment with an autoscaler) subclass ``ServiceScaler``:
they decide a desired replica count per service, and a ``Placer`` (the ReplicaSet controller plus the scheduler)
turns the difference into per-node starts and stops, re-creating replicas lost to node failures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from simulators.cluster import NODE_ON, Cluster
from simulators.errors import ConfigError

PLACEMENTS = ("least-loaded", "round-robin", "first-fit", "best-fit", "random", "pack")


@dataclass(frozen=True)
class ActionReason:
    """Why one action was taken, in words, with the numbers that drove it (for the decision log)."""

    actor: str
    action: str
    """``scale_up``, ``scale_down``, ``place``, ``remove`` or ``offload``."""
    service: str
    node: str | None
    """None for a decision about a whole service."""
    before: int
    after: int
    text: str


@dataclass
class Decision:
    """What a controller wants this tick: replica targets (N, S) and offload shares (N,); None keeps them."""

    targets: np.ndarray | None = None
    offload: np.ndarray | None = None
    reasons: list[ActionReason] = field(default_factory=list)


class Controller(Protocol):
    name: str

    def reset(self, cluster: Cluster) -> None:
        """Start of a run: read the cluster's shape and initial state."""

    def act(self, cluster: Cluster) -> Decision:
        """Called once per tick after the cluster stepped (``cluster.out`` holds the last tick's outcome)."""


class StaticController:
    """Keeps the initial replicas: the floor every real controller must beat."""

    name = "static"

    def reset(self, cluster: Cluster) -> None:
        pass

    def act(self, cluster: Cluster) -> Decision:
        return Decision()


class Placer:
    """Turns desired replicas per service into per-node starts and stops. Additions go where the placement policy
    says, one replica at a time within free CPU, memory and GPUs of on-nodes; removals follow Kubernetes'
    ReplicaSet ranking (booting replicas first, then the node running the most replicas of the service; ``pack``
    empties the smallest cell instead, to keep replicas pooled)."""

    def __init__(self, policy: str = "least-loaded", seed: int = 0) -> None:
        if policy not in PLACEMENTS:
            raise ConfigError(f"unknown placement {policy!r}; choose one of {', '.join(PLACEMENTS)}")
        self.policy = policy
        self.rng = np.random.default_rng(seed)
        self._next = 0

    def reconcile(self, cluster: Cluster, desired: np.ndarray) -> np.ndarray:
        """Per-cell replica changes (N, S) that move each service's total towards ``desired`` (S,)."""
        current = cluster.replicas()
        gap = desired - cluster.per_service(current)
        delta = np.zeros_like(current)
        if (gap > 0).any():
            free_cpu, free_mem, free_gpu = cluster.free_resources()
            on = cluster.state == NODE_ON
            for j in np.flatnonzero(gap > 0):
                for _ in range(int(gap[j])):
                    fits = on & (free_cpu >= cluster.svc_cpu[j]) & (free_mem >= cluster.svc_mem_mb[j]) & (free_gpu >= cluster.svc_gpu[j])
                    if not fits.any():
                        break
                    i = self._choose(cluster, fits, free_cpu, int(j), delta[:, j])
                    delta[i, j] += 1
                    free_cpu[i] -= cluster.svc_cpu[j]
                    free_mem[i] -= cluster.svc_mem_mb[j]
                    free_gpu[i] -= cluster.svc_gpu[j]
        for j in np.flatnonzero(gap < 0):
            booting, warm = cluster.booting[:, j].copy(), cluster.warm[:, j].copy()
            for _ in range(int(-gap[j])):
                i = int(np.argmax(booting)) if booting.any() else self._removal_node(warm)
                if booting[i] > 0:
                    booting[i] -= 1
                elif warm[i] > 0:
                    warm[i] -= 1
                else:
                    break
                delta[i, j] -= 1
        return delta

    def _removal_node(self, warm: np.ndarray) -> int:
        """Kubernetes removes from the node running the most replicas; packing keeps big cells and empties the
        smallest one instead."""
        if self.policy != "pack":
            return int(np.argmax(warm))
        running = np.flatnonzero(warm > 0)
        return int(running[np.argmin(warm[running])]) if running.size else 0

    def _choose(self, cluster: Cluster, fits: np.ndarray, free_cpu: np.ndarray, service: int, added: np.ndarray) -> int:
        candidates = np.flatnonzero(fits)
        if self.policy == "least-loaded":  # kube-scheduler's LeastAllocated: the lowest reserved CPU share
            return int(candidates[np.argmax(free_cpu[candidates] / cluster.cpus[candidates])])
        if self.policy == "best-fit":  # the tightest node that still fits
            return int(candidates[np.argmin(free_cpu[candidates])])
        if self.policy == "pack":  # the node already running the most of this service: replicas pool in few cells
            running = cluster.replicas()[candidates, service] + added[candidates]
            return int(candidates[np.lexsort((-free_cpu[candidates], -running))[0]])
        if self.policy == "first-fit":
            return int(candidates[0])
        if self.policy == "random":
            return int(self.rng.choice(candidates))
        after = candidates[candidates >= self._next]  # round-robin
        chosen = int(after[0] if after.size else candidates[0])
        self._next = (chosen + 1) % cluster.n_nodes
        return chosen


class ServiceScaler:
    """Base of service-level controllers. Subclasses set ``name`` and implement ``observe`` (take in the last tick)
    and ``decide`` (update ``self.desired`` and return reasons for the services whose count changed)."""

    name = "service-scaler"

    def __init__(self, placement: str = "least-loaded", seed: int = 0) -> None:
        self.placer = Placer(placement, seed)
        self.desired = np.zeros(0)

    def reset(self, cluster: Cluster) -> None:
        self.desired = cluster.per_service(cluster.replicas())

    def observe(self, cluster: Cluster) -> None:
        pass

    def decide(self, cluster: Cluster) -> list[ActionReason]:
        return []

    def act(self, cluster: Cluster) -> Decision:
        if cluster.t > 0:
            self.observe(cluster)
        reasons = self.decide(cluster)
        reasons += self._activate_cold_services(cluster)
        self.desired = np.clip(self.desired, cluster.min_replicas, cluster.max_replicas)
        delta = self.placer.reconcile(cluster, self.desired)
        if not delta.any():
            return Decision(reasons=reasons)
        reasons += self._placement_reasons(cluster, delta)
        return Decision(targets=cluster.replicas() + delta, reasons=reasons)

    def change(self, cluster: Cluster, j: int, desired: int, why: str) -> ActionReason:
        """Set service ``j``'s desired replicas and return the reason, prefixed with the service's name."""
        reason = service_reason(self.name, cluster, j, int(self.desired[j]), desired, f"{cluster.service_names[j]}: {why}")
        self.desired[j] = desired
        return reason

    def _activate_cold_services(self, cluster: Cluster) -> list[ActionReason]:
        """A service with requests waiting and nothing warm or desired gets one replica, as Knative's activator
        asks the autoscaler to scale from zero (otherwise the demand-triggered cold start would be undone)."""
        waiting = cluster.per_service(cluster.queue) > 0
        cold = waiting & (self.desired < 1) & (cluster.per_service(cluster.warm) == 0)
        reasons = []
        for j in np.flatnonzero(cold):
            self.desired[j] = 1
            queued = float(cluster.per_service(cluster.queue)[j])
            reasons.append(
                ActionReason(
                    self.name,
                    "scale_up",
                    cluster.service_names[j],
                    None,
                    0,
                    1,
                    f"{self.name}: {queued:.0f} requests waiting with no warm replica: scale from 0 -> 1",
                )
            )
        return reasons

    def _placement_reasons(self, cluster: Cluster, delta: np.ndarray) -> list[ActionReason]:
        current = cluster.replicas()
        reserved = 1.0 - cluster.free_resources()[0] / cluster.cpus
        reasons = []
        for i, j in zip(*np.nonzero(delta), strict=True):
            before, after = int(current[i, j]), int(current[i, j] + delta[i, j])
            node, service = cluster.node_names[i], cluster.service_names[j]
            if delta[i, j] > 0:
                why = f"{self.placer.policy} placement, node {reserved[i]:.0%} CPU reserved"
                action = "place"
            else:
                why = (
                    "booting replicas first, then the node running the most"
                    if cluster.booting[i, j] > 0
                    else "the node running the most replicas"
                )
                action = "remove"
            text = f"{service} on {node}: {before} -> {after} replicas ({self.name} wants {int(self.desired[j])}; {why})"
            reasons.append(ActionReason(self.name, action, service, node, before, after, text))
        return reasons


def service_reason(actor: str, cluster: Cluster, j: int, before: int, after: int, text: str) -> ActionReason:
    """A service-level scaling reason (scale_up or scale_down by the sign of the change)."""
    return ActionReason(actor, "scale_up" if after > before else "scale_down", cluster.service_names[j], None, before, after, text)


def parse_params(pairs: list[str]) -> dict[str, str]:
    """``["target_utilization=0.6", "sync_period_s=30"]`` -> dict; a malformed pair is a ConfigError."""
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"controller parameter {pair!r} must look like KEY=VALUE")
        params[key.strip()] = value.strip()
    return params
