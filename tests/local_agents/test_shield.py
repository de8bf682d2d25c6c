"""The MARL controller's safety layers on real clusters: the shield (local_agents.shield) never lets a starting replica
be stopped, keeps capacity a backlog needs and bounds flapping; the out-of-distribution guard (local_agents.envelope)
hands a node outside the training envelope to the node rule and says so; every explanation is in operator units; the
registry's switches turn each layer off; the shipped envelope records how it was made."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from local_agents.act import DEFAULT_POLICY, PolicyError, file_digest, load_policy
from local_agents.envelope import ENVELOPE_FORMAT, envelope_path, load_envelope
from local_agents.marl import MarlController
from local_agents.node_rule import NodeRuleSettings, node_rule_actions
from local_agents.registry import make_controller
from local_agents.shield import Shield
from simulators.cluster import Cluster
from simulators.env import OBS_FEATURES, OFFLOAD_LEVELS
from simulators.errors import ConfigError
from simulators.rewards import RewardWeights
from simulators.scenarios import SCENARIO_DIR, load_scenario, traces_dir

BURST = """\
name: burst
seed: 3
duration_s: 240
cluster:
  nodes:
    - {prefix: cloud, count: 4, tier: cloud, cpus: 16, mem_gb: 64, price_per_h: 0.4, power_idle_w: 60, power_peak_w: 180, boot_s: 10}
services:
  - {name: api, work_ms: 40, slo_ms: 200, cold_start_s: 20, mem_mb: 512, min_replicas: 1, max_replicas: 48, initial_replicas: 4}
workload:
  - {service: api, type: poisson, rps: 60}
events:
  - {at_s: 60, type: traffic_spike, service: api, factor: 12, duration_s: 20}
"""
STRAGGLER = "  - {at_s: 30, type: straggler, node: cloud-2, slowdown: 40, duration_s: 120}\n"
"""cloud-2 at 1/40 of its speed (the observation caps a slowdown at 11x): training's stragglers were at most 4x slower."""

UNITS = ("replica", "req/s", " ms", "% of SLO", "% of capacity", "% of normal", "$/h", " s;", " s)", " s,", " s outside")
DRIVER_UNIT = re.compile(r"\d(%| s\b| ms\b| replicas?\b| req/s)|\$\d+\.\d\d/h|weight \d|: (yes|no), 0 warm replicas")
"""A quantity said to drive a move: a number with its unit (a reward weight is a bare number, a state yes or no)."""


def scenario_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "burst.yaml"
    path.write_text(text)
    return path


def run(
    path: Path, params: dict[str, str], seed: int, weights: RewardWeights | None = None, duration_s: float | None = None
) -> tuple[MarlController, list, float, list]:
    """The MARL controller through a whole scenario: (controller, every reason, booting replicas stopped, moves as
    (time, node, service, direction) read off the decisions' targets)."""
    cluster = load_scenario(path, seed=seed, duration_s=duration_s).make_cluster()
    controller = make_controller("marl", params, seed=seed)
    assert isinstance(controller, MarlController)
    if weights is not None:
        controller.set_weights(weights)
    controller.reset(cluster)
    reasons, stopped, moves = [], 0.0, []
    for _ in range(cluster.horizon):
        before = cluster.replicas()
        decision = controller.act(cluster)
        reasons += decision.reasons
        if decision.targets is not None:
            moves += [(cluster.time_s, i, j, int(np.sign(decision.targets[i, j] - before[i, j])))
                      for i, j in zip(*np.nonzero(decision.targets != before), strict=True)]  # fmt: skip
        booting, ready = cluster.booting.copy(), cluster.pending[cluster.t % cluster.ring_len].copy()
        decision.apply(cluster)
        stopped += float(np.maximum(booting - ready - cluster.booting, 0.0).sum())  # booting falls only by becoming warm
    return controller, reasons, stopped, moves


def undone_within(moves: list, seconds: float = 10.0) -> int:
    """Moves that reverse their cell's previous move within ``seconds``."""
    last: dict[tuple[int, int], tuple[float, int]] = {}
    undone = 0
    for t, i, j, direction in moves:
        previous = last.get((i, j))
        undone += previous is not None and previous[1] == -direction and t - previous[0] <= seconds
        last[(i, j)] = (t, direction)
    return undone


