"""PettingZoo environment over the cluster simulator: one agent per worker node. Used by local_agents (MAPPO
training through the batch API ``reset_arrays`` / ``step_arrays``, and the live loop), by the evals and by
PettingZoo's own API tests; steps simulators.cluster and reads simulators.rewards.

Env card — ``ama_cluster_v2``
------------------------------
Agents        one per node of the scenario (``cloud-0``, ``edge-3`` ...); the set is fixed for an episode. Nodes that
              are off, booting or failed stay agents, with every action but "hold" masked (but "wake" for a node
              its agent put to sleep).
Observation   ``{"observation": float32 (S, F), "action_mask": S + 1 int8 arrays of 4, then one of 3}``: one row
              per service with the same F features for any cluster, so one shared policy serves any number of nodes
              and services. Row layout (``OBS_FEATURES``): this node's cell of the service (warm and booting replicas,
              backlog, load over capacity, latency over SLO, violation and drop shares, room to add), the service cluster-wide
              (replicas over max, load over capacity, SLO, cold-start time, work, cold starts now), this node
              (utilization, tier, on, slowdown, added network latency, relative price, memory used, offload level),
              and the reward weights in force (``REWARD_COMPONENTS``).
Action        ``MultiDiscrete([4] * S + [4, 3])``: per service 0 = down (stop one replica), 1 = hold, 2 = up (start
              one more), 3 = pre-warm (start the first replica of a service the node does not run yet); then the
              node's offload level, a share of its arrivals sent to the cloud tier or peers: 0, 25, 50 or 75 %; then
              its power: 0 = hold, 1 = sleep (power off, saving its idle power), 2 = wake (boot again).
              Masks: down needs a replica on the node and the service above its min; up needs a replica on the node
              and room (node resources, service max); pre-warm needs none on the node and room; offload needs the
              node on; sleep needs the node on and holding no replica; wake needs the node asleep (put to sleep by
              its agent: a node drained by an operator is not the agent's to wake). A node going to sleep starts
              nothing. A masked action is taken as hold (and counted in ``info["masked_actions"]``).
Reward        ``sum(w_k * term_k)`` over ``REWARD_COMPONENTS`` with the weights in force
              (``set_reward_weights``); every term is in [-1, 1] and is in ``info[agent]["reward_terms"]``:
              latency  -(served-weighted latency / SLO, capped at 4) / 4
              sla      -sqrt((violating + dropped) / (served + dropped) requests): the square root makes the
                       first percent of misses cost what an operator feels they cost (1% -> -0.1, 25% -> -0.5);
                       linear, a cost term of a few replicas outweighed 10% violations at the default weights
              utilization  busy share of the CPU the node's replicas reserve (0 with none)
              energy   -(power - idle power) / (peak - idle power)
              cost     -(reserved share of the node's CPU) * price / the cluster's highest price
              churn    -(replicas started or stopped) / S, capped at 1
State         ``state()``: every agent's observation flattened, then cluster aggregates (violation rate, cost rate and
              power relative to all nodes on, share of nodes on, share of nodes failed, time elapsed).
Episode       ends by truncation at the scenario's duration; there are no terminations.
"""

from __future__ import annotations

import operator
import os
from typing import Any, ClassVar

import gymnasium
import numpy as np
from pettingzoo import ParallelEnv

from simulators.cluster import NODE_FAILED, NODE_OFF, NODE_ON, NODE_STATE_NAMES, TIERS, Cluster
from simulators.rewards import REWARD_COMPONENTS, RewardWeights, combine, reward_terms
from simulators.scenarios import Scenario, compile_scenario, load_scenario

