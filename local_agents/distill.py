"""Distil a trained policy into a narrower one (``ama distill``): the same behaviour at a fraction of the inference
cost, for the 1,000-node decision budget. Called by ``ama distill`` (ui/cli.py) and the tests; steps
``simulators.env`` over the training curriculum of local_agents.mappo and writes, under one output folder, the
student's ``policy.npz`` (read by local_agents.act like any other policy) and its curves (``curves.csv``,
``curves.png``).

Policy distillation with DAgger, on the training curriculum's scenarios (local_agents.mappo: every shipped scenario
of at most 50 nodes, drawn uniformly: no small-clusters-first phase, the teacher already acts on every size). Every
tick of every environment is labelled with the teacher's full logits, and
the student (a ``mappo.Actor`` of width ``hidden``) learns to match the teacher's choice distribution on every
action dimension (the KL divergence from the teacher, masked choices excluded). The ticks are driven by the
teacher at first and more and more by the student itself (its own sampled moves, exactly as it will act), so it
learns what the teacher would do in the states its own mistakes lead to. Episodes sample the reward weights as
training does (a Dirichlet around the defaults), and every batch is labelled a second time under rewritten weights
(one component scaled, as a manager's rewrite does), so the student follows the manager's rewrites like its teacher.

Why a narrower network: the actor's cost at 1,000 nodes is mostly its two hidden layers (29 x 65 + 65 x 64
multiply-adds per cell at width 64); at width 32 they are about a third of that. The teacher's own training is what
finds the behaviour (imitation of the node rule, PPO, head fine-tuning, a weight soup); distillation copies it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from local_agents.act import WEIGHT_COLUMNS, Policy, file_digest, load_policy, require_current_format, save_policy
from local_agents.mappo import TRAIN_SEED_BASE, Actor, TrainSettings, git_commit, masked_distribution, training_scenarios, write_rows_csv
from simulators.env import SCALE_CHOICES, ClusterEnv
from simulators.errors import ConfigError
from simulators.rewards import REWARD_COMPONENTS, sample_weights
from simulators.scenarios import Scenario, load_scenario


@dataclass
class DistillSettings:
    teacher: Path
    """The policy to copy (``.npz``)."""
    out: Path = Path("runs/distill")
    """Folder for policy.npz, curves.csv and curves.png."""
    hidden: int = 32
    """The student's hidden width."""
    total_agent_steps: int = 4_000_000
    """Stop after this many labelled agent-steps (one node, one tick)."""
    seed: int = 0
    envs: int = 6
    rollout_ticks: int = 128
    epochs: int = 4
    minibatches: int = 4
    learning_rate: float = 3e-3
    """Adam's step size, annealed linearly to 5% of it."""
    student_share: float = 0.75
    """DAgger: the share of ticks the student's own moves drive, rising from 0 to this over the first half."""
    weight_concentration: float = 5.0
    """Dirichlet concentration of the episodes' reward weights (the shipped power head trained at 5)."""
    rewrites: bool = True
    """Also label every batch under rewritten weights (one component scaled by 1/4 to 4, as a manager does): the
    teacher's response to a rewrite is a small shift of its choice distributions, which matching only the weights
    each episode ran with left out (a student without these copies did not respond to a 3x SLA weight at all)."""
    max_train_nodes: int = 50
    scenarios: tuple[str, ...] = ()
    """Scenario files (default: training's curriculum, every shipped scenario with at most max_train_nodes nodes)."""
    threads: int = 2

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.total_agent_steps < 1 or self.envs < 1 or self.rollout_ticks < 1:
            raise ConfigError("hidden, total_agent_steps, envs and rollout_ticks must be positive")
        if not 0.0 <= self.student_share <= 1.0:
            raise ConfigError(f"student_share {self.student_share} is outside [0, 1]")

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["out"], values["teacher"], values["scenarios"] = str(self.out), str(self.teacher), list(self.scenarios)
        return values