def test_a_starting_replica_is_never_stopped_and_without_the_shield_some_are(tmp_path: Path) -> None:
    path = scenario_file(tmp_path, BURST)
    unshielded = 0.0
    for seed in (0, 1):
        controller, reasons, stopped, _ = run(path, {"ood": "off"}, seed)
        assert stopped == 0.0
        assert controller.stats.moves.shielded["booting"] > 0  # the policy did ask to stop starting replicas
        kept = [r for r in reasons if r.action == "shield" and "(booting)" in r.text]
        assert kept and all("still starting" in r.text and r.before == r.after for r in kept)
        unshielded += run(path, {"ood": "off", "shield": "off"}, seed)[2]
    assert unshielded > 0


def test_moves_undone_within_10_s_are_at_most_5_percent(tmp_path: Path) -> None:
    """Counted from the decisions' targets here, and by the controller, which counts them with its shield off too."""
    path = scenario_file(tmp_path, BURST)
    for seed in (0, 1):
        controller, _, _, moves = run(path, {}, seed)
        assert len(moves) > 50 and undone_within(moves) <= 0.05 * len(moves)
        assert (controller.stats.moves.moves, controller.stats.moves.undone) == (len(moves), undone_within(moves))
    controller, _, _, moves = run(path, {"shield": "off"}, 0)
    assert undone_within(moves) > 0.05 * len(moves) and controller.stats.moves.undone == undone_within(moves)


def steady(tmp_path: Path, ticks: int) -> Cluster:
    cluster = load_scenario(scenario_file(tmp_path, BURST)).make_cluster()
    for _ in range(ticks):
        cluster.step()
    return cluster


def test_a_scale_down_waits_out_the_hold_down_after_a_scale_up(tmp_path: Path) -> None:
    cluster = steady(tmp_path, 5)
    shield = Shield()
    shield.reset(cluster)
    up = cluster.replicas()
    up[0, 0] += 1
    targets, found = shield.filter(cluster, up)
    assert found == [] and targets is not None
    cluster.step(targets)
    down = cluster.replicas()
    down[0, 0] -= 1
    for t in range(1, 30):  # cold start 20 s, hold-down 20 + 10 s
        targets, found = shield.filter(cluster, down.copy())
        assert targets is None and [cut.rule for cut in found] == ["booting" if t <= 20 else "hold_down"], t
        cluster.step()
    targets, found = shield.filter(cluster, down.copy())
    assert found == [] and targets is not None and targets[0, 0] == down[0, 0]
    assert shield.counts.moves == 2 and shield.counts.undone == 0  # 30 s apart: not undone


def test_a_scale_down_is_refused_while_the_backlog_needs_the_capacity(tmp_path: Path) -> None:
    """Inside the 12x burst the cells queue: no replica may go, with the queue and the work in the reason."""
    cluster = steady(tmp_path, 64)
    assert cluster.queue[0, 0] > 1.0
    shield = Shield()
    shield.reset(cluster)
    down = cluster.replicas()
    down[:, 0] -= 1
    targets, found = shield.filter(cluster, down)
    assert targets is None and len(found) == cluster.n_nodes and {cut.rule for cut in found} == {"backlog"}
    text = shield.text(cluster, found[0])
    assert "requests queued here" in text and f"kept {int(cluster.replicas()[0, 0])} replicas of api on cloud-0" in text


