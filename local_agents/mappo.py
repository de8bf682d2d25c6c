"""Weight-conditioned MAPPO for the node agents: centralized training, decentralized execution. Called by
``ama train`` (ui/cli.py) and the tests; steps ``simulators.env`` through its batch API (via local_agents.rollouts)
and writes, under one output folder, a resumable checkpoint (``checkpoint.pt``), learning curves (``curves.csv``,
``curves.png``) and the inference policy (``policy.npz``, read by local_agents.act and the MARL controller).

CleanRL-style: one settings dataclass, one file, read top to bottom.
- Actor (decentralized): a node sees only its own (S, F) observation rows; parameters are shared across nodes and
  across the services on a node (the same row network for every (node, service) cell, a node context pooled over its
  services), so one policy runs on any cluster size and any number of services. Action masks give masked choices
  -inf logits, so they are never sampled.
- Critic (centralized): reads ``env.state()`` — every agent's rows and the cluster aggregates — through a
  permutation-invariant encoder (rows -> nodes -> cluster), and values each agent from its node, the whole cluster
  and the aggregates.
- Weight-conditioned: each episode samples RewardWeights (a Dirichlet around the defaults); the weights are features
  of every observation row, so a manager's rewrite changes behaviour at the next tick without retraining.
- Rewards mix the agent's own reward with the cluster's (``team_share``; ``rewards.cluster_terms``: all SLO misses
  over all requests, not the mean of node ratios): a node with no replicas has no SLO misses of its own, so a local
  reward, or the mean of the nodes' rewards, pays every node to leave the work to the others (a first training run
  did exactly that: violations 92% at 0.1x HPA's cost).
- GAE over truncated episodes (the value of the last observation is bootstrapped), clipped policy and value losses,
  value normalization (running mean and variance of the returns), advantage normalization, entropy bonus, gradient
  clipping.
- Imitation first: the actor clones a teacher (the node rule by default, a per-node threshold controller on the same
  observation, its target utilization following the sampled weights) while the critic learns the returns; PPO then
  improves on it. DAgger: more and more of the imitation ticks are driven by the actor itself, labelled by the
  teacher, so the clone learns what the teacher would do in the states its own mistakes lead to. Cloning HPA's
  per-node moves did worse than HPA: its state (sync windows, stabilization) is not in a node's observation. From
  scratch, a first 0.8M-agent-step run swung between scaling everything down and everything up: each node's action
  is one replica a tick, so small biases integrate into large swings.
- Fine-tuning one head: ``init_policy`` starts the actor from a trained ``.npz`` and ``train_heads`` limits learning
  to some heads (the rest frozen, their behaviour unchanged); how the power head (sleep / wake) was added to a policy
  trained before it existed, by imitating the node rule's power choices alone.
- Keeping PPO from undoing a good start (each a setting, off by default; BENCHMARKS.md says what each did): a KL
  penalty to the actor PPO started from, annealed (``kl_coef`` -> ``kl_final``); critic-only iterations first
  (``value_warmup_iterations``); each reward component divided by its running spread (``normalize_terms``);
  rollouts behind the deployed controller's safety shield (``shield``).
- Rollouts run in local_agents.rollouts: in this process, in ``workers`` processes, or as Ray actors
  (``ray_address``); the learner combines their reward terms and computes advantages and updates here.
- Curriculum: the scenario files with at most ``max_train_nodes`` nodes (every anomaly type, synthetic workloads and
  real-trace replays), small clusters first; training seeds start at 1000, so the evals' seeds stay held out.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from local_agents.act import ARRAYS, POWER_INPUTS, READABLE_FORMATS, PolicyError, log_pressures, save_policy
from local_agents.rollouts import Rollouts, WorkerState, make_rollouts, mixed_rewards
from simulators.env import HOLD, N_FEATURES, N_GLOBAL, POWER_HOLD, SCALE_CHOICES
from simulators.errors import ConfigError
from simulators.rewards import REWARD_COMPONENTS
from simulators.scenarios import REPO_ROOT, SCENARIO_DIR, compile_scenario, load_scenario, scenario_files

TRAIN_SEED_BASE = 1000
"""Training seeds are TRAIN_SEED_BASE + k; the evals use each scenario's own seed + 0..2, so they stay unseen."""
VALIDATION_SEED_OFFSET = 500
"""Model selection runs each eval scenario at its own seed + this: unseen in training, and not an eval's test seed."""


