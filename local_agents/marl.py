"""The MARL controller: the trained node-agent policy acting on a live cluster, one batched decision for every node
per tick. Built by local_agents.registry (``--controller marl``) for ``ama run``, ``ama eval``, ``ama sim`` and
``ama demo``, and by the trainer's evaluations; feeds ``Cluster.step`` and the decision log (an explained reason for
every replica started or stopped, every offload change and every node put to sleep or woken).

It observes the cluster exactly as the training env does (``simulators.env.Observer``), acts with the numpy policy
(local_agents.act), and honours the manager: ``set_weights`` puts the new reward weights into the next
observation, which is how a rewrite changes the agents' behaviour without retraining.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from local_agents.act import Policy, load_policy, single_threaded_blas
from local_agents.controllers import ActionReason, Decision, NodeAgentController
from simulators.cluster import Cluster
from simulators.env import DOWN, HOLD, OFFLOAD_LEVELS, POWER_CHOICES, POWER_HOLD, PREWARM, UP
from simulators.rewards import RewardWeights

VERBS = {DOWN: "scale_down", UP: "scale_up", PREWARM: "pre-warm"}


class MarlController(NodeAgentController):
    name = "marl"

    def __init__(
        self, policy: Policy | str | Path | None = None, seed: int = 0, weights: RewardWeights | None = None, explain: bool = True
    ) -> None:
        super().__init__(seed, weights)
        self.policy = policy if isinstance(policy, Policy) else load_policy(policy)
        self.explain = explain
        single_threaded_blas()

    def act(self, cluster: Cluster) -> Decision:
        observer = self.observe(cluster)
        actions = self.policy.act(observer.obs, observer.mask, self.rng)
        before = cluster.replicas()
        old_offload = cluster.offload.copy()
        targets, offload, power, _ = observer.translate(cluster, actions)
        reasons = self._reasons(cluster, actions, before, targets, old_offload, offload, power) if self.explain else []
        return Decision(targets=targets, offload=offload, reasons=reasons, power=power)

    def _reasons(
        self,
        c: Cluster,
        actions: np.ndarray,
        before: np.ndarray,
        targets: np.ndarray | None,
        old: np.ndarray,
        offload: np.ndarray,
        power: np.ndarray | None,
    ) -> list[ActionReason]:
        """One explained reason per replica started or stopped, per offload change and per node put to sleep or
        woken, explained in one batch."""
        assert self.observer is not None
        obs, s = self.observer.obs, c.n_services
        cells = list(zip(*np.nonzero(targets != before), strict=True)) if targets is not None else []
        moved = np.flatnonzero(~np.isclose(offload, old))
        switched = np.flatnonzero(power != POWER_HOLD) if power is not None else np.zeros(0, np.int64)
        nodes = np.array([n for n, _ in cells] + list(moved) + list(switched), dtype=np.int64)
        if nodes.size == 0:
            return []
        dims = np.array([j for _, j in cells] + [s] * len(moved) + [s + 1] * len(switched), dtype=np.int64)
        choices = actions[nodes, dims]
        current = np.abs(OFFLOAD_LEVELS[None, :] - old[moved, None]).argmin(axis=1)
        against = np.array([HOLD] * len(cells) + list(current) + [POWER_HOLD] * len(switched), dtype=np.int64)
        texts = self.policy.explain(obs[nodes], dims, choices, against)
        weights = self.weights.describe(top=2)
        reasons = []
        for (node, service), why in zip(cells, texts, strict=False):
            b, a = int(before[node, service]), int(targets[node, service])  # type: ignore[index]
            verb = VERBS[int(actions[node, service])]
            text = f"{verb} {c.service_names[service]} on {c.node_names[node]} {b}→{a}: {why}; weights {weights}"
            reasons.append(
                ActionReason("marl", "scale_up" if a > b else "scale_down", c.service_names[service], c.node_names[node], b, a, text)
            )
        for node, why in zip(moved, texts[len(cells) : len(cells) + len(moved)], strict=True):
            text = f"offload {old[node]:.0%}→{offload[node]:.0%} of {c.node_names[node]}'s arrivals: {why}; weights {weights}"
            reasons.append(
                ActionReason(
                    "marl", "offload", "*", c.node_names[node], round(100 * float(old[node])), round(100 * float(offload[node])), text
                )
            )
        for node, why in zip(switched, texts[len(cells) + len(moved) :], strict=True):
            verb = POWER_CHOICES[int(power[node])]  # type: ignore[index]
            state = "it holds no replica" if verb == "sleep" else "it was asleep"
            text = f"{c.node_names[node]} {verb}s ({state}): {why}; weights {weights}"
            on_before = int(verb == "sleep")
            reasons.append(ActionReason("marl", verb, "*", c.node_names[node], on_before, 1 - on_before, text))
        return reasons
