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

from local_agents.explain import explain_cell_change
from simulators.cluster import Cluster
from simulators.env import Observer, apply_power
from simulators.errors import ConfigError
from simulators.placement import PLACEMENTS, Placer
from simulators.rewards import RewardWeights, pressures

__all__ = ["PLACEMENTS", "ActionReason", "Controller", "Decision", "NodeAgentController", "Placer", "ServiceScaler", "StaticController"]


@dataclass(frozen=True)
class ActionReason:
    """Why one action was taken, in words, with the numbers that drove it (for the decision log)."""

    actor: str
    action: str
    """``scale_up``, ``scale_down``, ``place``, ``remove``, ``offload``, ``sleep`` or ``wake``."""
    service: str
    node: str | None
    """None for a decision about a whole service."""
    before: int
    after: int
    text: str


@dataclass
class Decision:
    """What a controller wants this tick: replica targets (N, S), offload shares (N,) and node power choices (N,)
    (simulators.env.POWER_CHOICES: hold, sleep, wake; node agents only); None keeps them."""

    targets: np.ndarray | None = None
    offload: np.ndarray | None = None
    reasons: list[ActionReason] = field(default_factory=list)
    power: np.ndarray | None = None

    def apply(self, cluster: Cluster) -> None:
        """Carry the decision out and step the cluster one tick: nodes sleep or wake first, then
        ``Cluster.step`` with the targets and offload shares. What every runner of a controller calls."""
        apply_power(cluster, self.power)
        cluster.step(self.targets, self.offload)


class Controller(Protocol):
    name: str

    def reset(self, cluster: Cluster) -> None:
        """Start of a run: read the cluster's shape and initial state."""

    def act(self, cluster: Cluster) -> Decision:
        """Called once per tick after the cluster stepped (``cluster.out`` holds the last tick's outcome)."""


class NodeAgentController:
    """Base of the controllers that decide for each node from what its agent observes (simulators.env.Observer,
    the training env's own observation code): the MARL policy and the node rule. The manager's weights are part of
    that observation (``set_weights``); ``observe`` returns this tick's observations and masks."""

    name = "node-agents"

    def __init__(self, seed: int = 0, weights: RewardWeights | None = None) -> None:
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.weights = weights or RewardWeights()
        self.observer: Observer | None = None

    def reset(self, cluster: Cluster) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.observer = Observer(cluster)
        self.observer.reset(cluster, self.weights)

    def set_weights(self, weights: RewardWeights) -> None:
        """The manager's rewrite: in the observation from the next tick on."""
        self.weights = weights
        if self.observer is not None:
            self.observer.set_weights(weights)

    def observe(self, cluster: Cluster) -> Observer:
        if self.observer is None:
            self.reset(cluster)
        assert self.observer is not None
        self.observer.observe(cluster)
        return self.observer


class StaticController:
    """Keeps the initial replicas: the floor every real controller must beat."""

    name = "static"

    def reset(self, cluster: Cluster) -> None:
        pass

    def act(self, cluster: Cluster) -> Decision:
        return Decision()


class ServiceScaler:
    """Base of service-level controllers. Subclasses set ``name`` and implement ``observe`` (take in the last tick)
    and ``decide`` (update ``self.desired`` and return reasons for the services whose count changed)."""

    name = "service-scaler"

    def __init__(self, placement: str = "least-loaded", seed: int = 0) -> None:
        self.placer = Placer(placement, seed)
        self.desired = np.zeros(0)
        self.weights = RewardWeights()
        """The reward weights in force (shown in explanations; the manager replaces them)."""

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

    def set_weights(self, weights: RewardWeights) -> None:
        """The manager's new reward weights, mapped onto this controller's own knobs (``apply_pressure``)."""
        self.weights = weights
        self.apply_pressure(service_pressure(weights))

    def apply_pressure(self, pressure: float) -> None:
        """Subclasses move their knobs: pressure > 1 asks for more headroom, < 1 for less (1 = the defaults)."""

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
            if delta[i, j] > 0:
                action, where = "place", f"{self.placer.policy} placement, node {reserved[i]:.0%} reserved"
            else:
                action, where = "remove", "booting first" if cluster.booting[i, j] > 0 else "fullest node first"
            why = f"{self.name} wants {int(self.desired[j])} in all; {where}"
            text = explain_cell_change(cluster, int(i), int(j), before, after, why, self.weights)
            reasons.append(ActionReason(self.name, action, cluster.service_names[j], cluster.node_names[i], before, after, text))
        return reasons


def service_pressure(weights: RewardWeights) -> float:
    """How much the weights favour service quality (sla, latency) over thrift (cost, energy, utilization),
    relative to the default weights: 1.0 at the defaults, 2.1 for a typical spike plan (sla 0.6, latency 0.3)."""
    return float(pressures(weights.as_array())[1])


def energy_pressure(weights: RewardWeights) -> float:
    """How much the weights favour energy over service quality (sla, latency), relative to the default weights:
    1.0 at the defaults, 3.0 with the energy weight tripled, 0.43 with the SLA weight tripled."""
    return float(pressures(weights.as_array())[0])


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
