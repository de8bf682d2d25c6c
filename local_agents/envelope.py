"""What the node agents' policy saw in training, feature by feature: the [low, high] envelope of every observation
feature over the training curriculum, and the out-of-distribution test against it. ``python -m local_agents.envelope``
computes a policy's envelope and writes it next to the policy (``default.npz`` -> ``default-envelope.json``, with its
provenance); the MARL controller (local_agents.marl) loads it and, every tick, sends the nodes whose observation
leaves it to the node rule.

How the envelope is made: the policy's training curriculum (local_agents.mappo.training_scenarios: every shipped
scenario of at most 50 nodes, as the scenario folder was at the commit the policy records: a scenario added since is
one it never saw; plus the scenarios its own training settings name, for a policy trained or fine-tuned on others,
e.g. the generated training split), each run to its end at training seeds (mappo.TRAIN_SEED_BASE + k) with reward weights
drawn per episode as the distiller drew them (a Dirichlet of concentration 5 around the defaults), driven by the
policy itself (sampling, as it drove its own DAgger ticks) and by the node rule (the teacher of the first
imitation); every observation row of every node on every tick counts. The reward weights' columns are widened
to what the distiller also trained on: each weight times 1/4 to 4 (a manager's rewrite of one component), capped at
10 as the observer caps it.

Two kinds of feature, two answers:

- What the node *is* — the service's SLO, cold-start time and work per request, the node's tier and price, the
  counts of replicas it holds and has room for (``CLAMPED_FEATURES``) — is clamped into the envelope before the
  policy reads it: a 10-minute SLO reads as the most lenient SLO training saw, room for 40 more replicas as the most
  room. These describe the deployment, not a state the policy's judgement was never tested in, and sending every
  node of a large or lenient deployment to the node rule throws the policy away where it does well (on the
  standard suite it sent 82-100% of the node-ticks of three scenarios to the rule).
- What the node is *going through* — backlog, load, latency, violations, drops, utilization, slowdown, added network
  latency, the reward weights — is checked: a node is out of distribution when any of these features of any of its
  rows leaves [low - m, high + m], m = ``margin`` times the feature's range plus ``floor`` (a feature that never moved
  in training gets the floor alone), and the node rule decides for it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from local_agents.act import DEFAULT_POLICY, WEIGHT_COLUMNS, Policy, PolicyError, file_digest, load_policy, single_threaded_blas
from simulators.env import N_FEATURES, OBS_FEATURES

ENVELOPE_FORMAT = "ama-marl-envelope/1"
CLAMPED_FEATURES = (
    "cell_warm", "cell_booting", "cell_room", "svc_slo", "svc_cold_start", "svc_work", "node_cloud", "node_on", "node_price",
)  # fmt: skip
"""Features of what a node is (not of what it is going through): clamped into the envelope, never a reason to fall back."""
REWRITE_FACTOR = 4.0
"""The distiller's largest rewrite of one weight (x1/4 .. x4)."""


def envelope_path(policy_path: Path) -> Path:
    """Where a policy's envelope lives: ``policies/default.npz`` -> ``policies/default-envelope.json``."""
    return policy_path.with_name(f"{policy_path.stem}-envelope.json")


@dataclass(frozen=True)
class OutOfDistribution:
    """This tick's nodes outside the envelope and, for each, its worst feature: where, its value and its bounds."""

    nodes: np.ndarray
    """Node indices (K,)."""
    services: np.ndarray
    """(K,): the service row of the worst feature."""
    features: np.ndarray
    """(K,): the index of the worst feature in OBS_FEATURES."""
    values: np.ndarray
    """(K,): that feature's value."""