ENV_NAME = "ama_cluster_v2"
DOWN, HOLD, UP, PREWARM = 0, 1, 2, 3
SCALE_CHOICES = 4
OFFLOAD_LEVELS = np.array([0.0, 0.25, 0.5, 0.75])
assert len(OFFLOAD_LEVELS) == SCALE_CHOICES, "masks are laid out as (S + 2) rows of SCALE_CHOICES"
POWER_HOLD, SLEEP, WAKE = 0, 1, 2
POWER_CHOICES = ("hold", "sleep", "wake")
"""The node's power row: in the batch layout a row of SCALE_CHOICES whose last choice is always masked."""
OBS_FEATURES = (
    "cell_warm", "cell_booting", "cell_backlog", "cell_load", "cell_latency", "cell_violations", "cell_drops", "cell_room",
    "svc_replicas", "svc_load", "svc_slo", "svc_cold_start", "svc_work", "svc_cold_now",
    "node_util", "node_cloud", "node_on", "node_slowdown", "node_net_extra", "node_price", "node_mem", "node_offload",
    *(f"w_{name}" for name in REWARD_COMPONENTS),
)  # fmt: skip
N_FEATURES = len(OBS_FEATURES)
N_GLOBAL = 6
_F = {name: i for i, name in enumerate(OBS_FEATURES)}
_W0 = _F[f"w_{REWARD_COMPONENTS[0]}"]


def parallel_env(scenario: str | os.PathLike[str] | Scenario, **options: Any) -> ClusterEnv:
    """The PettingZoo ParallelEnv for a scenario (a file path or a compiled Scenario). Options: ``weights``
    (RewardWeights), ``seed`` (int, overrides the scenario's), ``max_ticks`` (int, shortens the episode),
    ``render_mode`` ("ansi" or None)."""
    return ClusterEnv(scenario, **options)


