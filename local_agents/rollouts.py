"""Training rollouts, in this process, in worker processes, or as Ray actors. Called by local_agents.mappo.Trainer
(``TrainSettings.workers`` and ``ray_address``; ``ama train --workers N --ray ADDRESS``); feeds it raw rollout
batches, from which it computes rewards, advantages and the updates.

A ``Slot`` is one env of a rollout: its episode's weights and seed, and the teacher or shield that acts with it.
A ``RolloutWorker`` owns some of the training envs (its share of ``TrainSettings.envs``), a copy of the actor, its own
random stream and its own stream of training seeds (worker k of W uses seeds TRAIN_SEED_BASE + k, + k + W, ...: no two
workers ever run the same episode). Each ``collect`` receives
the actor's current weights, steps every env ``rollout_ticks`` ticks, and returns per env what the learner needs:
observations, the centralized state's aggregates, masks, actions and their log-probabilities, each agent's reward
terms, the cluster's terms and the episode's weights, per tick. The learner combines them into rewards
(``mixed_rewards``; the workers use it too, for the episode returns in the curves), so that per-component reward
normalization sees every worker's terms.

- ``LocalRollouts``: one worker, in this process (the default; what the tests use).
- ``ProcessRollouts``: one worker per process (``spawn``, so torch starts clean), over pipes.
- ``RayRollouts``: one Ray actor per worker on an existing cluster (``ray.init(address=...)``); the scenario files
  must be readable at the same paths on the Ray nodes.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from local_agents.node_rule import NodeRuleSettings, node_rule_actions
from local_agents.shield import Shield
from simulators.env import DOWN, HOLD, N_FEATURES, N_GLOBAL, PREWARM, SCALE_CHOICES, UP, ClusterEnv
from simulators.errors import ConfigError
from simulators.rewards import REWARD_COMPONENTS, RewardWeights, cluster_terms, sample_weights
from simulators.scenarios import Scenario, load_scenario

Batch = dict[str, Any]
"""One env's rollout: numpy arrays obs (T+1, N, S, F), aggregates (T+1, G), masks, actions, logps, own_terms
(T, N, C), team_terms (T, C), weights (T, C), ends (T,), and bootstrap_at {t: (obs, aggregates)}."""


@dataclass
class WorkerState:
    """What a worker must keep across a checkpoint: its random stream and its next training seed."""

    rng: dict[str, Any] | None = None
    next_seed: int | None = None


def mixed_rewards(own: np.ndarray, team: np.ndarray, weights: np.ndarray, team_share: float) -> np.ndarray:
    """Each agent's training reward, (T, N): its own terms (T, N, C) and the cluster's (T, C) under the tick's
    weights (T, C), the cluster's counting ``team_share`` (TrainSettings.team_share)."""
    return (1.0 - team_share) * np.einsum("tnc,tc->tn", own, weights) + team_share * np.einsum("tc,tc->t", team, weights)[:, None]


class Slot:
    """One environment of the rollout: its env, the weights of its episode, and its place in the curriculum."""

    def __init__(self, env: ClusterEnv, weights: RewardWeights, seed: int, teacher: str = "", shield: Shield | None = None) -> None:
        self.env, self.weights, self.seed = env, weights, seed
        self.shield = shield
        """The deployed controller's safety shield, when training behind it (TrainSettings.shield)."""
        self.obs, self.mask = env.reset_arrays(seed)
        self.episode_return = 0.0
        self.episode_ticks = 0
        self.teacher: Any = None
        self.rng = np.random.default_rng(seed)
        if teacher == "node-rule":
            self.teacher = NodeRuleSettings()
        elif teacher:
            from local_agents.registry import make_controller

            self.teacher = make_controller(teacher, seed=seed)
            self.teacher.reset(env.cluster)
            if hasattr(self.teacher, "set_weights"):
                self.teacher.set_weights(weights)

    def teacher_actions(self) -> np.ndarray:
        """The teacher's decision this tick as node actions: one replica up (or a pre-warm), down or hold per cell
        toward its targets, never a masked choice, no offload, no power change."""
        env = self.env
        if isinstance(self.teacher, NodeRuleSettings):  # a function of the observation: clonable exactly
            return node_rule_actions(self.obs, env.observer.codes, self.rng, self.teacher)
        cluster = env.cluster
        decision = self.teacher.act(cluster)
        current = cluster.replicas()
        diff = (decision.targets - current) if decision.targets is not None else np.zeros_like(current)
        scale = np.where(diff > 0, np.where(current > 0, UP, PREWARM), np.where(diff < 0, DOWN, HOLD))
        allowed = ((env.observer.codes[:, :-2] >> scale) & 1).astype(bool)
        actions = np.zeros((env.n_nodes, env.n_services + 2), np.int64)
        actions[:, :-2] = np.where(allowed, scale, HOLD)
        return actions