def test_a_node_outside_the_training_envelope_takes_the_node_rules_actions_and_says_so(tmp_path: Path) -> None:
    cluster = load_scenario(scenario_file(tmp_path, BURST + STRAGGLER)).make_cluster()
    controller = MarlController(seed=4, shield=False)
    controller.reset(cluster)
    straggler = cluster.node_names.index("cloud-2")
    reasons, slowed = [], []
    for _ in range(cluster.horizon):
        state = controller.rng.bit_generator.state
        before = cluster.replicas()
        decision = controller.act(cluster)
        reasons += decision.reasons
        if 31 <= cluster.time_s <= 150:  # the slowdown is in the observations from the tick after it began to its last
            slowed += [r for r in decision.reasons if r.node == "cloud-2" and r.action in ("offload", "scale_up", "scale_down")]
            observer = controller.observer
            assert observer is not None
            rng = np.random.default_rng()
            rng.bit_generator.state = state
            controller.policy.act(observer.obs, observer.mask, rng)
            rule = node_rule_actions(observer.obs[[straggler]], observer.codes[[straggler]], rng, NodeRuleSettings())[0]
            assert decision.offload[straggler] == OFFLOAD_LEVELS[rule[-2]] == 0.75  # 1,600 ms of added work time: offload
            targets = before if decision.targets is None else decision.targets
            np.testing.assert_array_equal(targets[straggler] - before[straggler], np.array([-1, 0, 1, 1])[rule[:-2]])
        decision.apply(cluster)
    assert controller.stats.ood_node_ticks >= 120  # that node while it was slowed (others, briefly, with 9 replicas starting)
    notes = [r for r in reasons if r.action == "fallback" and r.node == "cloud-2"]
    assert [(r.before, r.after) for r in notes] == [(0, 1), (1, 0)]
    assert "outside what training saw" in notes[0].text and "node speed 9% of normal" in notes[0].text
    assert "training saw 100% to 25%" in notes[0].text  # speed 1 to 1/4: what the straggler scenarios had
    assert slowed and all("the node rule's move: the node is outside what training saw" in r.text for r in slowed)


def test_without_the_guard_the_policy_keeps_deciding_for_that_node(tmp_path: Path) -> None:
    controller, reasons, _, _ = run(scenario_file(tmp_path, BURST + STRAGGLER), {"ood": "off"}, 4)
    assert controller.envelope is None and controller.stats.ood_node_ticks == 0
    assert not any(r.action == "fallback" or "node rule" in r.text for r in reasons)


@pytest.mark.parametrize("case", ["burst-straggler", "sleeping"])
def test_every_explanation_is_in_operator_units(tmp_path: Path, case: str) -> None:
    """Scale moves, offloads, shielded moves, fallbacks (the burst with a straggler) and nodes put to sleep (the
    energy weight raised): units in every reason and in every quantity said to drive a move, no raw feature name."""
    if case == "sleeping":
        _, reasons, _, _ = run(SCENARIO_DIR / "spike-then-failure.yaml", {}, 3, RewardWeights().replace(energy=0.3), duration_s=120)
        assert any(r.action == "sleep" for r in reasons)
    else:
        _, reasons, _, _ = run(scenario_file(tmp_path, BURST + STRAGGLER), {}, 4)
        assert {"scale_up", "scale_down", "offload", "shield", "fallback"} <= {r.action for r in reasons}
    names = re.compile("|".join(rf"\b{name}\b" for name in OBS_FEATURES))
    for reason in reasons:
        body = re.sub(r"; weights .*$", "", reason.text)  # the weights in force and the move's odds are not its reasons
        body = re.sub(r"sampled by the policy: it gave \S+ a [0-9.]+% chance", "", body)
        assert any(unit in body for unit in UNITS), reason.text
        assert not names.search(reason.text), reason.text
        if "driven by " in reason.text:
            drivers = reason.text.split("driven by ", 1)[1].split("; weights")[0]
            for clause in drivers.split("), "):
                assert DRIVER_UNIT.search(clause.split(" (typically")[0]), clause
        if reason.action in ("scale_up", "scale_down") and "node rule" not in reason.text:
            assert re.search(r"sampled by the policy: it gave (up|down|pre-warm) a [0-9.]+% chance", reason.text), reason.text


def test_the_registry_switches_each_layer_off() -> None:
    default = make_controller("marl")
    assert isinstance(default, MarlController) and default.shield.enabled and default.envelope is not None
    for name, params in (("marl", {"shield": "off"}), ("marl-noshield", {})):
        controller = make_controller(name, params)
        assert isinstance(controller, MarlController) and not controller.shield.enabled and controller.envelope is not None
    for name, params in (("marl", {"ood": "OFF"}), ("marl-noood", {})):
        controller = make_controller(name, params)
        assert isinstance(controller, MarlController) and controller.shield.enabled and controller.envelope is None
    with pytest.raises(ConfigError, match="shield must be on or off"):
        make_controller("marl", {"shield": "maybe"})
    with pytest.raises(ConfigError, match="unknown parameters guard"):
        make_controller("marl", {"guard": "off"})