class ClusterEnv(ParallelEnv):
    metadata: ClassVar[dict[str, Any]] = {"name": ENV_NAME, "render_modes": ["ansi"], "is_parallelizable": True}

    def __init__(
        self,
        scenario: str | os.PathLike[str] | Scenario,
        weights: RewardWeights | None = None,
        seed: int | None = None,
        max_ticks: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.scenario = scenario if isinstance(scenario, Scenario) else load_scenario(scenario, seed=seed)
        if seed is not None and self.scenario.spec.seed != seed:
            self.scenario = compile_scenario(self.scenario.spec.model_copy(update={"seed": seed}), self.scenario.path)
        self._compiled = {self.scenario.spec.seed: self.scenario}
        self.cluster: Cluster = self.scenario.make_cluster()
        self.max_ticks = self.cluster.horizon if max_ticks is None else min(max_ticks, self.cluster.horizon)
        self.render_mode = render_mode
        self.weights = weights or RewardWeights()
        self.possible_agents = list(self.cluster.node_names)
        self.agents: list[str] = []
        n, s = self.cluster.n_nodes, self.cluster.n_services
        self.n_nodes, self.n_services = n, s
        self._obs_space = gymnasium.spaces.Dict(
            {
                "observation": gymnasium.spaces.Box(-1.0, 10.0, shape=(s, N_FEATURES), dtype=np.float32),
                "action_mask": gymnasium.spaces.Tuple(
                    [gymnasium.spaces.MultiBinary(SCALE_CHOICES)] * (s + 1) + [gymnasium.spaces.MultiBinary(len(POWER_CHOICES))]
                ),
            }
        )
        self._act_space = gymnasium.spaces.MultiDiscrete([SCALE_CHOICES] * s + [len(OFFLOAD_LEVELS), len(POWER_CHOICES)])
        self._obs_spaces = {a: self._obs_space for a in self.possible_agents}
        self._act_spaces = {a: self._act_space for a in self.possible_agents}
        self.state_space = gymnasium.spaces.Box(-1.0, 10.0, shape=(n * s * N_FEATURES + N_GLOBAL,), dtype=np.float32)
        self.observer = Observer(self.cluster)
        self._obs, self._codes, self._mask = self.observer.obs, self.observer.codes, self.observer.mask
        self._terms = np.zeros((n, len(REWARD_COMPONENTS)))
        self._masked = np.zeros(n, dtype=np.int64)
        self._hold_row = np.array([HOLD] * s + [0, POWER_HOLD], dtype=np.int64)

    # ------------------------------------------------------------------------------------------ PettingZoo API
    def observation_space(self, agent: str) -> gymnasium.spaces.Dict:
        return self._obs_spaces[agent]

    def action_space(self, agent: str) -> gymnasium.spaces.MultiDiscrete:
        return self._act_spaces[agent]

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        self.reset_arrays(seed)
        self.agents = list(self.possible_agents)
        return self._obs_dicts(), {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        hold = self._hold_row
        batch = np.concatenate([actions.get(a, hold) for a in self.agents]).astype(np.int64).reshape(len(self.agents), -1)
        _, _, rewards, terms, done = self.step_arrays(batch)
        agents = self.agents
        obs = self._obs_dicts()
        rew = dict(zip(agents, rewards.tolist(), strict=True))
        terminations = dict.fromkeys(agents, False)
        truncations = dict.fromkeys(agents, done)
        infos = {a: _info(*row, m) for a, row, m in zip(agents, terms.tolist(), self._masked.tolist(), strict=True)}
        if done:
            self.agents = []
        return obs, rew, terminations, truncations, infos

    def state(self) -> np.ndarray:
        c, o = self.cluster, self.cluster.out
        finished = o.served.sum() + o.drops.sum()
        all_power = float(c.power_peak.sum()) or 1.0
        all_cost = float(c.base_price_per_h.sum() * c.tick_s / 3600.0) or 1.0
        aggregates = np.array(
            [
                o.violations.sum() / finished if finished > 0 else 0.0,
                o.node_cost.sum() / all_cost,
                o.node_power_w.sum() / all_power,
                (c.state == NODE_ON).mean(),
                (c.state == NODE_FAILED).mean(),
                c.t / max(self.max_ticks, 1),
            ],
            dtype=np.float32,
        )
        return np.concatenate([self._obs.reshape(-1), aggregates])

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        c = self.cluster
        lines = [f"t={c.time_s:.0f}s weights: {self.weights.describe()}"]
        for i, name in enumerate(c.node_names):
            replicas = " ".join(f"{s}={int(c.warm[i, j])}+{int(c.booting[i, j])}" for j, s in enumerate(c.service_names))
            lines.append(f"{name:>12} {TIERS[c.tier[i]]:<5} {NODE_STATE_NAMES[c.state[i]]:<7} util={c.out.node_util[i]:.2f} {replicas}")
        return "\n".join(lines)

    def close(self) -> None:
        pass

    # ------------------------------------------------------------------------------------------ batch API
    def reset_arrays(self, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Reset and return (observations (N, S, F) float32, action masks (N, 4S+8) int8). Arrays are reused."""
        if seed is not None and seed != self.scenario.spec.seed:
            if seed not in self._compiled:
                self._compiled[seed] = compile_scenario(self.scenario.spec.model_copy(update={"seed": seed}), self.scenario.path)
            self.scenario = self._compiled[seed]
            self.cluster = self.scenario.make_cluster()
        else:
            self.cluster.reset()
        self._masked[:] = 0
        self._terms[:] = 0.0
        self.observer.reset(self.cluster, self.weights)
        return self._obs, self._mask

    def step_arrays(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
        """One tick for all agents. ``actions`` (N, S+2) int: a scale choice per service, an offload level, a power
        choice. Returns (observations, masks, rewards (N,), reward terms (N, components), truncated)."""
        c = self.cluster
        target, offload, power, self._masked = self.observer.translate(c, actions)
        apply_power(c, power)
        c.step(target, offload)
        self._reward_terms()
        rewards = combine(self._terms, self.weights)
        self.observer.observe(c)
        return self._obs, self._mask, rewards, self._terms, c.t >= self.max_ticks

    def set_reward_weights(self, weights: RewardWeights) -> None:
        """Replace the weights; they are in the next observation and shape the next reward."""
        if not isinstance(weights, RewardWeights):
            raise TypeError(f"expected RewardWeights, got {type(weights).__name__}")
        self.weights = weights
        self.observer.set_weights(weights)

    # ------------------------------------------------------------------------------------------ internals
    def _reward_terms(self) -> None:
        reward_terms(self.cluster, self.observer.max_price, into=self._terms)

    def _obs_dicts(self) -> dict[str, dict[str, Any]]:
        """Per-agent observations: views of one copy of this tick's observation array (the batch array is
        overwritten next tick) and the mask as a tuple with one int8 array per action dimension, as gymnasium's
        MultiDiscrete.sample(mask=...) takes. A mask row is one of 16 shared read-only arrays, one per pattern."""
        rows = operator.itemgetter(*self._codes[:, :-1].reshape(-1).tolist())(_MASK_PATTERNS)
        power = [_POWER_PATTERNS[code] for code in self._codes[:, -1].tolist()]
        masks = [(*m, p) for m, p in zip(zip(*[iter(rows)] * (self.n_services + 1), strict=True), power, strict=True)]
        return {a: {"observation": ob, "action_mask": m} for a, ob, m in zip(self.agents, list(self._obs.copy()), masks, strict=True)}


_DELTA = np.array([-1.0, 0.0, 1.0, 1.0])
"""Replica change of each scale choice (down, hold, up, pre-warm)."""

_MASK_TABLE = np.array([[(code >> k) & 1 for k in range(SCALE_CHOICES)] for code in range(1 << SCALE_CHOICES)], dtype=np.int8)
"""Row ``code``: the int8 mask of one action dimension whose allowed choices are the set bits of ``code``."""
_MASK_PATTERNS = list(_MASK_TABLE)
_POWER_PATTERNS = [row[: len(POWER_CHOICES)].copy() for row in _MASK_TABLE]
"""The power dimension's masks, 3 choices long, as its action space has them."""
for _pattern in (*_MASK_PATTERNS, *_POWER_PATTERNS):
    _pattern.flags.writeable = False


def apply_power(cluster: Cluster, power: np.ndarray | None) -> None:
    """Node agents' power choices (N,) (``POWER_CHOICES``, already masked): put nodes to sleep, wake others.
    Before ``Cluster.step``; the env and every runner of a Decision call it."""
    if power is None:
        return
    if (power == SLEEP).any():
        cluster.sleep(power == SLEEP)
    if (power == WAKE).any():
        cluster.power_on(power == WAKE)


class Observer:
    """Every node's observation rows and action masks for one cluster, in place. Used by ClusterEnv (each step) and
    by the MARL controller (local_agents.marl), which acts on a live cluster outside any env: one piece of code for
    what a node agent sees and may do."""

    def __init__(self, cluster: Cluster) -> None:
        n, s = cluster.n_nodes, cluster.n_services
        self.n_nodes, self.n_services = n, s
        self.obs = np.zeros((n, s, N_FEATURES), dtype=np.float32)
        self.codes = np.zeros((n, s + 2), dtype=np.int64)
        """Action masks as bit patterns: bit k of row d is set when choice k of action dimension d is allowed."""
        self.mask = np.zeros((n, SCALE_CHOICES * (s + 2)), dtype=np.int8)
        self.max_price = max(float(cluster.base_price_per_h.max()), 1e-9)

    def reset(self, cluster: Cluster, weights: RewardWeights) -> None:
        """Fill the features that do not change during a run, the weights, and observe the cluster's current state."""
        services = cluster.config.services
        self.obs[:, :, 10] = np.log10(cluster.slo_ms) / 4.0
        self.obs[:, :, 11] = np.minimum(np.array([sv.cold_start_s for sv in services]) / 60.0, 10.0)
        self.obs[:, :, 12] = np.log10(cluster.work_ms) / 4.0
        self.obs[:, :, 15] = (cluster.tier == 1)[:, None]
        self.set_weights(weights)
        self.observe(cluster)

    def set_weights(self, weights: RewardWeights) -> None:
        self.obs[:, :, _W0:] = np.minimum(weights.as_array(), 10.0)

    def observe(self, c: Cluster) -> None:
        """This tick's observations and masks (after ``c.step``)."""
        o, obs = c.out, self.obs
        warm, booting = c.warm, c.booting
        capacity = c.capacity_rps() * c.tick_s
        inv_cap = 1.0 / np.maximum(capacity, 1e-9)
        finished = o.served + o.drops
        inv_finished = 1.0 / np.maximum(finished, 1e-9)
        room = c.room()
        replicas = warm + booting
        svc_replicas = c.per_service(replicas)
        svc_load = c.per_service(o.arrivals) / np.maximum(c.per_service(capacity), 1e-9)

        obs[:, :, 0] = np.minimum(warm / 8.0, 10.0)
        obs[:, :, 1] = np.minimum(booting / 8.0, 10.0)
        obs[:, :, 2] = np.minimum(c.queue * inv_cap, 10.0)
        obs[:, :, 3] = np.minimum(o.arrivals * inv_cap, 10.0)
        obs[:, :, 4] = np.minimum(o.latency_ms / c.slo_ms, 40.0) / 4.0
        obs[:, :, 5] = o.violations * inv_finished
        obs[:, :, 6] = o.drops * inv_finished
        obs[:, :, 7] = np.minimum(room / 8.0, 10.0)
        obs[:, :, 8] = svc_replicas / c.max_replicas
        obs[:, :, 9] = np.minimum(svc_load, 10.0)
        obs[:, :, 13] = o.cold_starts > 0
        on = c.state == NODE_ON
        obs[:, :, 14] = o.node_util[:, None]
        obs[:, :, 16] = on[:, None]
        obs[:, :, 17] = np.minimum(c.slowdown - 1.0, 10.0)[:, None]
        obs[:, :, 18] = np.minimum(c.net_extra_ms / 100.0, 10.0)[:, None]
        obs[:, :, 19] = np.minimum(c.base_price_per_h * c.price_factor / self.max_price, 10.0)[:, None]
        obs[:, :, 20] = ((replicas @ c.svc_mem_mb) / c.mem_mb_cap)[:, None]
        obs[:, :, 21] = c.offload[:, None]

        # masks: [down, hold, up, prewarm] per service, then offload levels, then power [hold, sleep, wake]
        has = replicas > 0
        can_add = (room > 0) & (svc_replicas < c.max_replicas)
        codes = self.codes
        codes[:, :-2] = (
            (1 << HOLD) + ((has & (svc_replicas > c.min_replicas)) << DOWN) + ((has & can_add) << UP) + ((~has & can_add) << PREWARM)
        )
        codes[:, -2] = 1 + on * 0b1110
        codes[:, -1] = (1 << POWER_HOLD) + ((on & ~has.any(axis=1)) << SLEEP) + ((c.asleep & (c.state == NODE_OFF)) << WAKE)
        self.mask[:] = _MASK_TABLE[codes].reshape(self.n_nodes, -1)

    def translate(self, c: Cluster, actions: np.ndarray) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None, np.ndarray]:
        """Actions (N, S+2) under the current masks -> (replica targets or None when nothing changes, offload shares,
        power choices or None when no node sleeps or wakes, masked actions per node). A masked action is taken as
        hold (offload: 0); a node going to sleep starts no replica."""
        s = self.n_services
        scale = actions[:, :s]
        allowed = ((self.codes[:, :s] >> scale) & 1).astype(bool)
        offload_idx = actions[:, s]
        offload_ok = ((self.codes[:, s] >> offload_idx) & 1).astype(bool)
        power = actions[:, s + 1]
        power_ok = ((self.codes[:, s + 1] >> power) & 1).astype(bool)
        masked = s - allowed @ np.ones(s, dtype=np.int64) + ~offload_ok + ~power_ok
        power = np.where(power_ok, power, POWER_HOLD)
        delta = np.where(allowed & (power != SLEEP)[:, None], _DELTA[scale], 0.0)
        target = c.replicas() + delta if delta.any() else None
        offload = np.where(offload_ok, OFFLOAD_LEVELS[offload_idx], 0.0)
        return target, offload, power if power.any() else None, masked


def _info(latency: float, sla: float, utilization: float, energy: float, cost: float, churn: float, masked: int) -> dict[str, Any]:
    """One agent's info: its named reward terms and how many of its actions were masked (taken as hold)."""
    terms = {"latency": latency, "sla": sla, "utilization": utilization, "energy": energy, "cost": cost, "churn": churn}
    return {"reward_terms": terms, "masked_actions": masked}


assert _info.__code__.co_varnames[: len(REWARD_COMPONENTS)] == REWARD_COMPONENTS
