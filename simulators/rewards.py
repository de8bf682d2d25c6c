"""Reward weights and reward terms. Used by simulators.env (the reward of each node agent), by the local agents
(weights are part of every observation) and by the manager, which replaces the weights to steer the agents.

The reward of an agent is ``sum(w_k * term_k)``. Every term is "higher is better" and roughly in [-1, 1], so a
weight reads as the share of attention the agent pays to that concern.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from simulators.cluster import Cluster

REWARD_COMPONENTS: tuple[str, ...] = ("latency", "sla", "utilization", "energy", "cost", "churn")
"""Names of the reward components, in the order used by arrays, observations and the env's reward terms."""


@dataclass(frozen=True)
class RewardWeights:
    """Frozen, validated, non-negative reward weights. Replace it, never mutate it."""

    latency: float = 0.20
    """Mean latency of the node's requests relative to their SLO."""
    sla: float = 0.40
    """Share of the node's requests that miss their SLO or are dropped."""
    utilization: float = 0.10
    """Busy share of the CPU the node's replicas reserve (idle reservations are waste)."""
    energy: float = 0.10
    """Dynamic power of the node relative to its range between idle and peak."""
    cost: float = 0.15
    """Price of the node share the replicas reserve, relative to the cluster's dearest node."""
    churn: float = 0.05
    """Scale actions taken this tick (each start or stop of a replica has a price)."""

    def __post_init__(self) -> None:
        for name in REWARD_COMPONENTS:
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ValueError(f"reward weight {name} must be a number, got {value!r}")
            if math.isnan(value) or math.isinf(value) or value < 0:
                raise ValueError(f"reward weight {name} must be finite and >= 0, got {value}")
            object.__setattr__(self, name, float(value))

    @classmethod
    def from_mapping(cls, values: Mapping[str, float]) -> RewardWeights:
        unknown = sorted(set(values) - set(REWARD_COMPONENTS))
        if unknown:
            raise ValueError(f"unknown reward weight(s): {', '.join(unknown)}; known: {', '.join(REWARD_COMPONENTS)}")
        return cls(**{k: float(v) for k, v in values.items()})

    @classmethod
    def from_array(cls, values: np.ndarray) -> RewardWeights:
        return cls(**dict(zip(REWARD_COMPONENTS, (float(v) for v in values), strict=True)))

    def as_array(self) -> np.ndarray:
        return np.array([getattr(self, name) for name in REWARD_COMPONENTS], dtype=np.float64)

    def as_dict(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in REWARD_COMPONENTS}

    def replace(self, **changes: float) -> RewardWeights:
        return RewardWeights.from_mapping({**self.as_dict(), **changes})

    def describe(self, top: int | None = None) -> str:
        """Short text for explanations, largest weights first: ``"sla 0.40 latency 0.20 cost 0.15"``."""
        ranked = [(name, value) for name, value in sorted(self.as_dict().items(), key=lambda kv: -kv[1]) if value > 0]
        return " ".join(f"{name} {value:.2f}" for name, value in ranked[:top])


assert [f.name for f in fields(RewardWeights)] == list(REWARD_COMPONENTS)


PRESSURE_PARTS: tuple[tuple[str, ...], ...] = (("energy",), ("sla", "latency"), ("cost", "energy", "utilization"))
"""The sums of weights the pressures are ratios of: energy, quality, thrift (``pressures``; local_agents.act builds
the policy's power-head inputs from the same sums)."""


