"""The MARL node agents: a tiny training run improves the return on a toy scenario; the shipped policy loads and acts
on every shipped scenario; masked actions are never taken; the manager's weights reach the policy; broken policy
and checkpoint files are one-line errors naming the file; ``ama train`` runs, checkpoints and resumes."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from local_agents.act import DEFAULT_POLICY, Policy, PolicyError, load_policy
from local_agents.mappo import Actor, Trainer, TrainSettings
from local_agents.marl import MarlController
from local_agents.registry import make_controller
from simulators.cluster import NODE_BOOTING
from simulators.env import N_FEATURES, OBS_FEATURES, ClusterEnv, parallel_env
from simulators.errors import ConfigError
from simulators.rewards import RewardWeights, combine
from simulators.scenarios import SCENARIO_DIR, load_scenario, traces_dir

TOY = """\
name: toy-underprovisioned
seed: 7
duration_s: 120
cluster:
  nodes:
    - {prefix: cloud, count: 4, tier: cloud, cpus: 8, mem_gb: 32, price_per_h: 0.4, power_idle_w: 60, power_peak_w: 180, boot_s: 10}
services:
  - {name: api, work_ms: 40, slo_ms: 200, cold_start_s: 2, mem_mb: 512, min_replicas: 1, max_replicas: 32, initial_replicas: 2}
workload:
  - {service: api, type: poisson, rps: 120}
"""


MARL_WHYS = ("driven by", "no single changing quantity stood out", "shield (", "outside what training saw", "back within what training saw")
"""What every MARL reason says: the policy's drivers, a shielded move, or the node rule's fallback."""


def toy(tmp_path: Path) -> Path:
    path = tmp_path / "toy.yaml"
    path.write_text(TOY)
    return path


def mean_return(actor: Actor, scenario: Path, seeds: range) -> float:
    """Mean reward per agent-tick of the actor (sampling, as in training) over whole episodes."""
    total, count = 0.0, 0
    generator = torch.Generator().manual_seed(0)
    for seed in seeds:
        env = ClusterEnv(load_scenario(scenario), seed=seed)
        obs, mask = env.reset_arrays(seed)
        done = False
        while not done:
            with torch.no_grad():
                logits = actor(torch.from_numpy(obs))
                allowed = torch.from_numpy(mask).view(logits.shape).bool()
                probs = torch.softmax(torch.where(allowed, logits, torch.full_like(logits, -1e9)), -1)
                actions = torch.multinomial(probs.reshape(-1, 4), 1, generator=generator).reshape(logits.shape[:-1]).numpy()
            obs, mask, _, terms, done = env.step_arrays(actions)
            total += float(combine(terms, env.weights).sum())
            count += env.n_nodes
    return total / count


@pytest.mark.parametrize("student_share", [0.0, 1.0], ids=["cloning", "dagger"])
def test_a_tiny_training_run_improves_the_return_on_a_toy_scenario(tmp_path: Path, student_share: float) -> None:
    """Imitating the node rule, on its trajectories (behaviour cloning) or more and more on the actor's own (DAgger)."""
    scenario = toy(tmp_path)
    settings = TrainSettings(
        out=tmp_path / "run", total_agent_steps=16_000, envs=4, rollout_ticks=60, epochs=4, minibatches=2, learning_rate=3e-3,
        scenarios=(str(scenario),), eval_every=0, seed=3, weight_concentration=1e6, teacher_agent_steps=16_000,
        student_share=student_share,
    )  # fmt: skip
    trainer = Trainer(settings)
    before = mean_return(trainer.actor, scenario, range(50, 53))
    trainer.train()
    after = mean_return(trainer.actor, scenario, range(50, 53))
    assert after > before + 0.02, (before, after)
    assert (tmp_path / "run" / "policy.npz").exists() and (tmp_path / "run" / "curves.csv").exists()