@dataclass
class RolloutWorker:
    settings: dict[str, Any]
    """TrainSettings.as_dict() (plain data: it crosses process and machine boundaries)."""
    scenarios: list[tuple[Path, int]]
    """The curriculum (mappo.training_scenarios), found once by the trainer."""
    index: int = 0
    count: int = 1
    state: WorkerState = field(default_factory=WorkerState)

    def __post_init__(self) -> None:
        from local_agents.mappo import TRAIN_SEED_BASE, Actor, TrainSettings

        self.train = TrainSettings.from_dict(self.settings)
        s = self.train
        self.envs = s.envs // self.count + (1 if self.index < s.envs % self.count else 0)
        if self.envs < 1:
            raise ConfigError(f"{self.count} rollout workers for {s.envs} envs: each worker needs at least one env")
        self.rng = np.random.default_rng(s.seed if self.index == 0 else [s.seed, self.index])
        if self.state.rng is not None:
            self.rng.bit_generator.state = self.state.rng
        self.next_seed = self.state.next_seed if self.state.next_seed is not None else TRAIN_SEED_BASE + self.index
        self.actor = Actor(s.hidden)
        self.compiled: dict[Path, Scenario] = {}
        self.slots: list[Slot] = []
        self.torch_generator = torch.Generator().manual_seed(int(self.rng.integers(2**31)))

    def _pick_scenario(self, agent_steps: int) -> Path:
        progress = agent_steps / max(self.train.total_agent_steps, 1)
        pool = [p for p, n in self.scenarios if n <= 10] if progress < self.train.small_first else []
        pool = pool or [p for p, _ in self.scenarios]
        return pool[int(self.rng.integers(len(pool)))]

    def _new_slot(self, agent_steps: int, imitating: bool) -> Slot:
        path = self._pick_scenario(agent_steps)
        if path not in self.compiled:
            self.compiled[path] = load_scenario(path)
        env = ClusterEnv(self.compiled[path])
        weights = sample_weights(self.rng, concentration=self.train.weight_concentration)
        env.set_reward_weights(weights)
        seed = self.next_seed
        self.next_seed += self.count
        return Slot(env, weights, seed, self.train.teacher if imitating else "", Shield() if self.train.shield else None)

    def _policy_step(self, obs: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from local_agents.mappo import masked_distribution

        with torch.no_grad():
            logits = self.actor(torch.from_numpy(obs))
            dist = masked_distribution(logits, torch.from_numpy(mask).view(logits.shape).bool())
            probs = dist.probs.reshape(-1, SCALE_CHOICES)
            actions = torch.multinomial(probs, 1, generator=self.torch_generator).reshape(logits.shape[:-1])
            logp = dist.log_prob(actions).sum(-1)
        return actions.numpy(), logp.numpy()

    def collect(
        self, actor: dict[str, np.ndarray], agent_steps: int, imitating: bool
    ) -> tuple[list[Batch], list[dict[str, Any]], WorkerState]:
        """``rollout_ticks`` ticks of each of this worker's envs with the actor's weights ``actor`` ->
        (a batch per env, the episodes that ended, the worker's state)."""
        s = self.train
        torch.set_num_threads(1)  # acting is many tiny forward passes: a second thread only adds barriers
        self.actor.load_arrays(actor)
        if not imitating and any(slot.teacher is not None for slot in self.slots):
            self.slots = []  # imitation is over: new episodes with the policy acting
        while len(self.slots) < self.envs:
            self.slots.append(self._new_slot(agent_steps, imitating))
        batches, episodes = [], []
        components = len(REWARD_COMPONENTS)
        for k, slot in enumerate(self.slots):
            env, T = slot.env, s.rollout_ticks
            n, sv = env.n_nodes, env.n_services
            obs = np.zeros((T + 1, n, sv, N_FEATURES), np.float32)
            aggregates = np.zeros((T + 1, N_GLOBAL), np.float32)
            masks = np.zeros((T, n, SCALE_CHOICES * (sv + 2)), np.int8)
            actions = np.zeros((T, n, sv + 2), np.int64)
            logps = np.zeros((T, n), np.float32)
            own_terms = np.zeros((T, n, components), np.float32)
            team_terms = np.zeros((T, components), np.float32)
            weights = np.zeros((T, components), np.float32)
            ends = np.zeros(T, bool)
            bootstrap_at: dict[int, tuple[np.ndarray, np.ndarray]] = {}
            for t in range(T):
                obs[t], masks[t] = slot.obs, slot.mask
                aggregates[t] = env.state()[-N_GLOBAL:]
                if slot.teacher is None:
                    actions[t], logps[t] = self._policy_step(obs[t], masks[t])
                    executed = actions[t]
                else:
                    actions[t] = executed = slot.teacher_actions()  # the label; the actor drives some ticks (DAgger)
                    if self.rng.random() < s.student_share * min(agent_steps / max(s.teacher_agent_steps, 1), 1.0):
                        executed = self._policy_step(obs[t], masks[t])[0]
                if slot.shield is not None:  # the deployed controller's shield is part of the env PPO learns in
                    executed = shielded(env, slot.shield, executed)
                next_obs, next_mask, _, terms, done = env.step_arrays(executed)
                own_terms[t] = terms
                team_terms[t] = cluster_terms(env.cluster, terms)
                weights[t] = slot.weights.as_array()
                slot.episode_return += float(mixed_rewards(terms[None], team_terms[t : t + 1], weights[t : t + 1], s.team_share).mean())
                slot.episode_ticks += 1
                if done:  # truncation: bootstrap from the last observation, then a new episode
                    ends[t] = True
                    bootstrap_at[t] = (next_obs.copy(), env.state()[-N_GLOBAL:].copy())
                    mean_return = slot.episode_return / slot.episode_ticks
                    episodes.append({"kind": "episode", "agent_steps": agent_steps, "episode_return": mean_return})
                    slot = self.slots[k] = self._new_slot(agent_steps, imitating)
                    env = slot.env
                    if env.n_nodes != n or env.n_services != sv:  # another cluster shape: end this slot's batch here
                        T = t + 1
                        break
                else:
                    slot.obs, slot.mask = next_obs, next_mask
            if not ends[T - 1]:  # the value after the last tick bootstraps the batch (an ended episode needs none)
                obs[T], aggregates[T] = slot.obs, env.state()[-N_GLOBAL:]
            batches.append({
                "obs": obs[: T + 1], "aggregates": aggregates[: T + 1], "masks": masks[:T], "actions": actions[:T],
                "logps": logps[:T], "own_terms": own_terms[:T], "team_terms": team_terms[:T], "weights": weights[:T],
                "ends": ends[:T], "bootstrap_at": bootstrap_at,
            })  # fmt: skip
        return batches, episodes, WorkerState(rng=self.rng.bit_generator.state, next_seed=self.next_seed)


def shielded(env: ClusterEnv, shield: Shield, actions: np.ndarray) -> np.ndarray:
    """The actions with every scale move the shield (local_agents.shield) refuses turned into a hold."""
    target = env.observer.translate(env.cluster, actions)[0]
    _, cuts = shield.filter(env.cluster, target)
    if not cuts:
        return actions
    actions = actions.copy()
    for cut in cuts:
        actions[cut.node, cut.service] = HOLD
    return actions


class Rollouts(Protocol):
    def collect(self, actor: dict[str, np.ndarray], agent_steps: int, imitating: bool) -> tuple[list[Batch], list[dict[str, Any]]]: ...

    def states(self) -> list[WorkerState]: ...

    def close(self) -> None: ...


Reply = tuple[list[Batch], list[dict[str, Any]], WorkerState]
"""What RolloutWorker.collect returns."""


class _Pool:
    """The workers' states, and their replies merged into one list of batches and one of ended episodes."""

    def __init__(self, states: list[WorkerState]) -> None:
        self._states = list(states)

    def _merge(self, replies: list[Reply]) -> tuple[list[Batch], list[dict[str, Any]]]:
        batches: list[Batch] = []
        episodes: list[dict[str, Any]] = []
        for k, (b, e, state) in enumerate(replies):
            batches += b
            episodes += e
            self._states[k] = state
        return batches, episodes

    def states(self) -> list[WorkerState]:
        return self._states


class LocalRollouts(_Pool):
    """One worker in this process."""

    def __init__(self, settings: dict[str, Any], scenarios: list[tuple[Path, int]], states: list[WorkerState]) -> None:
        super().__init__(states)
        self.worker = RolloutWorker(settings, scenarios, 0, 1, states[0])

    def collect(self, actor: dict[str, np.ndarray], agent_steps: int, imitating: bool) -> tuple[list[Batch], list[dict[str, Any]]]:
        return self._merge([self.worker.collect(actor, agent_steps, imitating)])

    def close(self) -> None:
        pass


def _serve(conn: Any, settings: dict[str, Any], scenarios: list[tuple[Path, int]], index: int, count: int, state: WorkerState) -> None:
    """A worker process: build the worker, then answer ``collect`` requests until told to stop."""
    try:
        worker = RolloutWorker(settings, scenarios, index, count, state)
        conn.send(("ready", None))
    except Exception as exc:  # the parent turns it into a one-line error
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    while True:
        request = conn.recv()
        if request[0] == "close":
            return
        try:
            conn.send(("ok", worker.collect(*request[1:])))
        except Exception:
            conn.send(("error", traceback.format_exc(limit=3).strip().splitlines()[-1]))


class ProcessRollouts(_Pool):
    """One worker per process; each ``collect`` runs them side by side."""

    def __init__(self, settings: dict[str, Any], scenarios: list[tuple[Path, int]], states: list[WorkerState]) -> None:
        super().__init__(states)
        context = multiprocessing.get_context("spawn")
        self.pipes, self.processes = [], []
        for k, state in enumerate(states):
            parent, child = context.Pipe()
            process = context.Process(target=_serve, args=(child, settings, scenarios, k, len(states), state), daemon=True)
            process.start()
            self.pipes.append(parent)
            self.processes.append(process)
        for k, pipe in enumerate(self.pipes):
            kind, detail = pipe.recv()
            if kind == "error":
                self.close()
                raise ConfigError(f"rollout worker {k} did not start: {detail}")

    def collect(self, actor: dict[str, np.ndarray], agent_steps: int, imitating: bool) -> tuple[list[Batch], list[dict[str, Any]]]:
        for pipe in self.pipes:
            pipe.send(("collect", actor, agent_steps, imitating))
        replies = []
        for k, pipe in enumerate(self.pipes):
            kind, reply = pipe.recv()
            if kind == "error":
                raise RuntimeError(f"rollout worker {k} failed: {reply}")
            replies.append(reply)
        return self._merge(replies)

    def close(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(BrokenPipeError, OSError):
                pipe.send(("close",))
        for process in self.processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()


class RayRollouts(_Pool):
    """One Ray actor per worker on the cluster at ``address`` (``auto``, ``ray://host:port`` or ``local`` for a
    fresh local instance)."""

    def __init__(self, settings: dict[str, Any], scenarios: list[tuple[Path, int]], states: list[WorkerState], address: str) -> None:
        super().__init__(states)
        try:
            import ray
        except ImportError:
            raise ConfigError("--ray needs the ray package: pip install 'ama[ray]'") from None
        self.ray = ray
        if not ray.is_initialized():
            try:
                ray.init(address=None if address == "local" else address, include_dashboard=False, log_to_driver=False)
            except Exception as exc:  # ray raises ConnectionError, ValueError, RuntimeError... for a bad address
                raise ConfigError(f"--ray {address}: cannot join a Ray cluster ({type(exc).__name__}: {str(exc)[:160]})") from None
        remote = ray.remote(num_cpus=1)(RolloutWorker)
        self.workers = [remote.remote(settings, scenarios, k, len(states), state) for k, state in enumerate(states)]

    def collect(self, actor: dict[str, np.ndarray], agent_steps: int, imitating: bool) -> tuple[list[Batch], list[dict[str, Any]]]:
        replies = self.ray.get([w.collect.remote(actor, agent_steps, imitating) for w in self.workers])
        return self._merge([([_writable(batch) for batch in b], e, state) for b, e, state in replies])

    def close(self) -> None:
        for worker in self.workers:
            self.ray.kill(worker)


def _writable(batch: Batch) -> Batch:
    """A batch whose arrays torch may wrap: Ray hands back read-only views of its object store."""
    copy = {k: np.array(v) if isinstance(v, np.ndarray) else v for k, v in batch.items()}
    copy["bootstrap_at"] = {t: (np.array(o), np.array(a)) for t, (o, a) in batch["bootstrap_at"].items()}
    return copy


def make_rollouts(
    settings: dict[str, Any], scenarios: list[tuple[Path, int]], workers: int, ray_address: str, states: list[WorkerState]
) -> Rollouts:
    """``workers`` rollout workers over ``scenarios``: as Ray actors when ``ray_address`` is given, else in this
    process (one) or in as many processes; ``states`` (from a checkpoint, or none) continue their streams."""
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    if len(states) != workers:  # none yet, or resumed with another worker count: fresh streams past every seed used
        past = max((state.next_seed or 0 for state in states), default=None)
        states = [WorkerState(next_seed=None if past is None else past + k) for k in range(workers)]
    if ray_address:
        return RayRollouts(settings, scenarios, states, ray_address)
    if workers == 1:
        return LocalRollouts(settings, scenarios, states)
    return ProcessRollouts(settings, scenarios, states)