def test_the_shipped_envelope_is_the_shipped_policys_and_records_how_it_was_made() -> None:
    path = envelope_path(DEFAULT_POLICY)
    data = json.loads(path.read_text())
    assert data["format"] == ENVELOPE_FORMAT and list(data["features"]) == list(OBS_FEATURES)
    assert data["policy_sha256_16"] == file_digest(DEFAULT_POLICY)
    assert data["command"].startswith("python -m local_agents.envelope") and data["commit"] and data["ticks"] > 10_000
    assert data["scenarios"] and all((SCENARIO_DIR.parent.parent / s).exists() for s in data["scenarios"])
    envelope = load_envelope(path, load_policy())
    assert (envelope.low <= envelope.high).all()
    controller, _, _, _ = run(SCENARIO_DIR / "traffic-spike-small.yaml", {}, 1000)  # a training scenario at a training seed
    assert controller.stats.ood_node_ticks == 0


def test_an_envelope_made_for_another_policy_is_refused(tmp_path: Path) -> None:
    with np.load(DEFAULT_POLICY) as data:
        arrays = {k: data[k] for k in data.files}
    other = tmp_path / "other.npz"
    np.savez(other, **{**arrays, "b1": arrays["b1"] + 1.0})
    assert MarlController(other).envelope is None  # no envelope next to it: it acts unguarded
    with pytest.raises(PolicyError, match="made for another policy"):
        MarlController(other, envelope=envelope_path(DEFAULT_POLICY))
    (broken := tmp_path / "broken-envelope.json").write_text('{"format": "something"}')
    with pytest.raises(PolicyError, match="not an envelope"):
        load_envelope(broken)


def test_the_envelope_command_runs_with_a_tiny_budget(tmp_path: Path) -> None:
    if not traces_dir().is_dir():
        pytest.skip(f"shared traces not found at {traces_dir()} (the curriculum replays them)")
    out = tmp_path / "envelope.json"
    done = subprocess.run(
        [sys.executable, "-m", "local_agents.envelope", "--max-ticks", "3", "--episodes", "1", "--rule-episodes", "0", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    envelope = load_envelope(out, load_policy())
    assert envelope.provenance["max_ticks"] == 3 and "--max-ticks 3" in envelope.provenance["command"]
    assert envelope.provenance["ticks"] == 4 * len(envelope.provenance["scenarios"])  # 3 steps and the first observation


def test_what_a_node_is_is_clamped_and_what_it_goes_through_is_checked() -> None:
    """A 10-minute SLO or room for 40 replicas is read as the most training saw (no fallback); a slowdown beyond
    anything training saw sends the node to the node rule."""
    from local_agents.envelope import CLAMPED_FEATURES
    from simulators.env import OBS_FEATURES

    envelope = load_envelope(envelope_path(DEFAULT_POLICY), load_policy())
    obs = np.tile(((envelope.low + envelope.high) / 2).astype(np.float32), (3, 2, 1))  # 3 nodes, 2 services
    slo, room, slowdown = (OBS_FEATURES.index(name) for name in ("svc_slo", "cell_room", "node_slowdown"))
    assert {"svc_slo", "cell_room"} <= set(CLAMPED_FEATURES) and "node_slowdown" not in CLAMPED_FEATURES
    assert envelope.clamp(obs) is obs and envelope.check(obs).nodes.size == 0  # inside: nothing to do
    obs[0, 1, slo] = envelope.high[slo] * 100 + 10
    obs[1, 0, room] = envelope.high[room] * 3 + 10
    obs[2, :, slowdown] = envelope.high[slowdown] + 10 * (envelope.high[slowdown] - envelope.low[slowdown]) + 1
    seen = envelope.clamp(obs)
    assert seen is not obs and seen[0, 1, slo] == np.float32(envelope.high[slo]) and seen[1, 0, room] == np.float32(envelope.high[room])
    assert obs[0, 1, slo] > envelope.high[slo]  # the observation itself stays as observed, for the explanations
    np.testing.assert_array_equal(envelope.check(obs).nodes, [2])
