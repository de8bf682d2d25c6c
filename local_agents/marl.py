"""The MARL controller: the trained node-agent policy acting on a live cluster, one batched decision for every node
per tick. Built by local_agents.registry (``--controller marl``) for ``ama run``, ``ama eval``, ``ama sim`` and
``ama demo``, and by the trainer's evaluations; feeds ``Cluster.step`` and the decision log (an explained reason for
every replica started or stopped and every offload change).

It observes the cluster exactly as the training env does (``simulators.env.Observer``), acts with the numpy policy
(local_agents.act), and honours the manager: ``set_weights`` puts the new reward weights into the next
observation, which is how a rewrite changes the agents' behaviour without retraining.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from local_agents.act import Policy, load_policy
from local_agents.controllers import ActionReason, Decision
from simulators.cluster import Cluster
from simulators.env import DOWN, HOLD, OFFLOAD_LEVELS, PREWARM, UP, Observer
from simulators.rewards import RewardWeights

VERBS = {DOWN: "scale_down", UP: "scale_up", PREWARM: "pre-warm"}


class MarlController:
    name = "marl"

    def __init__(
        self, policy: Policy | str | Path | None = None, seed: int = 0, weights: RewardWeights | None = None, explain: bool = True
    ) -> None:
        self.policy = policy if isinstance(policy, Policy) else load_policy(policy)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.weights = weights or RewardWeights()
        self.explain = explain
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

    def act(self, cluster: Cluster) -> Decision:
        if self.observer is None:
            self.reset(cluster)
        observer = self.observer
        assert observer is not None
        observer.observe(cluster)
        actions = self.policy.act(observer.obs, observer.mask, self.rng)
        before = cluster.replicas()
        old_offload = cluster.offload.copy()
        targets, offload, _ = observer.translate(cluster, actions)
        reasons = self._reasons(cluster, actions, before, targets, old_offload, offload) if self.explain else []
        return Decision(targets=targets, offload=offload, reasons=reasons)

    def _reasons(
        self, c: Cluster, actions: np.ndarray, before: np.ndarray, targets: np.ndarray | None, old: np.ndarray, offload: np.ndarray
    ) -> list[ActionReason]:
        assert self.observer is not None
        obs, s = self.observer.obs, c.n_services
        reasons = []
        weights = self.weights.describe(top=2)
        if targets is not None:
            for node, service in zip(*np.nonzero(targets != before), strict=True):
                choice = int(actions[node, service])
                why = self.policy.explain(obs[node], int(service), choice, HOLD)
                b, a = int(before[node, service]), int(targets[node, service])
                text = f"{VERBS[choice]} {c.service_names[service]} on {c.node_names[node]} {b}→{a}: {why}; weights {weights}"
                action = "scale_up" if a > b else "scale_down"
                reasons.append(ActionReason("marl", action, c.service_names[service], c.node_names[node], b, a, text))
        for node in np.nonzero(~np.isclose(offload, old))[0]:
            level = int(actions[node, s])
            current = int(np.abs(OFFLOAD_LEVELS - old[node]).argmin())
            why = self.policy.explain(obs[node], s, level, current)
            text = f"offload {old[node]:.0%}→{offload[node]:.0%} of {c.node_names[node]}'s arrivals: {why}; weights {weights}"
            before_pct, after_pct = round(100 * float(old[node])), round(100 * float(offload[node]))
            reasons.append(ActionReason("marl", "offload", "*", c.node_names[node], before_pct, after_pct, text))
        return reasons
