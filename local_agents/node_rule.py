"""The node rule: a reactive per-node threshold controller on exactly what a node agent observes (simulators.env's
observation rows), acting every tick like the MARL agents. Used as the teacher the MARL actor imitates before PPO
(local_agents.mappo) and as a baseline controller (``--controller node-rule``), which shows how much of the agents'
advantage over HPA comes from acting per node every tick rather than from learning.

Per (node, service) cell with replicas: one more when the node's load over its warm capacity asks for more replicas
than it has at the target utilization, or requests queue, or latency is over the SLO; one fewer when it would still
be well under target with one less. A node without a replica of an overloaded service pre-warms one with probability
``prewarm_share`` a tick (so not every idle node jumps at once). A node whose own degradation (added network
latency, a slowed CPU) eats a share of a service's SLO offloads part of its arrivals to healthy nodes instead of
adding replicas that would be as slow, and does not pre-warm. The target utilization follows the reward weights in
the observation, as HPA's does under the manager: target / sqrt(pressure).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from local_agents.controllers import ActionReason, Decision, NodeAgentController, service_pressure
from simulators.cluster import Cluster
from simulators.env import DOWN, HOLD, OBS_FEATURES, PREWARM, UP
from simulators.rewards import RewardWeights

_F = {name: i for i, name in enumerate(OBS_FEATURES)}
_W0 = _F["w_latency"]


@dataclass(frozen=True)
class NodeRuleSettings:
    target_utilization: float = 0.7
    prewarm_share: float = 0.1
    offload_at: tuple[float, float, float] = (0.15, 0.3, 0.6)
    """Offload 25, 50 or 75% of the node's arrivals once its own degradation (added network latency, plus the extra
    work time of a slowed node) reaches these shares of a service's SLO: capacity elsewhere fixes that, more
    replicas here do not."""


def degradation(obs: np.ndarray) -> np.ndarray:
    """Observations (N, S, F) -> each node's own degradation (N,): the latency its slowness adds to a request (added
    network latency, plus the extra work time of a slowed CPU) as a share of a service's SLO, the worst service's
    (the features' scales are simulators.env.Observer's)."""
    added_ms = obs[..., _F["node_net_extra"]] * 100.0 + obs[..., _F["node_slowdown"]] * 10.0 ** (obs[..., _F["svc_work"]] * 4.0)
    return (added_ms / 10.0 ** (obs[..., _F["svc_slo"]] * 4.0)).max(axis=1)


def node_rule_actions(obs: np.ndarray, codes: np.ndarray, rng: np.random.Generator, settings: NodeRuleSettings) -> np.ndarray:
    """Observations (N, S, F) and mask codes (N, S+1) -> actions (N, S+1); never a masked choice."""
    weights = RewardWeights.from_array(obs[0, 0, _W0:].astype(np.float64))
    target = float(np.clip(settings.target_utilization / np.sqrt(service_pressure(weights)), 0.3, 0.95))
    warm, booting = obs[..., _F["cell_warm"]] * 8.0, obs[..., _F["cell_booting"]] * 8.0
    load, backlog = obs[..., _F["cell_load"]], obs[..., _F["cell_backlog"]]
    latency = obs[..., _F["cell_latency"]] * 4.0
    offload = np.searchsorted(np.asarray(settings.offload_at), degradation(obs), side="right")
    have = warm + booting
    desired = warm * load / target
    latency_up = (latency > 1.0) & (offload == 0)[:, None]  # a degraded node's latency is not a capacity problem
    up = (have > 0) & ((desired > have + 0.5) | (backlog > 0.5) | latency_up)
    down = (have > 0) & (desired < have - 1.5) & (load < 0.7 * target) & (backlog < 0.05)
    svc_load = obs[..., _F["svc_load"]]
    prewarm = (have == 0) & (offload == 0)[:, None] & (svc_load > target + 0.15)
    prewarm &= rng.random(have.shape) < settings.prewarm_share
    scale = np.where(up, UP, np.where(down, DOWN, np.where(prewarm, PREWARM, HOLD)))
    allowed = ((codes[:, :-1] >> scale) & 1).astype(bool)
    actions = np.zeros((obs.shape[0], obs.shape[1] + 1), np.int64)
    actions[:, :-1] = np.where(allowed, scale, HOLD)
    actions[:, -1] = np.where((codes[:, -1] >> offload) & 1, offload, 0)
    return actions


class NodeRuleController(NodeAgentController):
    name = "node-rule"

    def __init__(self, settings: NodeRuleSettings | None = None, seed: int = 0) -> None:
        super().__init__(seed)
        self.settings = settings or NodeRuleSettings()

    def act(self, cluster: Cluster) -> Decision:
        observer = self.observe(cluster)
        actions = node_rule_actions(observer.obs, observer.codes, self.rng, self.settings)
        before, old_offload = cluster.replicas(), cluster.offload.copy()
        targets, offload, _ = observer.translate(cluster, actions)
        reasons = []
        if (moved := np.flatnonzero(~np.isclose(offload, old_offload))).size:
            share = degradation(observer.obs)
            for node in moved:
                was, now, name = float(old_offload[node]), float(offload[node]), cluster.node_names[node]
                text = f"offload {was:.0%}→{now:.0%} of {name}'s arrivals: its own added latency is {share[node]:.0%} of an SLO"
                reasons.append(ActionReason(self.name, "offload", "*", name, round(100 * was), round(100 * now), text))
        if targets is not None:
            for node, service in zip(*np.nonzero(targets != before), strict=True):
                b, a = int(before[node, service]), int(targets[node, service])
                load = float(observer.obs[node, service, _F["cell_load"]])
                text = f"{cluster.service_names[service]} on {cluster.node_names[node]} {b}→{a}: load {load:.2f} of warm capacity here"
                reasons.append(ActionReason(self.name, "scale_up" if a > b else "scale_down", cluster.service_names[service],
                                            cluster.node_names[node], b, a, text))  # fmt: skip
        return Decision(targets=targets, offload=offload, reasons=reasons)