def pressures(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weights (..., 6) in ``REWARD_COMPONENTS`` order -> (energy pressure, service pressure), each relative to the
    default weights (1.0 at the defaults). Energy pressure: energy over quality (sla + latency); tripling the energy
    weight makes it 3. Service pressure: quality over thrift (cost + energy + utilization). Read by the controllers
    that map weights onto their knobs (local_agents.controllers)."""
    energy, quality, thrift = _part_sums(weights)
    energy_0, quality_0, thrift_0 = _part_sums(RewardWeights().as_array())
    return energy / np.maximum(quality, 1e-6) / (energy_0 / quality_0), quality / np.maximum(thrift, 1e-6) / (quality_0 / thrift_0)


def _part_sums(weights: np.ndarray) -> tuple[np.ndarray, ...]:
    index = {name: k for k, name in enumerate(REWARD_COMPONENTS)}
    return tuple(sum(weights[..., index[name]] for name in names) for names in PRESSURE_PARTS)


def sample_weights(rng: np.random.Generator, center: RewardWeights | None = None, concentration: float = 20.0) -> RewardWeights:
    """Draw weights from a Dirichlet around ``center`` (training samples one per episode so policies learn to follow
    any weights the manager may set). Larger ``concentration`` stays closer to the center."""
    base = (center or RewardWeights()).as_array()
    total = base.sum()
    if total <= 0:
        raise ValueError("center weights must not all be zero")
    alpha = np.maximum(base / total * concentration, 1e-3)
    return RewardWeights.from_array(rng.dirichlet(alpha) * total)


def combine(terms: np.ndarray, weights: RewardWeights | np.ndarray) -> np.ndarray:
    """Reward per agent from terms of shape (agents, components): ``terms @ w``."""
    w = weights.as_array() if isinstance(weights, RewardWeights) else weights
    return terms @ w


def reward_terms(cluster: Cluster, max_price_per_h: float, into: np.ndarray | None = None) -> np.ndarray:
    """Each node's reward terms for the tick the cluster just stepped, shape (nodes, components), every term "higher
    is better" in [-1, 1]. ``max_price_per_h`` scales the cost term (the priciest node of the scenario's catalog).
    Called by the env every step (into its own array) and by the manager's runtime for its reward statistics."""
    c, o = cluster, cluster.out
    terms = np.zeros((c.cpus.shape[0], len(REWARD_COMPONENTS))) if into is None else into
    ones = np.ones(c.warm.shape[1])  # row sums as products: faster than sum(axis=1) on small arrays
    served = o.served @ ones
    finished = served + o.drops @ ones
    latency_ratio = np.minimum(o.latency_ms / c.slo_ms, 4.0)
    terms[:, 0] = -((o.served * latency_ratio) @ ones) / np.maximum(served, 1e-9) / 4.0
    terms[:, 1] = -np.sqrt((o.violations @ ones) / np.maximum(finished, 1e-9))
    reserved_cpu = (c.warm + c.booting) @ c.svc_cpu
    busy_cpu = o.busy_replicas @ c.svc_cpu
    terms[:, 2] = np.minimum(busy_cpu / np.maximum(reserved_cpu, 1e-9), 1.0)
    dynamic = c.power_peak - c.power_idle
    powered = o.node_power_w > 0
    terms[:, 3] = -np.where(powered, (o.node_power_w - c.power_idle) / np.maximum(dynamic, 1e-9), 0.0)
    price = c.base_price_per_h * c.price_factor / max(max_price_per_h, 1e-9)
    terms[:, 4] = -np.minimum(reserved_cpu / c.cpus, 1.0) * price
    terms[:, 5] = -np.minimum((o.replica_changes @ ones) / max(c.warm.shape[1], 1), 1.0)
    return terms


def cluster_terms(cluster: Cluster, node_terms: np.ndarray) -> np.ndarray:
    """The cluster's reward terms for the tick (components,): what the operator pays for, not the mean of the nodes'
    ratios. SLA is all SLO-missing and dropped requests over all finished ones and latency is weighted by requests
    served (a node without replicas has no misses of its own, so the mean of node ratios rewards leaving the work to
    others; the square root as in ``reward_terms``); utilization is busy over reserved CPU of the whole cluster;
    energy, cost and churn are node means. Used by the MARL trainer's team reward."""
    o = cluster.out
    served = float(o.served.sum())
    finished = served + float(o.drops.sum())
    reserved = float(((cluster.warm + cluster.booting) @ cluster.svc_cpu).sum())
    busy = float((o.busy_replicas @ cluster.svc_cpu).sum())
    per_node_served = o.served.sum(axis=1)
    return np.array(
        [
            float(node_terms[:, 0] @ per_node_served) / served if served > 0 else 0.0,
            -float(np.sqrt(o.violations.sum() / finished)) if finished > 0 else 0.0,
            min(busy / reserved, 1.0) if reserved > 0 else 0.0,
            float(node_terms[:, 3].mean()),
            float(node_terms[:, 4].mean()),
            float(node_terms[:, 5].mean()),
        ]
    )
