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

Power: at the default weights every node stays on (spare nodes are capacity ready for the next spike). Once the
energy weight's share is at least ``sleep_pressure`` times its default (against sla and latency), a node that holds
no replica goes to sleep (off, saving its idle power) while no service is over its target utilization; a sleeping
node wakes when a service's load is over the target by the pre-warm margin (the replicas that are on cannot absorb
it), whatever the weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from local_agents.controllers import ActionReason, Decision, NodeAgentController, energy_pressure, service_pressure
from simulators.cluster import Cluster
from simulators.env import DOWN, HOLD, OBS_FEATURES, POWER_HOLD, PREWARM, SLEEP, UP, WAKE
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
    sleep_pressure: float = 2.0
    """Energy pressure (controllers.energy_pressure: 1 at the default weights) from which empty nodes sleep."""
    prewarm_margin: float = 0.15
    """Load over the target utilization at which a node pre-warms a service it lacks, or a sleeping node wakes."""


def degradation(obs: np.ndarray) -> np.ndarray:
    """Observations (N, S, F) -> each node's own degradation (N,): the latency its slowness adds to a request (added
    network latency, plus the extra work time of a slowed CPU) as a share of a service's SLO, the worst service's
    (the features' scales are simulators.env.Observer's)."""
    added_ms = obs[..., _F["node_net_extra"]] * 100.0 + obs[..., _F["node_slowdown"]] * 10.0 ** (obs[..., _F["svc_work"]] * 4.0)
    return (added_ms / 10.0 ** (obs[..., _F["svc_slo"]] * 4.0)).max(axis=1)


def observed_weights(obs: np.ndarray) -> RewardWeights:
    """The reward weights in force, as every observation row carries them."""
    return RewardWeights.from_array(obs[0, 0, _W0:].astype(np.float64))


def target_utilization(weights: RewardWeights, settings: NodeRuleSettings) -> float:
    return float(np.clip(settings.target_utilization / np.sqrt(service_pressure(weights)), 0.3, 0.95))


def node_rule_actions(obs: np.ndarray, codes: np.ndarray, rng: np.random.Generator, settings: NodeRuleSettings) -> np.ndarray:
    """Observations (N, S, F) and mask codes (N, S+2) -> actions (N, S+2); never a masked choice."""
    weights = observed_weights(obs)
    target = target_utilization(weights, settings)
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
    prewarm = (have == 0) & (offload == 0)[:, None] & (svc_load > target + settings.prewarm_margin)
    prewarm &= rng.random(have.shape) < settings.prewarm_share
    scale = np.where(up, UP, np.where(down, DOWN, np.where(prewarm, PREWARM, HOLD)))
    allowed = ((codes[:, :-2] >> scale) & 1).astype(bool)
    busiest = svc_load.max(axis=1)
    sleepy = energy_pressure(weights) >= settings.sleep_pressure - 1e-9  # doubling the weight gives 1.9999999999999998
    power = np.where((busiest < target) & sleepy, SLEEP, POWER_HOLD)
    power = np.where(busiest > target + settings.prewarm_margin, WAKE, power)
    actions = np.zeros((obs.shape[0], obs.shape[1] + 2), np.int64)
    actions[:, :-2] = np.where(allowed, scale, HOLD)
    actions[:, -2] = np.where((codes[:, -2] >> offload) & 1, offload, 0)
    actions[:, -1] = np.where((codes[:, -1] >> power) & 1, power, POWER_HOLD)
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
        targets, offload, power, _ = observer.translate(cluster, actions)
        reasons = power_reasons(self.name, cluster, observer.obs, power, self.settings)
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
        return Decision(targets=targets, offload=offload, reasons=reasons, power=power)


def power_reasons(
    actor: str, cluster: Cluster, obs: np.ndarray, power: np.ndarray | None, settings: NodeRuleSettings
) -> list[ActionReason]:
    """One reason per node put to sleep or woken, in the rule's terms: the busiest service's load against the
    thresholds the weights set (the MARL controller adds the features that drove its policy)."""
    if power is None:
        return []
    weights = observed_weights(obs)
    busiest = obs[..., _F["svc_load"]].max(axis=1)
    found = []
    for node in np.flatnonzero(power != POWER_HOLD):
        name, load = cluster.node_names[node], float(busiest[node])
        if power[node] == SLEEP:
            text = (f"{name} sleeps: it holds no replica, the busiest service uses {load:.0%} of its capacity, and the "
                    f"energy weight is {weights.energy:.2f} ({energy_pressure(weights):.1f}x its default share)")  # fmt: skip
            found.append(ActionReason(actor, "sleep", "*", name, 1, 0, text))
        else:
            over = target_utilization(weights, settings) + settings.prewarm_margin
            text = f"{name} wakes: a service's load is {load:.0%} of the capacity that is on (over {over:.0%})"
            found.append(ActionReason(actor, "wake", "*", name, 0, 1, text))
    return found