@dataclass
class TrainSettings:
    out: Path = Path("runs/marl")
    """Folder for checkpoint.pt, curves.csv, curves.png and policy.npz."""
    total_agent_steps: int = 20_000_000
    """Stop after this many agent-steps (one node acting for one tick)."""
    seed: int = 0
    envs: int = 6
    """Environments stepped side by side (each its own scenario, seed and weights)."""
    rollout_ticks: int = 128
    epochs: int = 4
    minibatches: int = 4
    learning_rate: float = 3e-4
    anneal_lr: bool = True
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip: float = 0.2
    value_clip: float = 0.2
    entropy_coef: float = 0.01
    value_coef: float = 0.5
    max_grad_norm: float = 0.5
    team_share: float = 0.8
    """Share of an agent's reward that is the cluster's reward (rewards.cluster_terms), the rest its own."""
    weight_concentration: float = 20.0
    """Dirichlet concentration of the sampled reward weights around the defaults (higher: closer to them)."""
    hidden: int = 64
    max_train_nodes: int = 50
    small_first: float = 0.2
    """Share of training spent on clusters of at most 10 nodes before every training scenario."""
    scenarios: tuple[str, ...] = ()
    """Scenario files to train on (default: every file under evals/scenarios with at most max_train_nodes nodes)."""
    suite: str = ""
    """A scenario suite to train on instead (simulators.scenarios.scenario_files: e.g. ``generated-train``, the
    generator's training split), when ``scenarios`` is empty."""
    teacher: str = "node-rule"
    """Controller the actor imitates first (behaviour cloning of its per-node moves, weight-mapped like any
    non-learned controller), while the critic learns the returns; "" trains from scratch. ``node-rule`` (a
    function of the observation, local_agents.node_rule) can be cloned exactly; a service-level controller such as
    ``hpa`` has state the nodes do not see."""
    teacher_agent_steps: int = 1_000_000
    """Agent-steps of imitation before PPO takes over."""
    student_share: float = 0.0
    """DAgger: the share of imitation ticks, rising from 0 to this by the end of imitation, on which the actor's own
    sampled moves drive the cluster (the teacher still labels every tick). Cloning only the teacher's trajectories
    leaves the clone lost in states the teacher never visits; 0 is plain behaviour cloning."""
    init_policy: str = ""
    """A policy ``.npz`` to start the actor from (a format-1 file leaves the power head at its initial values)."""
    train_heads: tuple[str, ...] = ()
    """Actor heads that learn (``scale``, ``offload``, ``power``; the shared rows train with ``scale``); empty: all.
    Frozen heads keep their weights, and imitation is scored on the learning heads' choices only."""
    eval_every: int = 20
    """Iterations between evaluations on held-out seeds (0: never)."""
    eval_scenarios: tuple[str, ...] = (
        "traffic-spike-small.yaml", "spike-then-failure.yaml", "edge-cold-start-storm.yaml", "network-degradation-cloud.yaml",
        "straggler-alone.yaml",
    )  # fmt: skip
    eval_duration_s: float = 900.0
    threads: int = 2
    """torch threads for the updates (the 2-core machine: 2); acting uses one."""
    device: str = "auto"
    """``auto`` (a GPU when one is present), ``cpu`` or ``cuda``."""
    workers: int = 1
    """Rollout workers (local_agents.rollouts): 1 steps the envs in this process, more in as many processes."""
    ray_address: str = ""
    """Run the rollout workers as Ray actors on this cluster (``auto``, ``ray://host:port``, ``local``); "" for none."""
    kl_coef: float = 0.0
    """PPO only: weight of KL(reference || actor), the reference being the actor PPO started from (the clone of the
    teacher, or ``init_policy``): keeps PPO near a policy known to be good while the critic is still poor."""
    kl_final: float = 0.0
    """The KL weight after ``kl_anneal_agent_steps`` of PPO (linear from ``kl_coef``)."""
    kl_anneal_agent_steps: int = 0
    """PPO agent-steps over which the KL weight goes from ``kl_coef`` to ``kl_final`` (0: stays at ``kl_coef``)."""
    value_warmup_iterations: int = 0
    """PPO only: first iterations that train the critic alone (the actor frozen), so that the first policy updates
    follow advantages of a critic that has seen this policy's returns."""
    shield: bool = False
    """Train behind the deployed controller's safety shield (local_agents.shield): a scale move it refuses is a hold,
    as in deployment, so PPO learns the dynamics the policy will act in. The sampled move is what PPO credits."""
    normalize_terms: bool = False
    """Divide each reward component by its running standard deviation before weighting: a rare but large term (SLO
    misses) and a steady small one (cost) then move the reward by amounts in the ratio of their weights."""

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown training settings: {', '.join(unknown)}")
        values = dict(values)
        if "out" in values:
            values["out"] = Path(values["out"])
        for key in ("scenarios", "eval_scenarios", "train_heads"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["out"] = str(self.out)
        return values


# ---------------------------------------------------------------------------------------------- networks
def _layer(inputs: int, outputs: int, gain: float = math.sqrt(2)) -> nn.Linear:
    layer = nn.Linear(inputs, outputs)
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


HEADS = ("scale", "offload", "power")


class Actor(nn.Module):
    """Rows (..., N, S, F) -> logits (..., N, S + 2, 4); the maths of local_agents.act.Policy.logits."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.l1, self.l2 = _layer(N_FEATURES, hidden), _layer(hidden, hidden)
        self.scale = _layer(3 * hidden, SCALE_CHOICES, gain=0.01)
        self.offload = _layer(2 * hidden, SCALE_CHOICES, gain=0.01)
        self.power = _layer(POWER_INPUTS, SCALE_CHOICES, gain=0.01)
        with torch.no_grad():  # start close to "hold", "no offload", "stay": an untrained node agent should do little
            self.scale.bias[HOLD] = 2.0
            self.offload.bias[0] = 2.0
            self.power.bias[POWER_HOLD] = 2.0

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.l2(torch.tanh(self.l1(obs))))
        context = torch.cat([h.mean(dim=-2), h.amax(dim=-2)], dim=-1)
        rows = torch.cat([h, context.unsqueeze(-2).expand(*h.shape[:-1], context.shape[-1])], dim=-1)
        raw = obs.amax(dim=-2)
        power = self.power(torch.cat([raw, log_pressures(raw)], dim=-1))
        return torch.cat([self.scale(rows), self.offload(context).unsqueeze(-2), power.unsqueeze(-2)], dim=-2)

    def head_parameters(self, heads: tuple[str, ...]) -> list[nn.Parameter]:
        """The parameters that learn when ``heads`` do (all for an empty tuple; the shared rows go with ``scale``)."""
        unknown = sorted(set(heads) - set(HEADS))
        if unknown:
            raise ConfigError(f"unknown actor heads: {', '.join(unknown)}; known: {', '.join(HEADS)}")
        if not heads:
            return list(self.parameters())
        modules = [getattr(self, head) for head in heads] + ([self.l1, self.l2] if "scale" in heads else [])
        return [p for module in modules for p in module.parameters()]

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """The inverse of ``export``: numpy weights (x @ W + b) into the layers; a missing power head is left alone."""
        pairs = {"l1": ("w1", "b1"), "l2": ("w2", "b2"), "scale": ("w_scale", "b_scale"), "offload": ("w_offload", "b_offload"),
                 "power": ("w_power", "b_power")}  # fmt: skip
        with torch.no_grad():
            for layer, (w, b) in pairs.items():
                if w in arrays:
                    getattr(self, layer).weight.copy_(torch.from_numpy(np.asarray(arrays[w]).T.copy()))
                    getattr(self, layer).bias.copy_(torch.from_numpy(np.asarray(arrays[b]).copy()))

    def export(self) -> dict[str, np.ndarray]:
        """Weights for numpy (x @ W + b, so transposed)."""

        def arr(t: torch.Tensor) -> np.ndarray:
            return t.detach().cpu().numpy().astype(np.float32)

        return {
            "w1": arr(self.l1.weight.T), "b1": arr(self.l1.bias), "w2": arr(self.l2.weight.T), "b2": arr(self.l2.bias),
            "w_scale": arr(self.scale.weight.T), "b_scale": arr(self.scale.bias),
            "w_offload": arr(self.offload.weight.T), "b_offload": arr(self.offload.bias),
            "w_power": arr(self.power.weight.T), "b_power": arr(self.power.bias),
        }  # fmt: skip


class Critic(nn.Module):
    """The centralized critic: ``state()`` as (..., N, S, F) rows plus (..., N_GLOBAL) aggregates -> a value per
    agent (..., N). Pools rows to nodes (mean, max) and nodes to the cluster (mean, max)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.rows = nn.Sequential(_layer(N_FEATURES, hidden), nn.Tanh(), _layer(hidden, hidden), nn.Tanh())
        self.head = nn.Sequential(_layer(6 * hidden + N_GLOBAL, hidden), nn.Tanh(), _layer(hidden, 1, gain=1.0))

    def forward(self, obs: torch.Tensor, aggregates: torch.Tensor) -> torch.Tensor:
        h = self.rows(obs)
        node = torch.cat([h.mean(dim=-2), h.amax(dim=-2)], dim=-1)
        cluster = torch.cat([node.mean(dim=-2), node.amax(dim=-2)], dim=-1)
        shape = node.shape[:-1]
        joint = torch.cat(
            [node, cluster.unsqueeze(-2).expand(*shape, cluster.shape[-1]), aggregates.unsqueeze(-2).expand(*shape, N_GLOBAL)], dim=-1
        )
        return self.head(joint).squeeze(-1)


def masked_distribution(logits: torch.Tensor, mask: torch.Tensor) -> torch.distributions.Categorical:
    """Categorical over each action dimension with masked choices at a logit of -1e9 (probability 0)."""
    return torch.distributions.Categorical(logits=torch.where(mask, logits, torch.full_like(logits, -1e9)))


class TermNorm:
    """Running standard deviation of each reward component (``normalize_terms``)."""

    def __init__(self, components: int) -> None:
        self.mean, self.var, self.count = np.zeros(components), np.ones(components), 1e-4

    def update(self, x: np.ndarray) -> None:
        batch_mean, batch_var, n = x.mean(axis=0), x.var(axis=0), x.shape[0]
        delta, total = batch_mean - self.mean, self.count + n
        self.mean = self.mean + delta * n / total
        self.var = (self.var * self.count + batch_var * n + delta**2 * self.count * n / total) / total
        self.count = total

    @property
    def scale(self) -> np.ndarray:
        return np.sqrt(self.var + 1e-8).astype(np.float32)


class ValueNorm:
    """Running mean and variance of the value targets (MAPPO's value normalization)."""

    def __init__(self) -> None:
        self.mean, self.var, self.count = 0.0, 1.0, 1e-4

    def update(self, x: torch.Tensor) -> None:
        batch_mean, batch_var, n = float(x.mean()), float(x.var(unbiased=False)), x.numel()
        delta, total = batch_mean - self.mean, self.count + n
        self.mean += delta * n / total
        self.var = (self.var * self.count + batch_var * n + delta**2 * self.count * n / total) / total
        self.count = total

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / math.sqrt(self.var + 1e-8)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * math.sqrt(self.var + 1e-8) + self.mean


# ---------------------------------------------------------------------------------------------- curriculum
def training_scenarios(settings: TrainSettings) -> list[tuple[Path, int]]:
    """(scenario file, node count) of the training set, smallest clusters first."""
    if settings.scenarios:
        paths = [Path(p) if Path(p).is_absolute() else SCENARIO_DIR / p for p in settings.scenarios]
    elif settings.suite:
        paths = scenario_files(settings.suite)
    else:
        paths = sorted(SCENARIO_DIR.glob("*.yaml"))
    found = []
    for path in paths:
        n = load_scenario(path).make_cluster().n_nodes
        if n <= settings.max_train_nodes:
            found.append((path, n))
    if not found:
        raise ConfigError(f"no training scenario with at most {settings.max_train_nodes} nodes among {len(paths)} files")
    return sorted(found, key=lambda item: item[1])


def eval_scenario_path(name: str) -> Path:
    """A held-out evaluation scenario: an absolute path, a shipped file's name, or a generated validation file's name
    (``gen-validation-N.yaml``, from the generator's validation split)."""
    if Path(name).is_absolute():
        return Path(name)
    if name.startswith("gen-validation-"):
        found = {p.name: p for p in scenario_files("generated-validation")}
        if name not in found:
            raise ConfigError(f"eval scenario {name}: not in the generated validation split")
        return found[name]
    return SCENARIO_DIR / name


def learning_dims(heads: tuple[str, ...], dims: int) -> list[int]:
    """The action dimensions (S scale rows, then offload, then power) whose choices the learning heads make."""
    made_by = ["scale"] * (dims - 2) + ["offload", "power"]
    return [d for d, head in enumerate(made_by) if not heads or head in heads]


def selection_rank(row: dict[str, Any]) -> tuple[bool, float]:
    """Model selection on the validation seeds, by the shipping target (lower ranks better): a policy that meets it
    (at most half HPA's SLA violations at no more than HPA's cost) beats one that does not; then the fewest
    violations, each point of cost above HPA's counting as a point of violations. What PPO optimizes is the weighted
    reward; what ships must do the job."""
    violations, cost = row["eval_violation_rate"], row["eval_cost_vs_hpa"]
    meets = cost <= 1.0 and violations <= 0.5 * row["hpa_violation_rate"]
    return not meets, violations + max(cost - 1.0, 0.0)


# ---------------------------------------------------------------------------------------------- trainer
@dataclass
class Trainer:
    settings: TrainSettings
    progress: Any = None
    """A callable(done_agent_steps, total, line) for a progress bar; None for silence."""
    curves: list[dict[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        s = self.settings
        torch.set_num_threads(s.threads)
        torch.distributions.Distribution.set_default_validate_args(False)  # checks cost more than the tiny forward
        self.device = torch.device(
            "cuda" if s.device == "auto" and torch.cuda.is_available() else ("cpu" if s.device == "auto" else s.device)
        )
        torch.manual_seed(s.seed)
        self.actor, self.critic = Actor(s.hidden), Critic(s.hidden).to(self.device)
        if s.init_policy:
            from local_agents.act import load_policy

            start = load_policy(s.init_policy)
            if start.hidden != s.hidden:
                raise ConfigError(f"{s.init_policy}: hidden width {start.hidden}, these settings have {s.hidden}")
            format_1 = start.provenance.get("format") == READABLE_FORMATS[0]  # its power head is a stand-in: not copied
            self.actor.load_arrays({k: getattr(start, k) for k in ARRAYS if k != "reference" and not (format_1 and "power" in k)})
        self.actor.to(self.device)
        self.reference: Actor | None = None
        """A frozen copy of the actor PPO starts from (the clone, or ``init_policy``): the KL penalty's anchor."""
        self.learning = self.actor.head_parameters(s.train_heads)
        learning = {id(parameter) for parameter in self.learning}
        for parameter in self.actor.parameters():
            parameter.requires_grad_(id(parameter) in learning)
        self.optimizer = torch.optim.Adam([*self.learning, *self.critic.parameters()], lr=s.learning_rate, eps=1e-5)
        self.value_norm = ValueNorm()
        self.obs_sum, self.obs_count = np.zeros(N_FEATURES), 0
        self.iteration, self.agent_steps, self.wall_s = 0, 0, 0.0
        self.ppo_iterations = 0
        self.term_norm = TermNorm(len(REWARD_COMPONENTS))
        self.scenarios = training_scenarios(s)
        """(file, node count) of the curriculum, found once here and handed to every rollout worker."""
        self.rollouts: Rollouts | None = None
        self.worker_states: list[WorkerState] = []
        self.hpa_reference: dict[str, list[float]] = {}
        self.best: dict[str, float] | None = None
        """The held-out evaluation of the policy kept as policy-best.npz (the one to ship)."""

    # -------------------------------------------------------------------------------------- rollout
    @property
    def imitating(self) -> bool:
        return bool(self.settings.teacher) and self.agent_steps < self.settings.teacher_agent_steps

    def collect(self) -> list[dict[str, Any]]:
        """``rollout_ticks`` ticks of every env (local_agents.rollouts, in this process or in workers); each env's
        batch gets its rewards (per-component normalized when asked) and GAE advantages here."""
        s = self.settings
        if self.rollouts is None:
            self.rollouts = make_rollouts(s.as_dict(), self.scenarios, s.workers, s.ray_address, self.worker_states)
        raw, episodes = self.rollouts.collect(self.actor.export(), self.agent_steps, self.imitating)
        self.worker_states = self.rollouts.states()
        self.curves += episodes
        if s.normalize_terms:
            for b in raw:
                self.term_norm.update(b["own_terms"].reshape(-1, len(REWARD_COMPONENTS)))
        batches = []
        for b in raw:
            own, team, w = b["own_terms"], b["team_terms"], b["weights"]
            if s.normalize_terms:
                own, team = own / self.term_norm.scale, team / self.term_norm.scale
            rewards = mixed_rewards(own, team, w, s.team_share)
            T, n, sv = rewards.shape[0], own.shape[1], b["obs"].shape[2]
            self.obs_sum += b["obs"][:T].reshape(-1, N_FEATURES).sum(axis=0)
            self.obs_count += T * n * sv
            self.agent_steps += T * n
            batch = self._advantages(b["obs"], b["aggregates"], rewards.astype(np.float32), b["ends"], b["bootstrap_at"])
            batch.update(obs=b["obs"][:T], aggregates=b["aggregates"][:T], masks=b["masks"], actions=b["actions"], logps=b["logps"])
            batch["terms_mean"] = b["own_terms"].mean(axis=(0, 1))
            batches.append(batch)
        return batches

    def _values(self, obs: np.ndarray, aggregates: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            return self.value_norm.denormalize(
                self.critic(torch.from_numpy(obs).to(self.device), torch.from_numpy(aggregates).to(self.device))
            )

    def _advantages(
        self,
        obs: np.ndarray,
        aggregates: np.ndarray,
        rewards: np.ndarray,
        ends: np.ndarray,
        bootstrap_at: dict[int, tuple[np.ndarray, np.ndarray]],
    ) -> dict[str, Any]:
        s = self.settings
        values = self._values(obs, aggregates)  # (T + 1, N)
        r = torch.from_numpy(rewards).to(self.device)
        for t, (last_obs, last_agg) in bootstrap_at.items():
            r[t] += s.gamma * self._values(last_obs[None], last_agg[None])[0]
        T = r.shape[0]
        advantages = torch.zeros_like(r)
        gae = torch.zeros(r.shape[1], device=self.device)
        for t in reversed(range(T)):
            not_end = 0.0 if ends[t] else 1.0
            delta = r[t] + s.gamma * values[t + 1] * not_end - values[t]
            gae = delta + s.gamma * s.gae_lambda * not_end * gae
            advantages[t] = gae
        return {"advantages": advantages, "returns": advantages + values[:T], "values": values[:T], "reward_mean": float(rewards.mean())}

    # -------------------------------------------------------------------------------------- update
    def kl_weight(self) -> float:
        """The KL penalty's weight now: ``kl_coef`` annealed linearly to ``kl_final`` over PPO's agent-steps."""
        s = self.settings
        if not s.kl_anneal_agent_steps:
            return s.kl_coef
        done = min(max(self.agent_steps - s.teacher_agent_steps * bool(s.teacher), 0) / s.kl_anneal_agent_steps, 1.0)
        return s.kl_coef + (s.kl_final - s.kl_coef) * done

    def update(self, batches: list[dict[str, Any]], imitation: bool = False) -> dict[str, float]:
        s = self.settings
        warming = not imitation and self.ppo_iterations < s.value_warmup_iterations
        kl_weight = 0.0 if imitation else self.kl_weight()
        if not imitation and (s.kl_coef > 0 or s.kl_final > 0) and self.reference is None:  # the start of PPO
            self.reference = Actor(s.hidden).to(self.device)
            self.reference.load_state_dict(self.actor.state_dict())
            self.reference.requires_grad_(False)
        all_adv = torch.cat([b["advantages"].reshape(-1) for b in batches])
        adv_mean, adv_std = all_adv.mean(), all_adv.std() + 1e-8
        self.value_norm.update(torch.cat([b["returns"].reshape(-1) for b in batches]))
        total = sum(b["advantages"].numel() for b in batches)
        tensors = []
        for b in batches:
            tensors.append(
                {
                    "obs": torch.from_numpy(b["obs"]).to(self.device),
                    "agg": torch.from_numpy(b["aggregates"]).to(self.device),
                    "mask": torch.from_numpy(b["masks"]).to(self.device).bool(),
                    "actions": torch.from_numpy(b["actions"]).to(self.device),
                    "logp": torch.from_numpy(b["logps"]).to(self.device),
                    "adv": (b["advantages"] - adv_mean) / adv_std,
                    "ret": self.value_norm.normalize(b["returns"]),
                    "old_v": self.value_norm.normalize(b["values"]),
                }
            )
        stats = {"policy_loss": 0.0, "value_loss": 0.0, "entropy": 0.0, "approx_kl": 0.0, "clip_fraction": 0.0, "reference_kl": 0.0}
        steps = 0
        for _ in range(s.epochs):
            orders = [torch.randperm(t["obs"].shape[0]) for t in tensors]
            for m in range(s.minibatches):
                loss = torch.zeros((), device=self.device)
                parts = {k: 0.0 for k in stats}
                for t, order in zip(tensors, orders, strict=True):
                    idx = order[m :: s.minibatches]
                    if len(idx) == 0:
                        continue
                    logits = self.actor(t["obs"][idx])
                    dist = masked_distribution(logits, t["mask"][idx].view(logits.shape))
                    logp_dims = dist.log_prob(t["actions"][idx])
                    logp = logp_dims.sum(-1)
                    learned = learning_dims(s.train_heads, logits.shape[-2])
                    entropy = dist.entropy()[..., learned].sum(-1).mean()
                    ratio = torch.exp(logp - t["logp"][idx])
                    adv = t["adv"][idx]
                    if imitation:  # behaviour cloning: the teacher's moves on the learning heads are the targets
                        policy_loss = -logp_dims[..., learned].sum(-1).mean()
                        ratio = torch.ones_like(logp)
                    else:
                        policy_loss = -torch.min(ratio * adv, ratio.clamp(1 - s.clip, 1 + s.clip) * adv).mean()
                    reference_kl = torch.zeros((), device=self.device)
                    if kl_weight > 0 and self.reference is not None:
                        with torch.no_grad():
                            anchor = masked_distribution(self.reference(t["obs"][idx]), t["mask"][idx].view(logits.shape))
                        reference_kl = torch.distributions.kl_divergence(anchor, dist)[..., learned].sum(-1).mean()
                        policy_loss = policy_loss + kl_weight * reference_kl
                    if warming:  # the critic alone learns; the actor's loss terms are dropped
                        policy_loss, entropy_term = torch.zeros((), device=self.device), torch.zeros((), device=self.device)
                    else:
                        entropy_term = entropy
                    v = self.critic(t["obs"][idx], t["agg"][idx])
                    old_v, ret = t["old_v"][idx], t["ret"][idx]
                    v_clipped = old_v + (v - old_v).clamp(-s.value_clip, s.value_clip)
                    value_loss = 0.5 * torch.max((v - ret) ** 2, (v_clipped - ret) ** 2).mean()
                    share = idx.numel() * t["obs"].shape[1] / (total / s.minibatches)
                    # the entropy bonus also during imitation: a deterministic clone of a deterministic teacher
                    # leaves PPO nothing to explore with
                    loss = loss + share * (policy_loss + s.value_coef * value_loss - s.entropy_coef * entropy_term)
                    with torch.no_grad():
                        parts["policy_loss"] += share * float(policy_loss)
                        parts["value_loss"] += share * float(value_loss)
                        parts["entropy"] += share * float(entropy)
                        parts["approx_kl"] += share * float(((ratio - 1) - (logp - t["logp"][idx])).mean())
                        parts["clip_fraction"] += share * float(((ratio - 1).abs() > s.clip).float().mean())
                        parts["reference_kl"] += share * float(reference_kl)
                self.optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_([*self.learning, *self.critic.parameters()], s.max_grad_norm)
                self.optimizer.step()
                for k in stats:
                    stats[k] += parts[k]
                steps += 1
        if not imitation:
            self.ppo_iterations += 1
        return {**{k: v / max(steps, 1) for k, v in stats.items()}, "kl_weight": kl_weight, "value_warmup": float(warming)}

    # -------------------------------------------------------------------------------------- loop
    def train(self) -> dict[str, Any]:
        s = self.settings
        s.out.mkdir(parents=True, exist_ok=True)
        per_iteration = None
        while self.agent_steps < s.total_agent_steps:
            started = time.perf_counter()
            if s.anneal_lr:
                for group in self.optimizer.param_groups:
                    group["lr"] = s.learning_rate * max(1.0 - self.agent_steps / s.total_agent_steps, 0.05)
            before = self.agent_steps
            imitation = self.imitating
            batches = self.collect()
            torch.set_num_threads(s.threads)  # a rollout worker in this process acts on one
            stats = self.update(batches, imitation)
            self.iteration += 1
            elapsed = time.perf_counter() - started
            self.wall_s += elapsed
            per_iteration = (self.agent_steps - before) / max(elapsed, 1e-9)
            terms = np.mean([b["terms_mean"] for b in batches], axis=0)
            row = {
                "kind": "iteration", "iteration": self.iteration, "agent_steps": self.agent_steps, "wall_s": round(self.wall_s, 2),
                "agent_steps_per_s": round(per_iteration, 1), "phase": "imitation" if imitation else "ppo",
                "reward_mean": float(np.mean([b["reward_mean"] for b in batches])),
                **{f"term_{name}": float(v) for name, v in zip(REWARD_COMPONENTS, terms, strict=True)},
                **stats,
            }  # fmt: skip
            if s.eval_every and self.iteration % s.eval_every == 0:
                row.update(self.evaluate())
                self._keep_if_best(row)
            self.curves.append(row)
            if self.progress is not None:
                line = f"{row['phase']} reward {row['reward_mean']:+.3f} entropy {stats['entropy']:.2f} {per_iteration:,.0f} agent-steps/s"
                if "eval_violation_rate" in row:
                    line += f" | eval viol {row['eval_violation_rate']:.1%} (HPA {row['hpa_violation_rate']:.1%})"
                    line += f" cost {row['eval_cost_vs_hpa']:.2f}x HPA"
                self.progress(self.agent_steps, s.total_agent_steps, line)
            if self.iteration % 10 == 0:
                self.save()
        self.save()
        self.close()
        return {"iterations": self.iteration, "agent_steps": self.agent_steps, "wall_s": round(self.wall_s, 1),
                "agent_steps_per_s": round(self.agent_steps / max(self.wall_s, 1e-9), 1), "policy": str(s.out / "policy.npz")}  # fmt: skip

    def close(self) -> None:
        """Stop the rollout workers (their processes or Ray actors)."""
        if self.rollouts is not None:
            self.rollouts.close()
            self.rollouts = None

    def evaluate(self) -> dict[str, float]:
        """The deterministic policy and HPA on a validation seed of each of ``eval_scenarios`` (cut to eval_duration_s):
        neither a training seed nor one of the evals' test seeds, so selecting on it does not peek at the test."""
        from evals.runner import run_controller
        from local_agents.act import Policy
        from local_agents.marl import MarlController
        from local_agents.registry import make_controller

        policy = Policy(**self._arrays(), provenance={})
        totals = {"marl": np.zeros(3), "hpa": np.zeros(3)}  # SLO-missing requests, finished requests, cost
        for name in self.settings.eval_scenarios:
            path = eval_scenario_path(name)
            test = load_scenario(path, duration_s=self.settings.eval_duration_s)
            scenario = compile_scenario(test.spec.model_copy(update={"seed": test.spec.seed + VALIDATION_SEED_OFFSET}), test.path)
            if name not in self.hpa_reference:
                self.hpa_reference[name] = _outcome(run_controller(scenario, make_controller("hpa"), keep_series=False)[0].summary())
            totals["hpa"] += self.hpa_reference[name]
            marl = MarlController(policy, seed=0, explain=False)
            totals["marl"] += _outcome(run_controller(scenario, marl, keep_series=False)[0].summary())
        marl, hpa = totals["marl"], totals["hpa"]
        return {
            "eval_violation_rate": marl[0] / max(marl[1], 1e-9),
            "hpa_violation_rate": hpa[0] / max(hpa[1], 1e-9),
            "eval_cost_vs_hpa": marl[2] / max(hpa[2], 1e-9),
        }

    def _keep_if_best(self, row: dict[str, Any]) -> None:
        rank = selection_rank(row)
        if self.best is None or rank < selection_rank(self.best):
            self.best = {"score": rank[1], "agent_steps": self.agent_steps, "iteration": self.iteration,
                         **{k: row[k] for k in ("eval_violation_rate", "hpa_violation_rate", "eval_cost_vs_hpa")}}  # fmt: skip
            save_policy(self.settings.out / "policy-best.npz", self._arrays(), {**self.provenance(), "selected": self.best})

    # -------------------------------------------------------------------------------------- files
    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = self.actor.export()
        arrays["reference"] = (self.obs_sum / max(self.obs_count, 1)).astype(np.float32)
        return arrays

    def save(self) -> None:
        s = self.settings
        state = {
            "format": "ama-marl-checkpoint/1", "settings": s.as_dict(),
            "actor": self.actor.state_dict(), "critic": self.critic.state_dict(), "optimizer": self.optimizer.state_dict(),
            "value_norm": vars(self.value_norm), "obs_sum": self.obs_sum, "obs_count": self.obs_count,
            "iteration": self.iteration, "agent_steps": self.agent_steps, "wall_s": self.wall_s,
            "ppo_iterations": self.ppo_iterations, "worker_states": [vars(w) for w in self.worker_states],
            "term_norm": vars(self.term_norm), "torch_rng": torch.get_rng_state(),
            "reference": None if self.reference is None else self.reference.state_dict(),
            "curves": self.curves, "hpa_reference": self.hpa_reference, "best": self.best,
        }  # fmt: skip
        tmp = s.out / "checkpoint.pt.tmp"
        torch.save(state, tmp)
        tmp.replace(s.out / "checkpoint.pt")
        save_policy(s.out / "policy.npz", self._arrays(), self.provenance())
        write_curves(self.curves, s.out)

    def provenance(self) -> dict[str, Any]:
        return {
            "settings": self.settings.as_dict(), "iterations": self.iteration, "agent_steps": self.agent_steps,
            "wall_s": round(self.wall_s, 1), "commit": git_commit(), "torch": torch.__version__,
        }  # fmt: skip

    @classmethod
    def resume(cls, checkpoint: Path, progress: Any = None, **overrides: Any) -> Trainer:
        """A trainer continuing from ``checkpoint`` (settings from the file, ``overrides`` on top, e.g. a larger
        total_agent_steps); PolicyError naming the file when it is not a readable AMA checkpoint."""
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        except FileNotFoundError:
            raise PolicyError(f"{checkpoint}: no such checkpoint") from None
        except Exception as exc:  # torch raises many types for a damaged file
            raise PolicyError(f"{checkpoint}: not a readable checkpoint ({type(exc).__name__}: {str(exc)[:160]})") from None
        if not isinstance(state, dict) or state.get("format") != "ama-marl-checkpoint/1":
            raise PolicyError(f"{checkpoint}: not an AMA training checkpoint")
        settings = TrainSettings.from_dict({**state["settings"], **overrides})
        trainer = cls(settings, progress=progress)
        try:
            trainer.actor.load_state_dict(state["actor"])
            trainer.critic.load_state_dict(state["critic"])
            trainer.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError) as exc:
            raise PolicyError(f"{checkpoint}: incompatible with this version's networks ({str(exc)[:160]})") from None
        vars(trainer.value_norm).update(state["value_norm"])
        trainer.obs_sum, trainer.obs_count = np.asarray(state["obs_sum"]), int(state["obs_count"])
        trainer.iteration, trainer.agent_steps, trainer.wall_s = state["iteration"], state["agent_steps"], state["wall_s"]
        trainer.ppo_iterations = state.get("ppo_iterations", 0)
        if "worker_states" in state:
            trainer.worker_states = [WorkerState(**w) for w in state["worker_states"]]
        else:  # a checkpoint from before rollout workers: its one stream is worker 0's
            trainer.worker_states = [WorkerState(rng=state["rng"], next_seed=state["next_seed"])]
        if "term_norm" in state:
            vars(trainer.term_norm).update(state["term_norm"])
        if state.get("reference") is not None:
            trainer.reference = Actor(settings.hidden).to(trainer.device)
            trainer.reference.load_state_dict(state["reference"])
            trainer.reference.requires_grad_(False)
        torch.set_rng_state(state["torch_rng"])
        trainer.curves, trainer.hpa_reference = list(state["curves"]), dict(state["hpa_reference"])
        trainer.best = state.get("best")
        return trainer


def _outcome(summary: dict[str, Any]) -> list[float]:
    finished = summary["served"] + summary["drops"]
    return [summary["sla_violation_rate"] * finished, finished, summary["cost"]]


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("+uncommitted" if dirty else "") if out.returncode == 0 else "unknown"
    except OSError:
        return "unknown"


def write_rows_csv(rows: list[dict[str, Any]], path: Path, skip: tuple[str, ...] = ()) -> None:
    """Rows as CSV with every key any row has (in first-seen order; blank where a row lacks one); nothing if no rows.
    The trainer's and the distiller's curves."""
    if not rows:
        return
    keys = list(dict.fromkeys(k for r in rows for k in r if k not in skip))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows([{k: r.get(k, "") for k in keys} for r in rows])


def write_curves(curves: list[dict[str, Any]], out: Path) -> None:
    """``curves.csv`` (one row per iteration; episode returns in ``episodes.csv``) and ``curves.png``."""
    iterations = [r for r in curves if r.get("kind") == "iteration"]
    episodes = [r for r in curves if r.get("kind") == "episode"]
    for name, rows in (("curves.csv", iterations), ("episodes.csv", episodes)):
        write_rows_csv(rows, out / name, skip=("kind",))
    if not iterations:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    steps = [r["agent_steps"] / 1e6 for r in iterations]
    axes[0].plot(steps, [r["reward_mean"] for r in iterations], label="mean reward per agent-tick")
    if episodes:
        axes[0].plot(
            [r["agent_steps"] / 1e6 for r in episodes], [r["episode_return"] for r in episodes], ".", alpha=0.4, label="episode mean"
        )
    axes[0].set(title="Training reward", xlabel="agent-steps (millions)")
    axes[0].legend()
    for name in ("term_latency", "term_sla", "term_utilization", "term_energy", "term_cost", "term_churn"):
        axes[1].plot(steps, [r[name] for r in iterations], label=name.removeprefix("term_"))
    axes[1].set(title="Reward terms (mean per agent-tick)", xlabel="agent-steps (millions)")
    axes[1].legend(fontsize=7)
    evals = [r for r in iterations if "eval_violation_rate" in r]
    if evals:
        x = [r["agent_steps"] / 1e6 for r in evals]
        axes[2].plot(x, [100 * r["eval_violation_rate"] for r in evals], "o-", label="MARL violations %")
        axes[2].plot(x, [100 * r["hpa_violation_rate"] for r in evals], "--", label="HPA violations %")
        axes[2].plot(x, [r["eval_cost_vs_hpa"] for r in evals], "s-", label="MARL cost / HPA cost")
        axes[2].legend()
    axes[2].set(title="Held-out evaluation", xlabel="agent-steps (millions)")
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=100)
    plt.close(fig)


def ship_policy(policy: Path, command: str) -> Path:
    """Copy a trained policy over the shipped default (local_agents/policies/default.npz) and write its provenance
    next to it (default.json: the command, seed, commit and settings that produced it)."""
    from local_agents.act import DEFAULT_POLICY, load_policy

    loaded = load_policy(policy)  # refuses a broken file before it replaces a working one
    provenance = {"command": command, **loaded.provenance, "source": str(policy)}
    DEFAULT_POLICY.parent.mkdir(parents=True, exist_ok=True)
    DEFAULT_POLICY.write_bytes(policy.read_bytes())
    DEFAULT_POLICY.with_suffix(".json").write_text(json.dumps(provenance, indent=2) + "\n")
    return DEFAULT_POLICY


def load_settings_file(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read training settings ({exc})") from None


def plot_runs(runs: dict[str, Path], path: Path, start: tuple[float, float] | None = None) -> None:
    """Several training runs' held-out evaluations side by side (violation rate and cost over HPA's against
    agent-steps), from their ``curves.csv``; ``start`` marks the policy they started from (its violation rate and
    cost ratio on the same evaluation). ``python -m local_agents.mappo --compare``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_v, ax_c) = plt.subplots(1, 2, figsize=(12, 4))
    for label, folder in runs.items():
        try:
            with (folder / "curves.csv").open() as handle:
                rows = [r for r in csv.DictReader(handle) if r.get("eval_violation_rate")]
        except OSError as exc:
            raise ConfigError(f"{folder}: no readable curves.csv ({exc.strerror})") from None
        x = [int(r["agent_steps"]) / 1e6 for r in rows]
        ax_v.plot(x, [100 * float(r["eval_violation_rate"]) for r in rows], "o-", ms=3, label=label)
        ax_c.plot(x, [float(r["eval_cost_vs_hpa"]) for r in rows], "o-", ms=3, label=label)
    if start is not None:
        ax_v.axhline(100 * start[0], color="black", ls="--", label="the policy they started from")
        ax_c.axhline(start[1], color="black", ls="--", label="the policy they started from")
    ax_v.set(title="Held-out violations (% of requests)", xlabel="agent-steps (millions)")
    ax_c.set(title="Held-out cost / HPA's", xlabel="agent-steps (millions)")
    ax_v.legend(fontsize=7)
    ax_c.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Compare training runs' held-out evaluations in one plot (training itself: ama train).")
    parser.add_argument("--compare", nargs="+", required=True, metavar="LABEL=FOLDER", help="runs to plot, each LABEL=its output folder")
    parser.add_argument("--start", default=None, metavar="VIOLATION_RATE,COST", help="the starting policy's evaluation, to draw as a line")
    parser.add_argument("--out", type=Path, default=Path("out/training-runs.png"), help="the plot (default: %(default)s)")
    args = parser.parse_args(argv)
    runs = {}
    for item in args.compare:
        label, sep, folder = item.partition("=")
        if not sep:
            parser.error(f"--compare: {item!r} is not LABEL=FOLDER")
        runs[label] = Path(folder)
    start = None
    if args.start:
        try:
            violation, cost = (float(x) for x in args.start.split(","))
        except ValueError:
            parser.error(f"--start: two comma-separated numbers, got {args.start!r}")
        start = (violation, cost)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    try:
        plot_runs(runs, args.out, start)
    except ConfigError as exc:
        parser.error(str(exc))
    print(args.out)


if __name__ == "__main__":
    main()
