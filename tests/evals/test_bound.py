"""evals.bound: no controller of the registry runs a small scenario (a spike, a price change, a node failure) for less
than the bound at its own SLA level; the frontier's shape; the step rule; the ``bound`` record of the runner and
its column in the report; and the simulator detail the bound relies on (re-routed requests keep their wait)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evals.bound import compile_relaxation, frontier, max_ok, min_cost, step_bound
from evals.runner import BOUND, plan_suite, run_controller, run_suite
from local_agents.registry import controller_names, make_controller
from simulators.cluster import Cluster, ClusterConfig, NodeSpec, ServiceSpec, Workload
from simulators.scenarios import Scenario, load_scenario

REPO = Path(__file__).resolve().parents[2]

SCENARIO = """
name: bound-toy
seed: 3
duration_s: 300
suites: [bound-toy]
cluster:
  nodes:
    - {prefix: cloud, count: 3, tier: cloud, cpus: 8, mem_gb: 32, price_per_h: 0.8, boot_s: 30}
    - {prefix: edge, count: 2, tier: edge, cpus: 4, mem_gb: 8, price_per_h: 0.2, speed: 0.8, boot_s: 10}
services:
  - {name: api, work_ms: 40, slo_ms: 300, cold_start_s: 5, mem_mb: 512, min_replicas: 2, max_replicas: 40, initial_replicas: 4}
  - {name: batch, work_ms: 400, slo_ms: 2500, cold_start_s: 8, mem_mb: 1024, cpu: 2, min_replicas: 1, max_replicas: 12}
workload:
  - {service: api, type: poisson, rps: 60}
  - {service: batch, type: diurnal, base_rps: 2, peak_rps: 8, period_s: 300}
events:
  - {at_s: 60, type: traffic_spike, service: api, factor: 4, duration_s: 60}
  - {at_s: 100, type: price_change, tier: edge, factor: 3, duration_s: 100}
  - {at_s: 150, type: node_failure, node: cloud-1}
  - {at_s: 240, type: node_recovery, node: cloud-1}
"""


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bound") / "bound-toy.yaml"
    path.write_text(SCENARIO)
    return path


@pytest.fixture(scope="module")
def scenario(toy: Path) -> Scenario:
    return load_scenario(toy)


@pytest.mark.parametrize("name", controller_names())
def test_no_controller_costs_less_than_the_bound_at_its_own_sla_level(scenario: Scenario, name: str) -> None:
    recorder, _ = run_controller(scenario, make_controller(name, seed=scenario.spec.seed), keep_series=False)
    summary = recorder.summary()
    relax = compile_relaxation(scenario)
    assert summary["ok_requests"] <= max_ok(relax) * (1 + 1e-6)
    bound = min_cost(relax, summary["ok_requests"])
    assert 0 < bound <= summary["cost"] * (1 + 1e-6), (name, summary["cost"], bound, summary["sla_violation_rate"])


def test_the_blocked_relaxation_is_looser_and_still_a_bound(scenario: Scenario) -> None:
    exact, blocked = compile_relaxation(scenario), compile_relaxation(scenario, max_cell_ticks=100)
    assert blocked.blocks < exact.blocks == scenario.ticks
    assert blocked.total_requests == pytest.approx(exact.total_requests)
    target = 0.95 * max_ok(exact)
    assert min_cost(blocked, target) <= min_cost(exact, target) * (1 + 1e-6)
    assert min_cost(blocked, target) > 0.5 * min_cost(exact, target)


def test_the_frontier_is_non_increasing_and_above_the_min_replica_floors(scenario: Scenario) -> None:
    relax = compile_relaxation(scenario)
    found = frontier(relax)
    levels = [p["violation_level"] for p in found.points]
    costs = [p["cost"] for p in found.points]
    targets = [p["ok_target"] for p in found.points]
    assert levels == sorted(levels) and levels[0] == 0.0 and levels[-1] == 1.0
    assert all(a >= b * (1 - 1e-9) for a, b in itertools.pairwise(costs))
    assert all(a > b for a, b in itertools.pairwise(targets))
    floors = float((relax.floor * relax.price).sum())
    assert floors > 0 and costs[0] >= floors and costs[-1] == pytest.approx(floors)
    assert costs[0] > 2 * floors  # serving the load costs more than keeping the floors
    assert found.ok_max <= found.requests * (1 + 1e-9)


def test_step_rule_takes_the_largest_target_at_or_below_the_level() -> None:
    points = [
        {"violation_level": 0.0, "ok_target": 100.0, "cost": 10.0},
        {"violation_level": 0.1, "ok_target": 90.0, "cost": 7.0},
        {"violation_level": 0.5, "ok_target": 50.0, "cost": 2.0},
    ]
    assert step_bound(points, 100.0) == 10.0
    assert step_bound(points, 99.0) == 7.0  # not the chord between 7 and 10
    assert step_bound(points, 60.0) == 2.0
    assert step_bound(points, 10.0) is None


def test_requests_rerouted_off_a_drained_node_keep_their_wait() -> None:
    service = ServiceSpec(name="api", work_ms=100.0, slo_ms=5000.0, min_replicas=0, max_replicas=4, initial_replicas=2)
    nodes = tuple(NodeSpec(name=f"n{k}", cpus=1.0, mem_gb=1.0) for k in range(2))
    arrivals = np.array([[40.0], [0.0], [0.0]])
    cluster = Cluster(ClusterConfig(nodes=nodes, services=(service,), tier_latency_ms=(0.0, 0.0)), Workload(arrivals))
    cluster.step()  # 20 per node, 10 served each, 10 queued each with no wait yet
    cluster.drain(np.array([0]))
    out = cluster.step()  # node 1: its own 10 and node 0's 10, all waiting their second tick
    assert out.served[1, 0] == pytest.approx(10.0)
    assert out.latency_ms[1, 0] >= 100.0 + 1000.0


def test_the_runner_records_the_bound_and_the_report_compares_with_it(toy: Path, tmp_path: Path) -> None:
    plan = plan_suite(None, ["hpa", BOUND], 1, tmp_path, files=[toy])
    results = run_suite(plan, tmp_path, "custom", ["hpa", BOUND], 1, jobs=1)
    hpa, bound = results["runs"]
    assert bound["status"] == "ok" and bound["series_file"] is None, bound["error"]
    points = bound["metrics"]["bound"]["points"]
    assert bound["metrics"]["cost"] == next(p["cost"] for p in points if p["violation_level"] == 0.01)
    ratio = hpa["metrics"]["cost"] / step_bound(points, hpa["metrics"]["ok_requests"])
    assert ratio >= 1.0
    from evals.report import write_report

    report = write_report(tmp_path).read_text()
    row = next(line for line in report.splitlines() if line.startswith("| hpa |"))
    assert f"| {ratio:.3g} |" in row
    assert "cost/bound @ own SLA" in report and "clairvoyant heuristic" in report
    assert (tmp_path / "plots" / "frontier.png").read_bytes()[:4] == b"\x89PNG"


def test_ama_eval_with_the_bound_writes_the_column(toy: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    run = subprocess.run(
        [sys.executable, "-m", "ui.cli", "eval", "-s", str(toy), "--controllers", "hpa,bound", "--out", str(out), "--jobs", "1"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert {r["controller"] for r in json.loads((out / "results.json").read_text())["runs"]} == {"hpa", "bound"}
    assert "cost/bound @ own SLA" in (out / "report.md").read_text()