def masked_kl(student: torch.Tensor, teacher: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) per action dimension over the allowed choices: logits (..., D, 4), mask (..., D, 4)."""
    return torch.distributions.kl_divergence(masked_distribution(teacher, allowed), masked_distribution(student, allowed))


class Distiller:
    """One student, its optimizer and the environments it learns in (one per slot, each its own scenario, seed and
    weights, replaced when its episode ends)."""

    def __init__(self, settings: DistillSettings, progress: Any = None) -> None:
        self.settings, self.progress = settings, progress
        self.teacher = load_policy(settings.teacher)
        require_current_format(self.teacher, settings.teacher, "distil")
        self.teacher_digest = file_digest(settings.teacher)
        torch.manual_seed(settings.seed)
        self.rng = np.random.default_rng(settings.seed)
        self.student = Actor(settings.hidden)
        self.optimizer = torch.optim.Adam(self.student.parameters(), lr=settings.learning_rate)
        curriculum = TrainSettings(max_train_nodes=settings.max_train_nodes, scenarios=settings.scenarios)
        self.scenarios = [path for path, _ in training_scenarios(curriculum)]
        self.compiled: dict[Path, Scenario] = {}
        self.envs: list[tuple[ClusterEnv, np.ndarray, np.ndarray]] = []
        self.next_seed = TRAIN_SEED_BASE
        self.agent_steps, self.iteration, self.wall_s = 0, 0, 0.0
        self.curves: list[dict[str, float]] = []
        self.student_driven = 0.0
        """The share of the last rollout's ticks the student's own moves drove (DAgger)."""
        self.commit = git_commit()
        """The code this run loaded, read at the start: files edited while it runs do not change what it runs."""

    def _new_env(self) -> tuple[ClusterEnv, np.ndarray, np.ndarray]:
        path = self.scenarios[int(self.rng.integers(len(self.scenarios)))]
        if path not in self.compiled:
            self.compiled[path] = load_scenario(path)
        env = ClusterEnv(self.compiled[path])
        env.set_reward_weights(sample_weights(self.rng, concentration=self.settings.weight_concentration))
        obs, mask = env.reset_arrays(self.next_seed)
        self.next_seed += 1
        return env, obs, mask

    def student_policy(self) -> Policy:
        return Policy(**self.student.export(), reference=self.teacher.reference, provenance={})

    def collect(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """``rollout_ticks`` ticks of every environment: per environment, its observations (T, N, S, F) and masks."""
        s = self.settings
        while len(self.envs) < s.envs:
            self.envs.append(self._new_env())
        share = s.student_share * min(2.0 * self.agent_steps / s.total_agent_steps, 1.0)
        student = self.student_policy()
        batches, student_ticks, ticks = [], 0, 0
        for k in range(len(self.envs)):
            env, obs, mask = self.envs[k]
            observed, masks = [], []
            for _ in range(s.rollout_ticks):
                observed.append(obs.copy())
                masks.append(mask.copy())
                driver = student if self.rng.random() < share else self.teacher
                student_ticks += driver is student
                ticks += 1
                obs, mask, _, _, done = env.step_arrays(driver.act(obs, mask, self.rng))
                self.agent_steps += env.n_nodes
                if done:
                    env, obs, mask = self._new_env()
                    break  # another cluster shape, perhaps: this batch ends here
            self.envs[k] = (env, obs, mask)
            batches.append((np.stack(observed), np.stack(masks)))
        self.student_driven = student_ticks / max(ticks, 1)
        return batches

    def update(self, batches: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
        """Minibatch Adam on the mean KL per agent-tick; also the KL and the greedy agreement on the fresh batch,
        before any step on it (the student has not trained on these ticks yet)."""
        s = self.settings
        tensors = self.label(batches)
        stats = self.agreement(tensors)
        if s.rewrites:
            tensors += self.label(self.rewritten(batches))
        total = sum(obs.shape[0] * obs.shape[1] for obs, _, _ in tensors)
        for _ in range(s.epochs):
            orders = [torch.randperm(obs.shape[0]) for obs, _, _ in tensors]
            for m in range(s.minibatches):
                loss = torch.zeros(())
                for (obs, teacher, allowed), order in zip(tensors, orders, strict=True):
                    idx = order[m :: s.minibatches]
                    if len(idx):
                        kl = masked_kl(self.student(obs[idx]), teacher[idx], allowed[idx]).sum(-1)
                        loss = loss + kl.sum() / (total / s.minibatches)
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
        return stats

    def rewritten(self, batches: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """The same ticks under other weights: per batch, one reward component's weight scaled by a factor between
        1/4 and 4 (log-uniform), capped as the observer caps it; the masks do not depend on the weights."""
        rewritten = []
        for obs, masks in batches:
            other = obs.copy()
            column = WEIGHT_COLUMNS.start + int(self.rng.integers(len(REWARD_COMPONENTS)))
            other[..., column] = np.minimum(other[..., column] * np.exp(self.rng.uniform(-np.log(4.0), np.log(4.0))), 10.0)
            rewritten.append((other, masks))
        return rewritten

    def label(self, batches: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(observations, masks) -> (observations, the teacher's logits, allowed choices (T, N, S + 2, 4)) tensors."""
        tensors = []
        for obs, masks in batches:
            shape = (*obs.shape[:-2], obs.shape[-2] + 2, SCALE_CHOICES)
            tensors.append((torch.from_numpy(obs), torch.from_numpy(self.teacher.logits(obs)), torch.from_numpy(masks).view(shape).bool()))
        return tensors

    def agreement(self, tensors: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> dict[str, float]:
        """The student against the teacher on labelled ticks: the mean KL per agent-tick (summed over its action
        dimensions) and, per head, how often the most likely allowed choice is the teacher's."""
        kl_sum, agents, same, dims = 0.0, 0, np.zeros(3), np.zeros(3)
        with torch.no_grad():
            for obs, teacher, allowed in tensors:
                student = self.student(obs)
                kl_sum += float(masked_kl(student, teacher, allowed).sum())
                agents += obs.shape[0] * obs.shape[1]
                never = torch.full_like(student, -torch.inf)
                choice_s = torch.where(allowed, student, never).argmax(-1)
                choice_t = torch.where(allowed, teacher, never).argmax(-1)
                agree = (choice_s == choice_t).reshape(-1, choice_s.shape[-1]).numpy()
                for head, columns in enumerate((slice(0, -2), slice(-2, -1), slice(-1, None))):
                    same[head] += agree[:, columns].sum()
                    dims[head] += agree[:, columns].size
        rates = same / np.maximum(dims, 1)
        return {"kl_per_agent": kl_sum / max(agents, 1), "agree_scale": rates[0], "agree_offload": rates[1], "agree_power": rates[2]}

    def run(self) -> dict[str, Any]:
        s = self.settings
        s.out.mkdir(parents=True, exist_ok=True)
        torch.set_num_threads(s.threads)
        while self.agent_steps < s.total_agent_steps:
            started = time.perf_counter()
            for group in self.optimizer.param_groups:
                group["lr"] = s.learning_rate * max(1.0 - self.agent_steps / s.total_agent_steps, 0.05)
            before = self.agent_steps
            stats = self.update(self.collect())
            self.iteration += 1
            elapsed = time.perf_counter() - started
            self.wall_s += elapsed
            row = {"iteration": self.iteration, "agent_steps": self.agent_steps, "wall_s": round(self.wall_s, 2),
                   "agent_steps_per_s": round((self.agent_steps - before) / max(elapsed, 1e-9), 1),
                   "student_driven": round(self.student_driven, 4), **stats}  # fmt: skip
            self.curves.append(row)
            if self.progress is not None:
                line = f"KL {stats['kl_per_agent']:.4f}, same greedy choice: scale {stats['agree_scale']:.1%}"
                line += f" offload {stats['agree_offload']:.1%} power {stats['agree_power']:.1%}"
                self.progress(self.agent_steps, s.total_agent_steps, line)
        self.save()
        last = self.curves[-1]
        return {"iterations": self.iteration, "agent_steps": self.agent_steps, "wall_s": round(self.wall_s, 1),
                **{k: round(float(last[k]), 5) for k in ("kl_per_agent", "agree_scale", "agree_offload", "agree_power")},
                "policy": str(s.out / "policy.npz")}  # fmt: skip

    def save(self) -> None:
        s = self.settings
        teacher = {"file": str(s.teacher), "sha256_16": self.teacher_digest, "provenance": self.teacher.provenance}
        last = self.curves[-1] if self.curves else {}
        provenance = {"distilled": {"teacher": teacher, "settings": s.as_dict(), "iterations": self.iteration,
                                    "agent_steps": self.agent_steps, "wall_s": round(self.wall_s, 1),
                                    "last_batch": {k: v for k, v in last.items() if k.startswith(("kl", "agree"))}},
                      "commit": self.commit, "torch": torch.__version__}  # fmt: skip
        save_policy(s.out / "policy.npz", {**self.student.export(), "reference": self.teacher.reference}, provenance)
        write_distill_curves(self.curves, s.out)


def write_distill_curves(rows: list[dict[str, float]], out: Path) -> None:
    """``curves.csv`` (one row per iteration) and ``curves.png``: the KL and the greedy agreement per head."""
    if not rows:
        return
    write_rows_csv(rows, out / "curves.csv")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["agent_steps"] / 1e6 for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].semilogy(steps, [r["kl_per_agent"] for r in rows])
    axes[0].set(title="KL(teacher || student) per agent-tick, fresh ticks", xlabel="agent-steps (millions)")
    for head in ("scale", "offload", "power"):
        axes[1].plot(steps, [100 * r[f"agree_{head}"] for r in rows], label=head)
    axes[1].set(title="Same greedy choice as the teacher (%)", xlabel="agent-steps (millions)")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=100)
    plt.close(fig)