@dataclass
class Envelope:
    low: np.ndarray
    high: np.ndarray
    provenance: dict[str, Any]
    margin: float = 0.1
    floor: float = 0.01

    def __post_init__(self) -> None:
        slack = self.margin * (self.high - self.low) + self.floor
        clamped = np.isin(np.array(OBS_FEATURES), CLAMPED_FEATURES)
        self.clamped = np.flatnonzero(clamped)
        self.lower = np.where(clamped, -np.inf, self.low - slack).astype(np.float32)
        self.upper = np.where(clamped, np.inf, self.high + slack).astype(np.float32)
        self.scale = (self.high - self.low + self.floor).astype(np.float32)
        self._clamp_low = self.low[self.clamped].astype(np.float32)
        self._clamp_high = self.high[self.clamped].astype(np.float32)

    def clamp(self, obs: np.ndarray) -> np.ndarray:
        """Observations (N, S, F) with the CLAMPED_FEATURES clipped into what training saw: ``obs`` itself when
        nothing is outside, else a clipped copy (the original stays as observed, for the explanations)."""
        part = obs[..., self.clamped]
        if ((part >= self._clamp_low) & (part <= self._clamp_high)).all():
            return obs
        clipped = obs.copy()
        clipped[..., self.clamped] = np.clip(part, self._clamp_low, self._clamp_high)
        return clipped

    def check(self, obs: np.ndarray) -> OutOfDistribution:
        """Observations (N, S, F) -> the nodes outside the envelope on a checked feature (any but CLAMPED_FEATURES),
        with each one's worst feature (the one farthest out, in units of its training range)."""
        outside = ((obs < self.lower) | (obs > self.upper)).any(axis=2).any(axis=1)
        nodes = np.flatnonzero(outside)
        if nodes.size == 0:
            empty = np.zeros(0, np.int64)
            return OutOfDistribution(empty, empty, empty, np.zeros(0, np.float32))
        rows = obs[nodes]
        excess = np.maximum(rows - self.upper, self.lower - rows) / self.scale  # (K, S, F)
        worst = excess.reshape(nodes.size, -1).argmax(axis=1)
        services, features = np.divmod(worst, N_FEATURES)
        return OutOfDistribution(nodes, services, features, rows[np.arange(nodes.size), services, features])

    def to_json(self) -> dict[str, Any]:
        return {
            "format": ENVELOPE_FORMAT,
            "features": {name: [float(lo), float(hi)] for name, lo, hi in zip(OBS_FEATURES, self.low, self.high, strict=True)},
            **self.provenance,
        }


def load_envelope(path: Path, policy: Policy | None = None, margin: float = 0.1) -> Envelope:
    """The envelope at ``path``; PolicyError naming the file when it is missing, malformed, for other features, or
    (given ``policy``, loaded from a file) made for another policy file."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise PolicyError(f"{path}: no such envelope file (python -m local_agents.envelope writes it)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise PolicyError(f"{path}: unreadable envelope ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or data.get("format") != ENVELOPE_FORMAT:
        raise PolicyError(f"{path}: not an envelope of format {ENVELOPE_FORMAT!r}")
    features = data.get("features")
    if not isinstance(features, dict) or list(features) != list(OBS_FEATURES):
        raise PolicyError(f"{path}: made for other observation features; rerun python -m local_agents.envelope")
    if policy is not None and policy.path is not None and data.get("policy_sha256_16") != file_digest(policy.path):
        rerun = f"python -m local_agents.envelope --policy {policy.path}"
        raise PolicyError(f"{path}: made for another policy than {policy.path}; rerun {rerun}")
    bounds = np.array(list(features.values()), dtype=np.float64)
    provenance = {k: v for k, v in data.items() if k not in ("format", "features")}
    return Envelope(bounds[:, 0], bounds[:, 1], provenance, margin=margin)


# ---------------------------------------------------------------------------------------------- making one
def compute_envelope(
    policy_path: Path, episodes: int = 2, rule_episodes: int = 1, max_ticks: int | None = None, progress: Any = None
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(low (F,), high (F,), provenance) over the training curriculum: per scenario ``episodes`` episodes driven by the
    policy (sampling) and ``rule_episodes`` by the node rule, seeds TRAIN_SEED_BASE + k, each to its end (or
    ``max_ticks``)."""
    from local_agents.distill import DistillSettings
    from local_agents.mappo import TRAIN_SEED_BASE, TrainSettings, git_commit, training_scenarios
    from local_agents.node_rule import NodeRuleSettings, node_rule_actions
    from simulators.env import ClusterEnv
    from simulators.rewards import sample_weights
    from simulators.scenarios import REPO_ROOT, load_scenario

    policy = load_policy(policy_path)
    commit = git_commit()
    trained_at = str(policy.provenance.get("commit", "")).removesuffix("+uncommitted")
    names = scenarios_at(trained_at, REPO_ROOT)
    trained_on = tuple((policy.provenance.get("settings") or {}).get("scenarios") or ())
    if trained_on:  # a policy trained (or fine-tuned) on its own scenarios, e.g. the generated training split
        shipped = names or tuple(path.name for path in sorted((REPO_ROOT / "evals" / "scenarios").glob("*.yaml")))
        names = tuple(dict.fromkeys((*shipped, *trained_on)))
    concentration = DistillSettings(teacher=policy_path).weight_concentration
    low, high = np.full(N_FEATURES, np.inf), np.full(N_FEATURES, -np.inf)
    rng = np.random.default_rng(0)
    rule = NodeRuleSettings()
    scenarios, ticks, node_ticks = [], 0, 0
    for path, _ in training_scenarios(TrainSettings(scenarios=names)):
        scenario = load_scenario(path)
        for k in range(episodes + rule_episodes):
            env = ClusterEnv(scenario, seed=TRAIN_SEED_BASE + k, max_ticks=max_ticks)
            env.set_reward_weights(sample_weights(rng, concentration=concentration))
            obs, mask = env.reset_arrays(TRAIN_SEED_BASE + k)
            done = False
            while True:
                rows = obs.reshape(-1, N_FEATURES)
                np.minimum(low, rows.min(axis=0), out=low)
                np.maximum(high, rows.max(axis=0), out=high)
                ticks += 1
                node_ticks += env.n_nodes
                if done:
                    break
                by_policy = k < episodes
                actions = policy.act(obs, mask, rng) if by_policy else node_rule_actions(obs, env.observer.codes, rng, rule)
                obs, mask, _, _, done = env.step_arrays(actions)
        scenarios.append(str(path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path))
        if progress is not None:
            progress(f"{path.name}: {ticks} ticks so far")
    low[WEIGHT_COLUMNS] /= REWRITE_FACTOR
    high[WEIGHT_COLUMNS] = np.minimum(high[WEIGHT_COLUMNS] * REWRITE_FACTOR, 10.0)
    provenance = {
        "policy": str(policy_path.relative_to(REPO_ROOT) if policy_path.is_relative_to(REPO_ROOT) else policy_path),
        "policy_sha256_16": file_digest(policy_path),
        "commit": commit,
        "scenarios": scenarios,
        "scenarios_from": f"the shipped scenarios of at most 50 nodes at the policy's commit {trained_at[:12] or '(none: this tree)'}"
        + (f", and the {len(trained_on)} scenarios its training settings name" if trained_on else ""),
        "seeds": [TRAIN_SEED_BASE + k for k in range(episodes + rule_episodes)],
        "drivers": {"policy (sampled)": episodes, "node-rule": rule_episodes},
        "weight_concentration": concentration,
        "weight_rewrites": f"weight columns widened x1/{REWRITE_FACTOR:g} .. x{REWRITE_FACTOR:g} (capped at 10), as in distillation",
        "max_ticks": max_ticks,
        "ticks": ticks,
        "node_ticks": node_ticks,
    }
    return low, high, provenance


