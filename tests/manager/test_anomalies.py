"""The anomaly detectors against the scenarios' injected anomalies: each type is found, on the right target, within
seconds; quiet runs stay quiet."""

from __future__ import annotations

import numpy as np
import pytest

from evals.detection import Truth, detect_run, ground_truth, score
from local_agents.registry import make_controller
from manager.anomalies import Anomaly, Detectors, DetectorSettings
from simulators.scenarios import SCENARIO_DIR, load_scenario
from simulators.snapshot import take_snapshot

CASES = {
    "traffic-spike-small": {"traffic_spike"},
    "spike-then-failure": {"traffic_spike", "node_failure"},
    "straggler-alone": {"straggler"},
    "network-degradation-cloud": {"network_degradation"},
    "edge-cold-start-storm": {"cold_start_storm"},
    "price-change-alone": {"price_change"},
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_injected_anomaly_is_detected_on_its_target_within_seconds(name: str) -> None:
    scenario = load_scenario(SCENARIO_DIR / f"{name}.yaml")
    reports, result = detect_run(scenario, make_controller("kpa"))
    assert {a["type"] for a in result["anomalies"]} == CASES[name]
    for found in result["anomalies"]:
        assert found["detect_s"] is not None and found["detect_s"] <= 10.0, found
    for kind in CASES[name]:
        assert result["per_type"][kind]["recall"] == 1.0
        if kind != "traffic_spike":  # natural bursts (MMPP, trace surges) also count as spikes; the others are exact
            assert result["per_type"][kind]["precision"] == 1.0
    for report in reports:
        assert report.evidence and report.since_s >= 60.0  # nothing during the baselines' warm-up


def test_a_steady_run_reports_nothing() -> None:
    scenario = load_scenario(SCENARIO_DIR / "traffic-spike-small.yaml", duration_s=290)  # before the spike
    reports, result = detect_run(scenario, make_controller("oracle"))
    assert reports == [] and result["anomalies"] == []


def test_detectors_are_edge_triggered_and_clear() -> None:
    scenario = load_scenario(SCENARIO_DIR / "straggler-alone.yaml")
    cluster = scenario.make_cluster()
    detectors = Detectors(DetectorSettings(clear_ticks=5))
    seen: list[Anomaly] = []
    active_during, active_after = set(), set()
    for _ in range(cluster.horizon):
        cluster.step()
        seen += detectors.observe(take_snapshot(cluster))
        if cluster.time_s == 600:
            active_during = {k for k in detectors.active if k[0] == "straggler"}
        if cluster.time_s == 1000:
            active_after = {k for k in detectors.active if k[0] == "straggler"}
    stragglers = [a for a in seen if a.type == "straggler"]
    assert sorted(a.target for a in stragglers) == ["cloud-11", "cloud-2", "cloud-7"]  # once each, not every tick
    assert active_during == {("straggler", "cloud-2"), ("straggler", "cloud-7"), ("straggler", "cloud-11")}
    assert active_after == set()  # cleared after the slowdown ended at 900 s


def test_scoring_counts_misses_and_false_positives() -> None:
    truths = [
        Truth("traffic_spike", frozenset({"api"}), 100.0, 200.0, "spike"),
        Truth("node_failure", frozenset({"n1"}), 300.0, None, "fail"),
    ]
    reports = [
        Anomaly("traffic_spike", "api", 104.0, "x"),
        Anomaly("traffic_spike", "web", 120.0, "y"),
        Anomaly("straggler", "n3", 50.0, "z"),
    ]
    result = score(reports, truths)
    assert [d["detect_s"] for d in result["anomalies"]] == [4.0, None]
    assert result["per_type"]["traffic_spike"] == {"injected": 1, "reported": 2, "precision": 0.5, "recall": 1.0}
    assert result["per_type"]["node_failure"]["recall"] == 0.0
    assert result["per_type"]["straggler"]["precision"] == 0.0
    assert result["mean_time_to_detect_s"] == 4.0


def test_ground_truth_names_targets_as_the_detectors_do() -> None:
    truths = {t.type: t for t in ground_truth(load_scenario(SCENARIO_DIR / "edge-network-degradation.yaml"))}
    assert truths["network_degradation"].targets == {"edge"} and truths["traffic_spike"].targets == {"api"}
    assert np.isclose(truths["network_degradation"].start_s, 600.0)
