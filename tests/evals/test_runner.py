"""The eval harness end to end: suites, the runner's records, recovery times, expectations, failures kept apart
from results, and ``ama eval`` as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evals.metrics import check_expectations, downsample, time_to_recover
from evals.runner import plan_suite, run_one, run_suite
from local_agents import registry
from simulators.scenarios import Expectation, load_scenario, scenario_files, traces_dir

REPO = Path(__file__).resolve().parents[2]


def test_suites_have_what_they_promise() -> None:
    smoke, standard = scenario_files("smoke"), scenario_files("standard")
    assert 2 <= len(smoke) <= 3
    assert len(standard) >= 10
    specs = [load_scenario(p).spec for p in standard if "traces/" not in p.read_text() or traces_dir().is_dir()]
    types = {e.type for s in specs for e in s.events}
    assert {"traffic_spike", "node_failure", "straggler", "network_degradation", "cold_start_storm", "price_change"} <= types
    assert any(len(s.events) == 1 and s.events[0].type == t for s in specs for t in ("traffic_spike", "straggler", "price_change"))
    sizes = [sum(g.count for g in s.cluster.nodes) for s in specs]
    assert min(sizes) <= 16 and max(sizes) >= 500
    assert {w.type for s in specs for w in s.workload} >= {"azure_functions", "azure_llm"} or not traces_dir().is_dir()


def test_time_to_recover() -> None:
    rates = np.r_[np.zeros(10), np.full(20, 0.5), np.zeros(60)]
    assert time_to_recover(rates, 1.0, 10, 0.05) == pytest.approx(29.0)  # smoothing over 10 s stretches the bad spell
    assert time_to_recover(np.zeros(100), 1.0, 10, 0.05) == 0.0
    assert time_to_recover(np.r_[np.zeros(10), np.ones(90)], 1.0, 10, 0.05) is None


def test_expectations_and_downsampling() -> None:
    expect = [
        Expectation(metric="sla_violation_rate", max=0.05),
        Expectation(metric="cost", min=1.0, controller="oracle"),
        Expectation(metric="typo", max=1),
    ]
    checked = check_expectations({"sla_violation_rate": 0.1, "cost": 2.0}, expect, "hpa")
    assert [(c["metric"], c["passed"]) for c in checked] == [("sla_violation_rate", False), ("typo", False)]
    series = downsample({"p95_ms": list(range(10)), "replicas": [1.0] * 10}, 1.0, points=4)
    assert series["time_s"] == [0.0, 3.0, 6.0, 9.0] and series["p95_ms"] == [2.0, 5.0, 8.0, 9.0] and series["replicas"] == [1.0] * 4


def test_a_crashing_controller_is_a_failed_run_and_an_invalid_scenario_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Crashing:
        name = "crashing"

        def reset(self, cluster: object) -> None:
            pass

        def act(self, cluster: object) -> object:
            raise ZeroDivisionError("boom")

    monkeypatch.setitem(registry.BUILDERS, "crashing", lambda params, placement, seed: Crashing())
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nduration_s: 60\n")
    good = REPO / "evals/scenarios/traffic-spike-small.yaml"
    plan = plan_suite(None, ["hpa", "crashing"], 1, tmp_path, files=[good, bad], duration_s=120)
    assert [s["error"] is None for s in plan.scenarios] == [True, False]
    assert "bad.yaml" in plan.scenarios[1]["error"] and "cluster" in plan.scenarios[1]["error"]
    results = run_suite(plan, tmp_path, "custom", ["hpa", "crashing"], 1, jobs=1)
    by = {r["controller"]: r for r in results["runs"]}
    assert by["hpa"]["status"] == "ok" and by["hpa"]["metrics"]["requests"] > 0
    assert by["crashing"]["status"] == "failed" and by["crashing"]["error"].startswith("ZeroDivisionError: boom")
    assert json.loads((tmp_path / "results.json").read_text())["runs"][1]["status"] == "failed"


def test_run_record_has_metrics_recoveries_expectations_and_series(tmp_path: Path) -> None:
    plan = plan_suite(None, ["kpa"], 1, tmp_path, files=[REPO / "evals/scenarios/traffic-spike-small.yaml"])
    record = run_one(plan.tasks[0])
    assert record["status"] == "ok", record["error"]
    m = record["metrics"]
    for key in ("sla_violation_rate", "sla_violation_minutes", "p50_latency_ms", "p95_latency_ms", "p99_latency_ms", "cost", "energy_kwh",
                "cold_starts", "wasted_mem_gb_s", "drops", "scale_actions", "time_to_recover_s"):  # fmt: skip
        assert key in m
    (spike,) = m["recoveries"]
    assert spike["type"] == "traffic_spike" and spike["at_s"] == 300.0
    assert record["expectations"][0]["metric"] == "sla_violation_rate"
    series = json.loads((tmp_path / record["series_file"]).read_text())
    assert len(series["time_s"]) == len(series["violation_rate"]) <= 720 and series["events"][0]["start_s"] == 300.0


def test_ama_eval_runs_the_smoke_suite_on_two_controllers(tmp_path: Path) -> None:
    out = tmp_path / "eval"
    run = subprocess.run(
        [sys.executable, "-m", "ui.cli", "eval", "--suite", "smoke", "--controllers", "hpa,kpa", "--out", str(out), "--jobs", "2"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    results = json.loads((out / "results.json").read_text())
    assert {r["controller"] for r in results["runs"]} == {"hpa", "kpa"}
    assert all(r["status"] == "ok" for r in results["runs"]) and len(results["runs"]) == 2 * len(scenario_files("smoke"))
    report = (out / "report.md").read_text()
    assert "spike-then-failure" in report and "hpa" in report and "kpa" in report
    assert (out / "plots" / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "expectations missed" in run.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "ui.cli", "eval", "--suite", "nope", "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert bad.returncode == 2 and "suite 'nope' has no scenarios" in bad.stderr


def test_a_controller_with_the_manager_on_top_is_evaluated_with_manager_metrics(tmp_path: Path) -> None:
    plan = plan_suite(None, ["kpa", "kpa+rule"], 1, tmp_path, files=[REPO / "evals/scenarios/traffic-spike-small.yaml"], duration_s=500)
    results = run_suite(plan, tmp_path, "custom", ["kpa", "kpa+rule"], 1, jobs=1)
    plain, managed = results["runs"]
    assert plain["status"] == managed["status"] == "ok", (plain["error"], managed["error"])
    assert plain["metrics"]["manager"] is None
    stats = managed["metrics"]["manager"]
    assert stats["anomalies_injected"] == 1 and stats["anomalies_detected"] == 1 and stats["time_to_detect_s"] <= 10
    assert stats["weight_changes"] >= 1
    assert managed["metrics"]["sla_violation_rate"] < plain["metrics"]["sla_violation_rate"]  # the manager helps here


def test_first_seed_moves_every_run_to_seeds_the_test_runs_never_use(tmp_path: Path) -> None:
    file = REPO / "evals/scenarios/traffic-spike-small.yaml"
    own = load_scenario(file).spec.seed
    test_plan = plan_suite(None, ["hpa"], 2, tmp_path, files=[file], duration_s=120)
    validation = plan_suite(None, ["hpa"], 2, tmp_path, files=[file], duration_s=120, first_seed=500)
    assert [t.seed for t in test_plan.tasks] == [own, own + 1]
    assert [t.seed for t in validation.tasks] == [own + 500, own + 501]
    results = run_suite(validation, tmp_path, "custom", ["hpa"], 2, jobs=1)
    assert results["seeds"] == [500, 501] and [r["seed"] for r in results["runs"]] == [own + 500, own + 501]
    latency = [r["metrics"]["p99_latency_ms"] for r in results["runs"]]
    assert latency[0] != latency[1]  # different seeds, different arrivals
