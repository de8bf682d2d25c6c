"""The MARL controller: the trained node-agent policy acting on a live cluster, one batched decision for every node
per tick. Built by local_agents.registry (``--controller marl``, ``marl-noshield``, ``marl-noood``) for ``ama run``,
``ama eval``, ``ama sim`` and ``ama demo``, and by the trainer's evaluations; feeds ``Cluster.step`` and the decision
log (an explained reason for every replica started or stopped, every offload change, every node put to sleep or
woken, every move the shield overrode and every node that fell back to the node rule).

Each tick: observe the cluster exactly as the training env does (``simulators.env.Observer``); act with the numpy
policy (local_agents.act), which samples its scale and offload choices as it did in training (a fraction of a replica
per tick is a probability of "up"; the explanation says the move was sampled and how likely it was), reading what a
node is (SLO, work, price, replica counts) clamped into what training saw; nodes whose state (backlog, load,
latency, slowdown, weights ...) is outside what training saw (local_agents.envelope) take the node rule's actions instead
(local_agents.node_rule); then the safety shield (local_agents.shield) keeps starting replicas, needed capacity and
recent moves from being undone. ``set_weights`` puts the manager's new reward weights into the next observation,
which is how a rewrite changes the agents' behaviour without retraining. Explanations are in operator units
(replicas, req/s, ms, % of SLO, $/h).

``stats`` holds the run's counters for the evals: moves shielded by rule, moves issued and undone within 10 s,
node-ticks out of distribution.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from local_agents.act import DEFAULT_POLICY, Policy, Units, feature_text, feature_value, load_policy, single_threaded_blas
from local_agents.controllers import ActionReason, Decision, NodeAgentController
from local_agents.envelope import Envelope, OutOfDistribution, envelope_path, load_envelope
from local_agents.explain import cell_state
from local_agents.node_rule import NodeRuleSettings, node_rule_actions
from local_agents.shield import MoveCounts, Shield, ShieldSettings
from simulators.cluster import Cluster
from simulators.env import DOWN, HOLD, OBS_FEATURES, OFFLOAD_LEVELS, POWER_CHOICES, POWER_HOLD, PREWARM, UP
from simulators.rewards import RewardWeights

CHOICE_NAMES = {DOWN: "down", HOLD: "hold", UP: "up", PREWARM: "pre-warm"}


@dataclass
class MarlStats:
    """One run's counters (reset with the controller): the shield's (moves overridden by rule, moves issued, moves
    undone within its undo window; counted with the shield off too) and the guard's (node-ticks out of
    distribution, each decided by the node rule)."""

    moves: MoveCounts
    ood_node_ticks: int = 0
    node_ticks: int = 0

    def as_dict(self) -> dict[str, float | int]:
        shielded = {f"shielded_{rule}": n for rule, n in self.moves.shielded.items()}
        return {**shielded, "moves": self.moves.moves, "undone_10s": self.moves.undone, "undone_share": round(self.moves.undone_share, 4),
                "ood_node_ticks": self.ood_node_ticks, "node_ticks": self.node_ticks}  # fmt: skip


class MarlController(NodeAgentController):
    name = "marl"

    def __init__(
        self,
        policy: Policy | str | Path | None = None,
        seed: int = 0,
        weights: RewardWeights | None = None,
        explain: bool = True,
        shield: bool = True,
        ood: bool = True,
        envelope: Envelope | Path | None = None,
        shield_settings: ShieldSettings | None = None,
    ) -> None:
        """``ood``: with no ``envelope`` given, the one next to the policy file (local_agents.envelope.envelope_path) is
        loaded; a policy without one (a fresh training run) acts unguarded. ``shield`` off still counts moves."""
        super().__init__(seed, weights)
        self.policy = policy if isinstance(policy, Policy) else load_policy(policy)
        self.explain = explain
        self.shield = Shield(shield_settings, enabled=shield)
        self.envelope: Envelope | None = None
        if ood and isinstance(envelope, Envelope):
            self.envelope = envelope
        elif ood:
            path = envelope or envelope_path(self.policy.path or DEFAULT_POLICY)
            if envelope is not None or path.exists():
                self.envelope = load_envelope(path, self.policy)
        self.rule = NodeRuleSettings()
        self.stats = MarlStats(self.shield.counts)
        self._was_ood = np.zeros(0, dtype=bool)
        self._ood_since = np.zeros(0)
        single_threaded_blas()

    def reset(self, cluster: Cluster) -> None:
        super().reset(cluster)
        self.shield.reset(cluster)
        self.stats = MarlStats(self.shield.counts)
        self._was_ood = np.zeros(cluster.n_nodes, dtype=bool)
        self._ood_since = np.zeros(cluster.n_nodes)

    def act(self, cluster: Cluster) -> Decision:
        observer = self.observe(cluster)  # resets this controller on its first tick
        seen = self.envelope.clamp(observer.obs) if self.envelope is not None else observer.obs
        self._seen = seen  # what the policy read this tick: its explanations and odds are of this, not the raw rows
        actions = self.policy.act(seen, observer.mask, self.rng)
        ood = self.envelope.check(observer.obs) if self.envelope is not None else None
        if ood is not None and ood.nodes.size:
            actions[ood.nodes] = node_rule_actions(observer.obs[ood.nodes], observer.codes[ood.nodes], self.rng, self.rule)
        self.stats.node_ticks += cluster.n_nodes
        self.stats.ood_node_ticks += 0 if ood is None else int(ood.nodes.size)
        before = cluster.replicas()
        old_offload = cluster.offload.copy()
        proposed, offload, power, _ = observer.translate(cluster, actions)
        targets, cuts = self.shield.filter(cluster, proposed)
        reasons = []
        if self.explain:
            reasons = self._reasons(cluster, actions, before, targets, old_offload, offload, power, ood)
            reasons += [ActionReason("marl", "shield", cluster.service_names[c.service], cluster.node_names[c.node], c.kept, c.kept,
                                     self.shield.text(cluster, c)) for c in cuts]  # fmt: skip
            reasons += self._ood_notes(cluster, ood)
        return Decision(targets=targets, offload=offload, reasons=reasons, power=power)

    # ------------------------------------------------------------------------------------------ explanations
    def _units(self, c: Cluster) -> Units:
        return Units(tick_s=c.tick_s, max_price_per_h=float(c.base_price_per_h.max()))

    def _why_ood(self, c: Cluster, ood: OutOfDistribution, k: int) -> str:
        """Why node ``ood.nodes[k]`` is out of distribution, in operator units."""
        assert self.envelope is not None
        f, units = int(ood.features[k]), self._units(c)
        name = OBS_FEATURES[f]
        seen = f"{feature_value(name, float(self.envelope.low[f]), units)} to {feature_value(name, float(self.envelope.high[f]), units)}"
        where = f"{c.service_names[int(ood.services[k])]}: " if not name.startswith(("node_", "w_")) else ""
        return f"{where}{feature_text(name, float(ood.values[k]), units)}, where training saw {seen}"

    def _ood_notes(self, c: Cluster, ood: OutOfDistribution | None) -> list[ActionReason]:
        """One reason when a node leaves the envelope (its node rule decides until it is back) and one when it is back."""
        now = np.zeros(c.n_nodes, dtype=bool)
        if ood is not None:
            now[ood.nodes] = True
        notes = []
        for k, node in enumerate(ood.nodes if ood is not None else []):
            if not self._was_ood[node]:
                self._ood_since[node] = c.time_s
                text = f"{c.node_names[node]} is outside what training saw ({self._why_ood(c, ood, k)}): the node rule decides for it"  # type: ignore[arg-type]
                notes.append(ActionReason("marl", "fallback", "*", c.node_names[node], 0, 1, text))
        for node in np.flatnonzero(self._was_ood & ~now):
            outside = c.time_s - self._ood_since[node]
            text = f"{c.node_names[node]} is back within what training saw after {outside:.0f} s outside it: the policy decides again"
            notes.append(ActionReason("marl", "fallback", "*", c.node_names[node], 1, 0, text))
        self._was_ood = now
        return notes

    def _reasons(
        self,
        c: Cluster,
        actions: np.ndarray,
        before: np.ndarray,
        targets: np.ndarray | None,
        old: np.ndarray,
        offload: np.ndarray,
        power: np.ndarray | None,
        ood: OutOfDistribution | None,
    ) -> list[ActionReason]:
        """One explained reason per replica started or stopped, per offload change and per node put to sleep or
        woken. The policy's own moves: how likely the move was (sampled, or for power its most likely choice) and the
        features that drove it, explained in one batch; the node rule's moves on nodes out of distribution: why the
        node is out."""
        assert self.observer is not None
        obs, mask, s = self._seen, self.observer.mask, c.n_services
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
        by_rule = {int(n): k for k, n in enumerate(ood.nodes)} if ood is not None else {}
        texts = self._policy_texts(c, obs[nodes], mask[nodes], dims, choices, against, np.isin(nodes, list(by_rule)))
        for k, node in enumerate(nodes):
            if int(node) in by_rule:
                texts[k] = f"the node rule's move: the node is outside what training saw ({self._why_ood(c, ood, by_rule[int(node)])})"  # type: ignore[arg-type]
        weights = self.weights.describe(top=2)
        reasons = []
        for (node, service), why in zip(cells, texts, strict=False):
            b, a = int(before[node, service]), int(targets[node, service])  # type: ignore[index]
            verb = "scale_up" if a > b else "scale_down"
            state = cell_state(c, int(node), int(service))
            text = f"{verb} {c.service_names[service]} on {c.node_names[node]}: {b}→{a} replicas; {state}; {why}; weights {weights}"
            reasons.append(ActionReason("marl", verb, c.service_names[service], c.node_names[node], b, a, text))
        for node, why in zip(moved, texts[len(cells) : len(cells) + len(moved)], strict=True):
            arrivals = float(c.out.arrivals[node].sum()) / c.tick_s
            text = f"offload {old[node]:.0%}→{offload[node]:.0%} of {c.node_names[node]}'s {arrivals:.0f} req/s: {why}; weights {weights}"
            reasons.append(
                ActionReason(
                    "marl", "offload", "*", c.node_names[node], round(100 * float(old[node])), round(100 * float(offload[node])), text
                )
            )
        for node, why in zip(switched, texts[len(cells) + len(moved) :], strict=True):
            verb = POWER_CHOICES[int(power[node])]  # type: ignore[index]
            state = "it holds 0 replicas" if verb == "sleep" else "it was asleep"
            price = float(c.base_price_per_h[node] * c.price_factor[node])
            text = f"{c.node_names[node]} {verb}s ({state}; ${price:.2f}/h): {why}; weights {weights}"
            on_before = int(verb == "sleep")
            reasons.append(ActionReason("marl", verb, "*", c.node_names[node], on_before, 1 - on_before, text))
        return reasons

    def _policy_texts(
        self,
        c: Cluster,
        node_obs: np.ndarray,
        node_mask: np.ndarray,
        dims: np.ndarray,
        choices: np.ndarray,
        against: np.ndarray,
        skip: np.ndarray,
    ) -> list[str]:
        """The policy's explanation of each acting cell not in ``skip`` ("" there): how likely its choice was, then
        its drivers."""
        texts = [""] * len(dims)
        keep = np.flatnonzero(~skip)
        if keep.size == 0:
            return texts
        drivers = self.policy.explain(node_obs[keep], dims[keep], choices[keep], against[keep], self._units(c))
        chance = self.policy.probabilities(node_obs[keep], node_mask[keep], dims[keep], choices[keep])
        power_dim = c.n_services + 1
        for k, why, p in zip(keep, drivers, chance, strict=True):
            odds = f"{p:.0%}" if p >= 0.01 else f"{p:.2%}"
            if dims[k] == power_dim:
                how = f"the policy's most likely choice ({odds})"
            elif dims[k] == c.n_services:
                how = f"sampled by the policy: it gave offload {OFFLOAD_LEVELS[choices[k]]:.0%} a {odds} chance"
            else:
                how = f"sampled by the policy: it gave {CHOICE_NAMES[int(choices[k])]} a {odds} chance"
            texts[k] = f"{how}; {why}"
        return texts
