"""PPO itself, imitation disabled: on a tiny env whose optimal policy is known, the return climbs to the optimum
through PPO updates alone (and does not move when the update is removed); the KL anchor, the critic's warm-up and
per-component reward normalization do what TrainSettings says; rollouts in worker processes and on Ray."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from local_agents.mappo import Actor, Trainer, TrainSettings
from simulators.env import DOWN, HOLD, POWER_HOLD
from tests.local_agents.test_marl import mean_return

IDLE = """\
name: toy-overprovisioned
seed: 5
duration_s: 60
cluster:
  nodes:
    - {prefix: cloud, count: 1, tier: cloud, cpus: 8, mem_gb: 32, price_per_h: 0.4, power_idle_w: 60, power_peak_w: 180, boot_s: 10}
services:
  - {name: api, work_ms: 10, slo_ms: 200, cold_start_s: 2, mem_mb: 512, min_replicas: 1, max_replicas: 32, initial_replicas: 12}
workload:
  - {service: api, type: poisson, rps: 2}
"""
"""One node, twelve replicas for 2 requests a second: every replica above the minimum costs and idles, no move can
help the SLO, so the optimal policy scales down every tick until the minimum, then holds."""

SEEDS = range(50, 53)


def idle(tmp_path: Path) -> Path:
    path = tmp_path / "idle.yaml"
    path.write_text(IDLE)
    return path


def optimal_actor() -> Actor:
    """Scale down whenever allowed, else hold; never offload; never power a node off or on."""
    actor = Actor(32)
    with torch.no_grad():
        for layer, choice in ((actor.scale, DOWN), (actor.offload, 0), (actor.power, POWER_HOLD)):
            layer.weight.zero_()
            layer.bias.zero_()
            layer.bias[choice] = 50.0
        actor.scale.bias[HOLD] = 25.0
    return actor


def ppo_settings(tmp_path: Path, scenario: Path, **changes: object) -> TrainSettings:
    values = dict(
        out=tmp_path / "run", total_agent_steps=8_000, envs=4, rollout_ticks=60, epochs=4, minibatches=2, learning_rate=3e-3,
        scenarios=(str(scenario),), eval_every=0, seed=3, weight_concentration=1e6, teacher="", entropy_coef=0.0,
    )  # fmt: skip
    values.update(changes)
    return TrainSettings(**values)  # type: ignore[arg-type]


def test_ppo_alone_climbs_to_the_known_optimum_and_not_without_its_update(tmp_path: Path) -> None:
    scenario = idle(tmp_path)
    optimum = mean_return(optimal_actor(), scenario, SEEDS)
    trainer = Trainer(ppo_settings(tmp_path, scenario))
    before = mean_return(trainer.actor, scenario, SEEDS)
    trainer.train()
    after = mean_return(trainer.actor, scenario, SEEDS)
    assert optimum - before > 0.05, (before, optimum)  # the untrained actor is far from the optimum
    assert after >= optimum - 0.1 * (optimum - before), (before, after, optimum)
    assert all(row["phase"] == "ppo" for row in trainer.curves if row["kind"] == "iteration")

    frozen = Trainer(ppo_settings(tmp_path / "frozen", scenario))
    frozen.optimizer.step = lambda *args, **kwargs: None  # type: ignore[method-assign]  # the update removed
    frozen.train()
    assert mean_return(frozen.actor, scenario, SEEDS) == pytest.approx(before)


def test_the_kl_anchor_holds_ppo_near_where_it_started(tmp_path: Path) -> None:
    scenario = idle(tmp_path)
    free, anchored = Trainer(ppo_settings(tmp_path / "free", scenario)), Trainer(ppo_settings(tmp_path / "kl", scenario, kl_coef=20.0))
    start = mean_return(anchored.actor, scenario, SEEDS)
    free.train()
    anchored.train()
    kl = [row["reference_kl"] for row in anchored.curves if row["kind"] == "iteration"]
    assert 0 < max(kl) < 0.05  # measured, and small: the anchor holds
    moved_free = mean_return(free.actor, scenario, SEEDS) - start
    moved_anchored = mean_return(anchored.actor, scenario, SEEDS) - start
    assert moved_anchored < 0.5 * moved_free, (moved_anchored, moved_free)


def test_the_kl_weight_anneals_from_its_start_to_its_end(tmp_path: Path) -> None:
    trainer = Trainer(ppo_settings(tmp_path, idle(tmp_path), kl_coef=1.0, kl_final=0.2, kl_anneal_agent_steps=1000))
    assert trainer.kl_weight() == 1.0
    trainer.agent_steps = 500
    assert trainer.kl_weight() == pytest.approx(0.6)
    trainer.agent_steps = 5000
    assert trainer.kl_weight() == pytest.approx(0.2)


def test_the_critic_warms_up_while_the_actor_stays_as_it_was(tmp_path: Path) -> None:
    settings = ppo_settings(tmp_path, idle(tmp_path), total_agent_steps=480, value_warmup_iterations=5)
    trainer = Trainer(settings)
    actor_before = {k: v.clone() for k, v in trainer.actor.state_dict().items()}
    critic_before = {k: v.clone() for k, v in trainer.critic.state_dict().items()}
    trainer.train()
    assert all(torch.equal(actor_before[k], v) for k, v in trainer.actor.state_dict().items())
    assert not all(torch.equal(critic_before[k], v) for k, v in trainer.critic.state_dict().items())
    assert [row["value_warmup"] for row in trainer.curves if row["kind"] == "iteration"] == [1.0, 1.0]


def test_normalized_terms_are_divided_by_their_running_spread(tmp_path: Path) -> None:
    trainer = Trainer(ppo_settings(tmp_path, idle(tmp_path), total_agent_steps=240, normalize_terms=True))
    trainer.train()
    assert trainer.term_norm.count > 200
    assert np.all(trainer.term_norm.scale > 0) and not np.allclose(trainer.term_norm.scale, 1.0)


def test_rollouts_in_worker_processes_use_every_worker_and_never_repeat_a_seed(tmp_path: Path) -> None:
    scenario = idle(tmp_path)
    trainer = Trainer(ppo_settings(tmp_path, scenario, workers=2, total_agent_steps=480, rollout_ticks=30))
    trainer.train()
    assert trainer.agent_steps >= 480
    seeds = [state.next_seed for state in trainer.worker_states]
    assert len(seeds) == 2 and seeds[0] % 2 != seeds[1] % 2  # worker k's seeds are k, k + 2, ... past the base
    resumed = Trainer.resume(tmp_path / "run" / "checkpoint.pt", total_agent_steps=720)
    assert [s.next_seed for s in resumed.worker_states] == seeds
    resumed.train()
    assert resumed.agent_steps >= 720
    one = Trainer.resume(tmp_path / "run" / "checkpoint.pt", total_agent_steps=960, workers=1)  # another worker count
    last = max(s.next_seed for s in resumed.worker_states)
    one.train()
    assert len(one.worker_states) == 1 and one.worker_states[0].next_seed > last  # no seed used before runs again


def test_rollouts_on_a_local_ray_instance(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    scenario = idle(tmp_path)
    trainer = Trainer(ppo_settings(tmp_path, scenario, workers=2, total_agent_steps=240, rollout_ticks=30, ray_address="local"))
    try:
        trainer.train()
    finally:
        ray.shutdown()
    assert trainer.agent_steps >= 240 and len(trainer.worker_states) == 2
    assert (tmp_path / "run" / "policy.npz").exists()


def test_behind_the_shield_a_refused_scale_down_is_a_hold(tmp_path: Path) -> None:
    from local_agents.rollouts import shielded
    from local_agents.shield import Shield
    from simulators.env import ClusterEnv
    from simulators.scenarios import load_scenario

    env = ClusterEnv(load_scenario(idle(tmp_path)))
    env.reset_arrays(1)
    down = np.full((env.n_nodes, env.n_services + 2), DOWN, np.int64)
    down[:, -2:] = 0, POWER_HOLD
    shield = Shield()
    first = shielded(env, shield, down)  # before the first tick nothing is known of the work: every scale-down refused
    assert (first[:, : env.n_services] == HOLD).all() and shield.counts.shielded["backlog"] == env.n_nodes * env.n_services
    for _ in range(30):
        env.step_arrays(shielded(env, shield, down))
    assert env.cluster.replicas().sum() < 12  # once the shield has seen the idle work, the scale-downs go through


def test_a_training_run_behind_the_shield(tmp_path: Path) -> None:
    trainer = Trainer(ppo_settings(tmp_path, idle(tmp_path), total_agent_steps=240, shield=True))
    trainer.train()
    assert trainer.agent_steps >= 240 and (tmp_path / "run" / "policy.npz").exists()


def test_training_runs_are_compared_in_one_plot_and_a_missing_run_is_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    for name, rate in (("a", 0.10), ("b", 0.20)):
        (tmp_path / name).mkdir()
        lines = ["agent_steps,eval_violation_rate,eval_cost_vs_hpa"] + [f"{k * 1000},{rate + k / 100},{1 - k / 100}" for k in range(1, 4)]
        (tmp_path / name / "curves.csv").write_text("\n".join(lines) + "\n")
    argv = [sys.executable, "-m", "local_agents.mappo", "--compare", f"a={tmp_path / 'a'}", f"b={tmp_path / 'b'}", "--start", "0.1,1.0",
            "--out", str(tmp_path / "runs.png")]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "runs.png").stat().st_size > 1000
    argv[5] = f"b={tmp_path / 'missing'}"
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "no readable curves.csv" in out.stderr.strip().splitlines()[-1]


def test_training_can_name_a_suite_and_a_generated_validation_scenario_to_evaluate_on(tmp_path: Path) -> None:
    from local_agents.mappo import eval_scenario_path, training_scenarios
    from simulators.errors import ConfigError
    from simulators.scenarios import scenario_files

    found = training_scenarios(TrainSettings(out=tmp_path, suite="smoke", max_train_nodes=10_000))
    assert sorted(p for p, _ in found) == sorted(scenario_files("smoke"))
    with pytest.raises(ConfigError, match=r"gen-validation-99999999\.yaml: not in the generated validation split"):
        eval_scenario_path("gen-validation-99999999.yaml")