def scenarios_at(commit: str, repo: Path) -> tuple[str, ...]:
    """The scenario files under evals/scenarios at ``commit`` (names; read from this tree); () (every file here)
    without a commit or git."""
    if not commit:
        return ()
    try:
        command = ["git", "ls-tree", "--name-only", commit, "evals/scenarios/"]
        out = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=10)
    except OSError:
        return ()
    if out.returncode != 0:
        return ()
    return tuple(Path(line).name for line in out.stdout.split() if line.endswith(".yaml"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Compute a MARL policy's training envelope (per-feature [low, high] over the training curriculum) and write it "
        "next to the policy as NAME-envelope.json."
    )
    parser.add_argument("--policy", type=Path, default=DEFAULT_POLICY, help="policy .npz (default: the shipped one)")
    parser.add_argument("--episodes", type=int, default=2, help="episodes per scenario driven by the policy (default: %(default)s)")
    parser.add_argument("--rule-episodes", type=int, default=1, help="episodes per scenario driven by the node rule (default: %(default)s)")
    parser.add_argument("--max-ticks", type=int, default=None, help="cut each episode to this many ticks (default: to its end)")
    parser.add_argument("--out", type=Path, default=None, help="where to write it (default: next to the policy)")
    args = parser.parse_args(argv)
    single_threaded_blas()
    started = time.perf_counter()
    policy_path = args.policy.resolve()
    low, high, provenance = compute_envelope(
        policy_path, args.episodes, args.rule_episodes, args.max_ticks, progress=lambda line: print(line, file=sys.stderr)
    )
    options = f" --episodes {args.episodes} --rule-episodes {args.rule_episodes}"
    options += f" --max-ticks {args.max_ticks}" if args.max_ticks else ""
    provenance = {"command": f"python -m local_agents.envelope --policy {provenance['policy']}{options}", **provenance}
    provenance["wall_s"] = round(time.perf_counter() - started, 1)
    out = args.out or envelope_path(policy_path)
    out.write_text(json.dumps(Envelope(low, high, provenance).to_json(), indent=2) + "\n")
    print(json.dumps({"envelope": str(out), "ticks": provenance["ticks"], "wall_s": provenance["wall_s"]}))


if __name__ == "__main__":
    main()