@pytest.mark.parametrize("services", [1, 3, 5])
def test_the_numpy_policy_computes_the_torch_actor(services: int) -> None:
    """The batched path and the one-node path (a node agent deciding for its own node) alike, with heads whose
    weights matter as much as their biases (a fresh actor's heads start near zero), over leading batch axes too."""
    torch.manual_seed(0)
    actor = Actor(16)
    with torch.no_grad():
        for head in (actor.scale, actor.offload, actor.power):
            head.weight.normal_(0.0, 0.5)
    arrays = {**actor.export(), "reference": np.zeros(N_FEATURES, np.float32)}
    policy = Policy(**arrays, provenance={})
    obs = np.random.default_rng(0).uniform(0, 1, size=(5, services, N_FEATURES)).astype(np.float32)
    with torch.no_grad():
        expected = actor(torch.from_numpy(obs)).numpy()
        stacked = np.random.default_rng(1).uniform(0, 1, size=(2, 3, 700, services, N_FEATURES)).astype(np.float32)
        np.testing.assert_allclose(policy.logits(stacked), actor(torch.from_numpy(stacked)).numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(policy.logits(obs), expected, rtol=1e-4, atol=1e-5)
    for node in range(5):
        np.testing.assert_allclose(policy.logits(obs[node : node + 1]), expected[node : node + 1], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(policy.logits(obs[node]), expected[node], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["marl", "node-rule"])
@pytest.mark.parametrize("path", sorted(SCENARIO_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_the_node_agents_act_on_every_shipped_scenario(path: Path, name: str) -> None:
    """The shipped policy (and the node rule it first imitated) on every shipped scenario, with explanations (trace
    replays only where the shared traces are; their readers are tested on small generated files in tests/simulators)."""
    if "traces/" in path.read_text() and not traces_dir().is_dir():
        pytest.skip(f"shared traces not found at {traces_dir()}")
    scenario = load_scenario(path, duration_s=20)
    cluster = scenario.make_cluster()
    controller = make_controller(name)
    controller.reset(cluster)
    for _ in range(cluster.horizon):
        decision = controller.act(cluster)
        if decision.targets is not None:
            assert decision.targets.shape == (cluster.n_nodes, cluster.n_services) and (decision.targets >= 0).all()
        assert decision.offload is not None and ((decision.offload >= 0) & (decision.offload <= 0.75)).all()
        for reason in decision.reasons:
            assert reason.actor == name and (name != "marl" or any(why in reason.text for why in MARL_WHYS)), reason.text
        decision.apply(cluster)


def test_the_shipped_policy_records_how_it_was_made() -> None:
    assert DEFAULT_POLICY.stat().st_size < 5 * 1024 * 1024
    check_recorded(json.loads(DEFAULT_POLICY.with_suffix(".json").read_text()), load_policy().provenance)


def check_recorded(sidecar: dict, header: dict) -> None:
    """The sidecar's record of a policy against the policy file's own header: one training, a mix of two trained
    policies (local_agents.soup), or a distillation of a recorded teacher (local_agents.distill)."""
    assert sidecar["commit"]
    if "distilled" in header:
        assert "ama distill" in sidecar["command"] and sidecar["commit"] == header["commit"]
        assert sidecar["distilled"]["settings"] == header["distilled"]["settings"]
        assert f"git show {sidecar['teacher_file_commit']}:" in sidecar["command"]
        check_recorded(sidecar["teacher"], header["distilled"]["teacher"]["provenance"])
        return
    assert "ama train" in sidecar["command"]
    soup = header.get("soup")
    if soup is None:  # one training
        trainings, headers = [sidecar], [header]
    else:  # both parents recorded, as the file's header says
        assert sidecar["soup_alpha"] == soup["alpha"] and f"--alpha {soup['alpha']}" in sidecar["command"]
        trainings, headers = [sidecar["parent_a"], sidecar["parent_b"]], [p["provenance"] for p in soup["parents"]]
    for record, training in zip(trainings, headers, strict=True):
        assert "ama train" in record["command"] and record["commit"] == training["commit"]
        assert record["settings"] == training["settings"]
        if "base_policy" in record:  # fine-tuned from an earlier policy: how that one was made, too
            base = record["base_policy"]
            assert base["command"].startswith("ama train") and base["commit"] and "settings" in base
            assert f"git show {record['base_policy_file_commit']}:" in record["command"]
        elif record["settings"].get("init_policy"):  # fine-tuned from a shipped file the sidecar's command rebuilds
            assert f"git show {record['init_policy_file_commit']}:" in sidecar["command"]


def test_masked_actions_are_never_taken() -> None:
    policy = load_policy()
    env = parallel_env(SCENARIO_DIR / "spike-then-failure.yaml", max_ticks=200)
    observations, _ = env.reset(seed=5)
    rng = np.random.default_rng(1)
    while env.agents:
        obs = np.stack([observations[a]["observation"] for a in env.agents])
        # the PettingZoo masks (the power row is 3 long) in the policy's layout (rows of 4; the 4th power choice never)
        mask = np.stack([np.concatenate([*observations[a]["action_mask"], [0]]) for a in env.agents])
        actions = policy.act(obs, mask, rng)
        chosen = np.take_along_axis(mask.reshape(*actions.shape, 4), actions[..., None], axis=-1)
        assert chosen.all()
        observations, _, _, _, infos = env.step(dict(zip(env.agents, actions, strict=True)))
        assert all(info["masked_actions"] == 0 for info in infos.values())


def test_greedy_choices_are_argmax_of_the_allowed_logits_with_ties_to_the_lower_choice() -> None:
    """The policy picks its most likely allowed choice with its own comparisons (faster than numpy's argmax over rows
    of 4): ties, -inf and masks must come out as argmax's. Zero weights leave every node with the biases' logits."""
    zeros = {k: np.zeros_like(getattr(load_policy(), k)) for k in ("w1", "b1", "w2", "b2", "w_scale", "w_offload", "w_power")}
    biases = {"b_scale": [0.0, 1.0, 1.0, 1.0], "b_offload": [0.0, 2.0, 2.0, 1.0], "b_power": [0.0, 3.0, -1.0, 3.0]}
    policy = Policy(
        **zeros, **{k: np.array(v, np.float32) for k, v in biases.items()}, reference=np.zeros(N_FEATURES, np.float32), provenance={}
    )
    rng = np.random.default_rng(3)
    for nodes, services in ((1, 2), (64, 3), (1000, 1)):
        obs = rng.uniform(0, 1, size=(nodes, services, N_FEATURES)).astype(np.float32)
        mask = (rng.random((nodes, 4 * (services + 2))) < 0.6).astype(np.int8)
        mask[:, ::4] = 1  # hold, offload 0 and power hold are always allowed
        logits = np.where(mask.reshape(nodes, services + 2, 4) == 1, policy.logits(obs), -np.inf)
        chosen = policy.act(obs, mask)
        np.testing.assert_array_equal(chosen, logits.argmax(axis=-1))
        assert chosen.dtype == np.int64 and len(np.unique(chosen)) > 1
        sampled = policy.act(obs, mask, rng)  # sampled choices, but the power row is still the most likely allowed one
        np.testing.assert_array_equal(sampled[:, -1], logits[:, -1].argmax(axis=-1))
        assert (sampled[:, :-1] != chosen[:, :-1]).any()


def test_each_call_returns_its_own_logits() -> None:
    """The buffers are reused from call to call; what a call returns is not (act changes it in place)."""
    policy, rng = load_policy(), np.random.default_rng(4)
    for nodes in (1, 300):
        first_obs, second_obs = rng.uniform(0, 1, size=(2, nodes, 3, N_FEATURES)).astype(np.float32)
        first = policy.logits(first_obs)
        kept = first.copy()
        policy.logits(second_obs)
        policy.act(second_obs, np.ones((nodes, 20), np.int8), rng)
        np.testing.assert_array_equal(first, kept)


def test_a_weight_rewrite_changes_what_the_policy_sees_and_does() -> None:
    scenario = load_scenario(SCENARIO_DIR / "traffic-spike-small.yaml", duration_s=30)
    cluster = scenario.make_cluster()
    controller = MarlController(seed=0)
    controller.reset(cluster)
    assert controller.observer is not None
    before = controller.policy.logits(controller.observer.obs).copy()
    controller.set_weights(RewardWeights(energy=1.0, sla=0.05, latency=0.05))
    w0 = OBS_FEATURES.index("w_latency")
    np.testing.assert_allclose(controller.observer.obs[0, 0, w0:], RewardWeights(energy=1.0, sla=0.05, latency=0.05).as_array(), rtol=1e-6)
    assert not np.allclose(controller.policy.logits(controller.observer.obs), before)


def write_policy_like(path: Path, **header_changes: object) -> None:
    with np.load(DEFAULT_POLICY) as data:
        arrays = {k: data[k] for k in data.files}
    header = json.loads(str(arrays.pop("header")))
    header.update(header_changes)
    np.savez(path, header=np.array(json.dumps(header)), **arrays)


def test_broken_policy_files_are_one_line_errors_naming_the_file(tmp_path: Path) -> None:
    cases = {}
    cases["missing"] = tmp_path / "nope.npz"
    (garbage := tmp_path / "garbage.npz").write_bytes(b"this is not a zip file at all")
    cases["garbage"] = garbage
    (cut := tmp_path / "cut.npz").write_bytes(DEFAULT_POLICY.read_bytes()[:300])
    cases["truncated"] = cut
    write_policy_like(other := tmp_path / "other.npz", features=["a", "b"])
    cases["other features"] = other
    write_policy_like(future := tmp_path / "future.npz", format="ama-marl-policy/99")
    cases["other format"] = future
    for what, path in cases.items():
        with pytest.raises(PolicyError) as info:
            load_policy(path)
        message = str(info.value)
        assert message.startswith(str(path)) and "\n" not in message, (what, message)


def test_a_broken_checkpoint_cannot_be_resumed(tmp_path: Path) -> None:
    (bad := tmp_path / "checkpoint.pt").write_bytes(b"\x00" * 64)
    with pytest.raises(PolicyError, match=str(bad)):
        Trainer.resume(bad)
    torch.save({"format": "something else"}, other := tmp_path / "other.pt")
    with pytest.raises(PolicyError, match="not an AMA training checkpoint"):
        Trainer.resume(other)


def test_ama_train_runs_checkpoints_and_resumes(tmp_path: Path) -> None:
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"rollout_ticks": 16, "epochs": 1, "minibatches": 1, "scenarios": [str(toy(tmp_path))]}))
    out = tmp_path / "run"
    base = [sys.executable, "-m", "ui.cli", "train"]
    first = subprocess.run(
        [*base, "--out", str(out), "--agent-steps", "200", "--envs", "2", "--eval-every", "0", "--settings", str(settings)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["agent_steps"] >= 200
    for name in ("checkpoint.pt", "policy.npz", "curves.csv", "curves.png"):
        assert (out / name).exists(), name
    second = subprocess.run(
        [*base, "--resume", str(out / "checkpoint.pt"), "--agent-steps", "400"], capture_output=True, text=True, timeout=300
    )
    assert second.returncode == 0, second.stderr
    with (out / "curves.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert int(rows[-1]["agent_steps"]) >= 400 and [int(r["iteration"]) for r in rows] == list(range(1, len(rows) + 1))
    load_policy(out / "policy.npz")
    bad = subprocess.run([*base, "--resume", str(tmp_path / "missing.pt")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "missing.pt: no such checkpoint" in bad.stderr


def test_the_latency_benchmark_runs_with_a_tiny_budget() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "local_agents.act", "--nodes", "1,50", "--repeats", "5", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    row = report["50_nodes"]
    assert row["p99_us"] > 0
    assert len(row["rounds_machine_p99_us"]) == len(row["rounds_p50_us"]) == 5  # a reference for every round


def test_the_latency_references_busy_waits_last_as_long_as_asked() -> None:
    from local_agents.act import busy_wait_times

    times = busy_wait_times(200e-6, 100)
    assert len(times) == 100 and (times >= 200e-6).all()
    assert np.median(times) < 2e-3  # a wait that sleeps or spins too long would be a reference for nothing


def test_the_node_rule_offloads_from_degraded_nodes_and_only_from_them() -> None:
    """Stragglers (4x slower from t=300 s) and a degraded cloud uplink (+150 ms against a 120 ms SLO) send work away,
    each change explained; healthy nodes keep theirs."""
    for stem, degraded in (("straggler-alone", {"cloud-2", "cloud-7", "cloud-11"}), ("network-degradation-cloud", None)):
        scenario = load_scenario(SCENARIO_DIR / f"{stem}.yaml", duration_s=330)
        cluster = scenario.make_cluster()
        controller = make_controller("node-rule")
        controller.reset(cluster)
        explained = set()
        for _ in range(cluster.horizon):
            decision = controller.act(cluster)
            if cluster.time_s < 300:
                assert not decision.offload.any(), f"{stem}: offload before the degradation"
            explained |= {r.node for r in decision.reasons if r.action == "offload" and "added latency" in r.text}
            decision.apply(cluster)
        expected = degraded or {n for n in cluster.node_names if n.startswith("cloud")}
        offloading = {n for n, share in zip(cluster.node_names, cluster.offload, strict=True) if share > 0}
        assert offloading == expected, stem
        assert explained == expected, stem  # every offload change has its reason


def test_model_selection_ranks_by_the_shipping_target() -> None:
    """Meeting the target (at most half HPA's violations at no more than its cost) first, then the fewest violations
    (cost above HPA's counted as violations)."""
    from local_agents.mappo import selection_rank

    def rank(violations: float, cost: float) -> tuple[bool, float]:
        return selection_rank({"eval_violation_rate": violations, "eval_cost_vs_hpa": cost, "hpa_violation_rate": 0.2})

    assert rank(0.09, 0.99) < rank(0.02, 1.01)  # the cheaper one meets the target
    assert rank(0.09, 0.99) < rank(0.15, 0.60)  # cheaper still, but over half HPA's violations
    assert rank(0.03, 0.90) < rank(0.05, 0.70)  # both meet it: fewer violations
    assert rank(0.03, 1.05) < rank(0.10, 1.02)  # neither: violations plus the cost overrun


def power_run(controller_name: str, weights: RewardWeights | None, seconds: float = 120) -> tuple[set[str], list[str]]:
    """Nodes asleep at the end of spike-then-failure's first ``seconds`` (its edge nodes hold no replica) under these
    weights, and the reasons given for sleeping."""
    cluster = load_scenario(SCENARIO_DIR / "spike-then-failure.yaml", duration_s=seconds).make_cluster()
    controller = make_controller(controller_name, seed=3)
    if weights is not None:
        controller.set_weights(weights)
    controller.reset(cluster)
    texts = []
    for _ in range(cluster.horizon):
        decision = controller.act(cluster)
        texts += [r.text for r in decision.reasons if r.action == "sleep"]
        decision.apply(cluster)
    return {n for n, asleep in zip(cluster.node_names, cluster.asleep, strict=True) if asleep}, texts


@pytest.mark.parametrize("name", ["node-rule", "marl"])
def test_empty_nodes_sleep_when_the_energy_weight_rises_and_not_at_the_defaults(name: str) -> None:
    asleep, _ = power_run(name, None)
    assert asleep == set()
    asleep, texts = power_run(name, RewardWeights().replace(energy=0.3))
    assert len(asleep) >= 4 and sum(n.startswith("edge") for n in asleep) >= 4, asleep  # the edge nodes start empty
    assert len(texts) == len(asleep) and all("sleeps" in t for t in texts)


def test_a_sleeping_node_wakes_when_the_load_outgrows_the_nodes_that_are_on() -> None:
    """The node rule at energy x3 on spike-then-failure: its empty edge nodes sleep, and the 4x spike at 600 s wakes them."""
    cluster = load_scenario(SCENARIO_DIR / "spike-then-failure.yaml", duration_s=700).make_cluster()
    controller = make_controller("node-rule", seed=3)
    controller.set_weights(RewardWeights().replace(energy=0.3))
    controller.reset(cluster)
    woken = set()
    for _ in range(cluster.horizon):
        decision = controller.act(cluster)
        waking = [cluster.node_names.index(r.node) for r in decision.reasons if r.action == "wake" and "wakes" in r.text]
        assert not waking or cluster.time_s >= 600
        assert cluster.asleep[waking].all()
        decision.apply(cluster)
        assert (cluster.state[waking] == NODE_BOOTING).all() and not cluster.asleep[waking].any()
        woken |= set(waking)
    assert len(woken) >= 4


def test_a_format_1_policy_loads_and_never_sleeps_a_node(tmp_path: Path) -> None:
    with np.load(DEFAULT_POLICY) as data:
        arrays = {k: data[k] for k in data.files if "power" not in k}
    header = json.loads(str(arrays.pop("header")))
    header["format"] = "ama-marl-policy/1"
    np.savez(old := tmp_path / "old.npz", header=np.array(json.dumps(header)), **arrays)
    policy, current = load_policy(old), load_policy()
    obs = np.random.default_rng(0).uniform(0, 1, size=(64, 2, N_FEATURES)).astype(np.float32)
    logits, reference = policy.logits(obs), current.logits(obs)
    np.testing.assert_allclose(logits[:, :-1], reference[:, :-1], rtol=1e-5, atol=1e-5)  # scale and offload: the same
    assert (logits[:, -1, 0] - logits[:, -1, 1:].max(axis=-1) > 1000).all()  # power: hold, by a margin nothing bridges
    one = policy.logits(obs[:1])  # and on the one-node path
    assert one[0, -1, 0] - one[0, -1, 1:].max() > 1000
    mask, rng = np.ones((64, 4 * 4), np.int8), np.random.default_rng(0)
    assert all((policy.act(obs, mask, rng)[:, -1] == 0).all() for _ in range(50))


def test_training_one_head_leaves_the_others_as_they_were(tmp_path: Path) -> None:
    """``train_heads=("power",)`` from a trained policy: the power head learns, every other weight is the start's."""
    start = load_policy()
    settings = TrainSettings(
        out=tmp_path / "run", total_agent_steps=3_000, envs=2, rollout_ticks=30, epochs=2, minibatches=2, learning_rate=3e-2,
        scenarios=(str(SCENARIO_DIR / "spike-then-failure.yaml"),), eval_every=0, seed=3, teacher_agent_steps=3_000,
        init_policy=str(DEFAULT_POLICY), train_heads=("power",), hidden=start.hidden,
    )  # fmt: skip
    Trainer(settings).train()
    trained = load_policy(tmp_path / "run" / "policy.npz")
    for name in ("w1", "b1", "w2", "b2", "w_scale", "b_scale", "w_offload", "b_offload"):
        np.testing.assert_array_equal(getattr(trained, name), getattr(start, name), err_msg=name)
    assert not np.array_equal(trained.w_power, start.w_power)
    with pytest.raises(ConfigError, match="unknown actor heads: brain"):
        Trainer(TrainSettings(out=tmp_path / "x", train_heads=("brain",), scenarios=settings.scenarios))


def test_the_power_heads_pressure_inputs_are_the_controllers_pressures() -> None:
    """local_agents.act.log_pressures (matrices, for speed) against simulators.rewards.pressures (the definition)."""
    from local_agents.act import WEIGHT_COLUMNS, log_pressures
    from simulators.rewards import pressures

    rows = np.random.default_rng(0).uniform(0.01, 1.0, size=(200, N_FEATURES)).astype(np.float32)
    energy, service = pressures(rows[:, WEIGHT_COLUMNS].astype(np.float64))
    np.testing.assert_allclose(log_pressures(rows), np.log(np.stack([energy, service], axis=-1)), atol=1e-5)
    defaults = np.zeros((1, N_FEATURES), np.float32)
    defaults[0, WEIGHT_COLUMNS] = RewardWeights().as_array()
    np.testing.assert_allclose(log_pressures(defaults), 0.0, atol=1e-6)
    np.testing.assert_allclose(log_pressures(torch.from_numpy(rows)).numpy(), log_pressures(rows), atol=1e-5)


def test_the_shipped_power_head_sleeps_where_its_teacher_does() -> None:
    """Greedy, the shipped policy's power choice is the node rule's on the node rule's own states, for weights drawn
    wide around the defaults, in every band of energy pressure. ``pytest -s -k power_head_sleeps`` prints the table
    quoted in BENCHMARKS.md."""
    from local_agents.controllers import energy_pressure
    from local_agents.node_rule import NodeRuleSettings, node_rule_actions
    from simulators.env import SLEEP
    from simulators.rewards import sample_weights

    policy, rng = load_policy(), np.random.default_rng(0)
    rows = []
    for stem in ("spike-then-failure", "price-change-alone", "edge-cold-start-storm", "demo-spike-failure", "shop-csv-replay"):
        for k in range(4):
            weights = sample_weights(rng, concentration=5.0)
            env = ClusterEnv(load_scenario(SCENARIO_DIR / f"{stem}.yaml", duration_s=300))
            env.set_reward_weights(weights)
            obs, mask = env.reset_arrays(2000 + k)
            for _ in range(300):
                actions = node_rule_actions(obs, env.observer.codes, rng, NodeRuleSettings())
                logits = np.where(mask.reshape(policy.logits(obs).shape) > 0, policy.logits(obs), -np.inf)
                can_sleep = np.isfinite(logits[:, -1, SLEEP])
                chosen = logits[:, -1].argmax(axis=-1)
                rows += [(energy_pressure(weights), actions[i, -1] == SLEEP, chosen[i] == SLEEP) for i in np.flatnonzero(can_sleep)]
                obs, mask, *_ = env.step_arrays(actions)
    table = np.array(rows, dtype=float)
    print("\nenergy pressure | node-ticks that could sleep | teacher sleeps | policy sleeps (greedy)")
    for low, high in ((0, 0.7), (0.7, 1.3), (1.3, 2.0), (2.0, 3.0), (3.0, np.inf)):
        band = table[(table[:, 0] >= low) & (table[:, 0] < high)]
        if len(band):
            print(f"{low:.1f}-{high:.1f} | {len(band)} | {band[:, 1].mean():.1%} | {band[:, 2].mean():.1%}")
    agreement = (table[:, 1] == table[:, 2]).mean()
    assert len(table) > 1000 and table[:, 1].any() and agreement >= 0.99, agreement
