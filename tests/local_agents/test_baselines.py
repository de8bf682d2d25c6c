"""The baselines on a cluster: HPA, KPA and keep-alive controllers read the simulator and scale as their algorithms
say, with a reason for every change; every controller runs on every shipped scenario."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from local_agents.baselines import HPAController, KeepAliveController, KPAController
from local_agents.hpa import HPASettings
from local_agents.keepalive import FixedKeepAlive, HybridHistogram
from local_agents.registry import controller_names, make_controller
from simulators.cluster import Cluster, ClusterConfig, NodeSpec, ServiceSpec, Workload
from simulators.errors import ConfigError
from simulators.metrics import RunRecorder
from simulators.scenarios import load_scenario, scenario_files, traces_dir

REPO = Path(__file__).resolve().parents[2]


def one_service(arrivals: np.ndarray, **service: object) -> Cluster:
    nodes = tuple(NodeSpec(f"n{i}", cpus=16, mem_gb=64) for i in range(4))
    spec = ServiceSpec("api", **service)  # type: ignore[arg-type]
    return Cluster(ClusterConfig(nodes, (spec,)), Workload(np.asarray(arrivals, dtype=np.float64)[:, None]))


def run(c: Cluster, controller: object, ticks: int | None = None) -> tuple[list[float], list]:
    controller.reset(c)  # type: ignore[attr-defined]
    replicas, reasons = [], []
    for _ in range(ticks or c.horizon):
        decision = controller.act(c)  # type: ignore[attr-defined]
        reasons += decision.reasons
        c.step(decision.targets, decision.offload)
        replicas.append(float(c.per_service(c.replicas())[0]))
    return replicas, reasons


def test_hpa_scales_up_on_cpu_within_kubernetes_limits_and_explains_it() -> None:
    # 4 replicas of 40 ms work; load jumps from 50 to 400 req/s (16 busy cores needed)
    arrivals = np.r_[np.full(30, 50.0), np.full(150, 400.0)]
    replicas, reasons = run(one_service(arrivals, initial_replicas=4, max_replicas=64), HPAController())
    ups = [r for r in reasons if r.action == "scale_up"]
    assert ups, "HPA never scaled up"
    first = ups[0]
    assert "cpu" in first.text and "target 70%" in first.text and f"{first.before} -> {first.after}" in first.text
    # each sync may at most double or add 4 (max of the two policies), and syncs are 15 s apart
    steps = [(r.before, r.after) for r in ups]
    assert all(after <= max(before + 4, 2 * before) for before, after in steps)
    assert replicas[-1] >= 22  # 16 busy cores at a 70% target
    assert replicas[-1] <= 46  # backlog keeps CPU saturated for a while, so HPA overshoots, but not without bound


def test_hpa_waits_out_the_scale_down_stabilization_window() -> None:
    arrivals = np.r_[np.full(60, 400.0), np.full(400, 20.0)]
    replicas, reasons = run(one_service(arrivals, initial_replicas=24, max_replicas=64), HPAController())
    downs = [i for i, r in enumerate(replicas[60:]) if r < replicas[59]]
    assert downs, "HPA never scaled down"
    assert downs[0] >= 285  # 300 s window of recommendations (synced every 15 s) after the load dropped
    assert any(r.action == "scale_down" for r in reasons)


def test_hpa_parameters_are_validated() -> None:
    with pytest.raises(ConfigError, match="target_utilization"):
        make_controller("hpa", {"target_utilization": "1.5"})
    with pytest.raises(ConfigError, match="sync_period_s"):
        make_controller("hpa", {"sync_period_s": "-5"})
    assert isinstance(make_controller("hpa", {"target_utilization": "0.5"}), HPAController)
    assert HPASettings.from_params({"target_utilization": "0.5"}).target_pct == 50


def test_kpa_panics_on_a_burst_and_scales_to_zero_when_idle() -> None:
    arrivals = np.r_[np.full(20, 10.0), np.full(40, 300.0), np.zeros(200)]
    c = one_service(arrivals, initial_replicas=1, min_replicas=0, max_replicas=64, cold_start_s=2)
    replicas, reasons = run(c, KPAController())
    assert max(replicas) >= 12  # 300 req/s x 40 ms = 12 in flight, target 0.7 per pod
    assert any("panic" in r.text for r in reasons)
    assert replicas[-1] == 0  # no traffic for longer than the stable window plus the grace period
    zero_at = replicas.index(0.0)
    assert zero_at >= 60 + 60  # not before the 60 s stable window saw only zeros


def test_kpa_rejects_invalid_windows() -> None:
    with pytest.raises(ConfigError, match="stable_window_s"):
        make_controller("kpa", {"stable_window_s": "-1"})


def test_fixed_keepalive_keeps_the_pool_then_releases_it() -> None:
    arrivals = np.zeros(900)
    arrivals[10:20] = 5.0  # invoked in minute 0 only
    c = one_service(arrivals, initial_replicas=0, min_replicas=0, cold_start_s=1)
    replicas, reasons = run(c, KeepAliveController(FixedKeepAlive(10)))
    assert replicas[100] >= 1 and replicas[600] >= 1  # loaded through minute 10
    assert replicas[-1] == 0  # released after the keep-alive window
    released = next(i for i in range(30, 900) if replicas[i] == 0)
    assert 600 <= released <= 720
    assert any("keepalive10" in r.text for r in reasons)


def test_hybrid_learns_a_periodic_app_and_prewarms_it() -> None:
    period, ticks = 600, 6000  # one short burst every 10 minutes
    arrivals = np.zeros(ticks)
    for start in range(0, ticks, period):
        arrivals[start : start + 5] = 3.0
    c = one_service(arrivals, initial_replicas=0, min_replicas=0, cold_start_s=2)
    rec = RunRecorder(c)
    ctrl = KeepAliveController(HybridHistogram())
    ctrl.reset(c)
    unloaded_between = prewarmed_before = 0
    texts = []
    for t in range(ticks):
        d = ctrl.act(c)
        texts += [r.text for r in d.reasons]
        c.step(d.targets, d.offload)
        rec.record()
        if t > 3 * period and t % period == 300:
            unloaded_between += c.per_service(c.replicas())[0] == 0
        if t > 3 * period and t % period == period - 1:
            prewarmed_before += c.per_service(c.warm)[0] >= 1
    assert unloaded_between >= 5  # not kept loaded through the idle middle of each period
    assert prewarmed_before >= 5  # but warm again just before the next burst
    assert any("pre-warmed" in text for text in texts)
    assert rec.summary()["cold_starts"] <= 5 * 3  # only while it was still learning the period


def _short(path: Path) -> float:
    return min(300.0, load_scenario(path).spec.duration_s)


@pytest.mark.parametrize("name", ["hpa", "kpa", "keepalive10", "keepalive20", "hybrid", "oracle", "static"])
def test_every_controller_runs_on_every_shipped_scenario(name: str) -> None:
    assert name in controller_names()
    for path in scenario_files():
        if "traces/" in path.read_text() and not traces_dir().is_dir():
            continue
        scenario = load_scenario(path, duration_s=_short(path))
        c = scenario.make_cluster()
        ctrl = make_controller(name, seed=scenario.spec.seed)
        ctrl.reset(c)
        rec = RunRecorder(c)
        for _ in range(c.horizon):
            d = ctrl.act(c)
            for reason in d.reasons:
                assert reason.text and reason.actor == ctrl.name
            c.step(d.targets, d.offload)
            rec.record()
        summary = rec.summary()
        assert 0.0 <= summary["sla_violation_rate"] <= 1.0 and summary["cost"] > 0, (name, path.stem)


def test_cli_runs_a_baseline_and_rejects_bad_controllers(tmp_path: Path) -> None:
    ama = [sys.executable, "-m", "ui.cli", "sim", "--scenario", "evals/scenarios/edge-cold-start-storm.yaml", "--ticks", "60", "--json"]
    ok = subprocess.run(
        [*ama, "--controller", "kpa", "--param", "target_utilization=0.6"], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["controller"] == "kpa"
    for extra, words in (
        (["--controller", "nope"], "unknown controller 'nope'"),
        (["--controller", "hpa", "--param", "target_utilization=1.5"], "target_utilization"),
        (["--controller", "hpa", "--param", "scale_down_stabilization_s=-3"], "scale_down_stabilization_s"),
        (["--controller", "hpa", "--placement", "nearest"], "unknown placement"),
    ):
        bad = subprocess.run([*ama, *extra], capture_output=True, text=True, cwd=REPO, timeout=120)
        assert bad.returncode == 2, (extra, bad.stderr)
        assert len(bad.stderr.strip().splitlines()) == 1 and words in bad.stderr and "Traceback" not in bad.stderr


def test_the_managers_weights_move_the_baselines_knobs() -> None:
    from local_agents.controllers import service_pressure
    from simulators.rewards import RewardWeights

    spike_plan = RewardWeights(latency=0.3, sla=0.6, utilization=0.1, energy=0.05, cost=0.1, churn=0.05)
    assert service_pressure(RewardWeights()) == pytest.approx(1.0)
    assert service_pressure(spike_plan) == pytest.approx(2.1)
    arrivals = np.full(400, 300.0)
    finals = {}
    for weights in (RewardWeights(), spike_plan):
        c = one_service(arrivals, initial_replicas=12, max_replicas=64)
        hpa = HPAController()
        hpa.reset(c)
        hpa.set_weights(weights)
        for _ in range(c.horizon):
            d = hpa.act(c)
            c.step(d.targets, d.offload)
        finals[weights == spike_plan] = float(c.per_service(c.replicas())[0])
        assert hpa.hpas[0].settings.target_utilization == (0.7 if weights == RewardWeights() else 0.48)
    assert finals[True] > finals[False]  # more headroom when the SLA matters more
    kpa = KPAController()
    kpa.reset(one_service(arrivals))
    kpa.set_weights(spike_plan)
    assert kpa.kpas[0].settings.target_utilization == 0.48
    keep = KeepAliveController(FixedKeepAlive(10))
    keep.set_weights(spike_plan)
    assert keep.keepalive_scale == pytest.approx(2.1)
