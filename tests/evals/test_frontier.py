"""The SLA-cost frontier: its arithmetic on hand-made runs (total violation minutes of the scenarios' seed means,
geometric mean of the scenarios' mean per-seed cost ratios, as the eval report), and the command end to end with a
tiny budget."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evals.frontier import compare, frontier, gaps


def run(file: str, controller: str, factor: float, offset: int, minutes: float, cost: float) -> dict[str, object]:
    return {"file": file, "controller": controller, "factor": factor, "offset": offset, "violation_minutes": minutes, "cost": cost}


def test_the_frontier_aggregates_as_the_eval_report_does() -> None:
    rows = [
        run("a", "hpa", 1.0, 0, 10.0, 2.0), run("a", "hpa", 1.0, 1, 20.0, 4.0), run("b", "hpa", 1.0, 0, 10.0, 1.0),
        run("a", "marl", 1.0, 0, 3.0, 2.0), run("a", "marl", 1.0, 1, 5.0, 12.0), run("b", "marl", 1.0, 0, 6.0, 0.5),
        run("a", "marl", 3.0, 0, 1.0, 2.0), run("a", "marl", 3.0, 1, 1.0, 4.0), run("b", "marl", 3.0, 0, 1.0, 1.0),
    ]  # fmt: skip
    first, second = frontier(rows, [1.0, 3.0])
    assert first["hpa_violation_minutes"] == pytest.approx(25.0)  # a: mean 15, b: 10
    assert first["violation_minutes"] == pytest.approx(10.0)  # a: mean 4, b: 6
    assert first["violation_minutes_vs_hpa"] == pytest.approx(0.4)
    assert first["cost_vs_hpa"] == pytest.approx(1.0)  # a: per-seed ratios 1 and 3, mean 2; b: 0.5; sqrt(2 * 0.5)
    assert second["violation_minutes"] == pytest.approx(2.0) and second["cost_vs_hpa"] == pytest.approx(1.0)


def test_the_command_writes_its_points_and_plot(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "evals.frontier", "--suite", "smoke", "--factors", "1,3", "--seeds", "1",
            "--duration-s", "40", "--jobs", "1", "--out", str(tmp_path)]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "frontier.json").read_text())
    assert [p["factor"] for p in report["points"]] == [1.0, 3.0]
    assert all(p["cost_vs_hpa"] > 0 and p["violation_minutes_vs_hpa"] >= 0 for p in report["points"])
    assert (tmp_path / "frontier.png").stat().st_size > 1000
    assert "cost weight x3" in out.stdout


def test_bad_factors_are_one_line_errors(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "evals.frontier", "--factors", "1,x", "--out", str(tmp_path)]
    out = subprocess.run(argv, capture_output=True, text=True)
    assert out.returncode == 2 and "--factors" in out.stderr.strip().splitlines()[-1]


def test_a_point_below_the_reference_frontier_has_negative_gaps_and_one_above_positive() -> None:
    reference = [(1.0, 10.0), (1.2, 6.0), (1.5, 4.0), (1.4, 7.0)]  # (1.4, 7) is not efficient: dropped
    minutes_gap, cost_gap = gaps((1.1, 5.0), reference)
    assert minutes_gap == pytest.approx(5.0 - 8.0) and cost_gap == pytest.approx(1.1 - 1.35)
    assert all(g > 0 for g in gaps((1.3, 7.0), reference))
    # dearer than every reference point: no equal-cost comparison (it could only flatter); equal violations still
    minutes_gap, cost_gap = gaps((2.0, 5.0), reference)
    assert np.isnan(minutes_gap) and cost_gap == pytest.approx(2.0 - 1.35)


def test_the_comparison_finds_a_policy_that_is_better_on_every_scenario_below_the_frontier() -> None:
    rows = []
    for k, file in enumerate("abcdefgh"):
        rows.append(run(file, "hpa", 1.0, 0, 10.0, 1.0))
        for factor, (minutes, cost) in {1.0: (6.0, 1.2), 2.0: (8.0, 1.0), 4.0: (10.0, 0.9)}.items():
            rows.append(run(file, "node-rule", factor, 0, minutes + 0.1 * k, cost))
            rows.append(run(file, "better", factor, 0, minutes - 2.0 + 0.1 * k, cost))
            rows.append(run(file, "worse", factor, 0, minutes + 2.0 + 0.1 * k, cost))
    better = compare(rows, "better", "node-rule", [1.0, 2.0, 4.0], resamples=200)
    worse = compare(rows, "worse", "node-rule", [1.0, 2.0, 4.0], resamples=200)
    assert all(r["below"] == 1.0 and r["minutes_at_equal_cost_high"] < 0 for r in better)
    assert all(r["below"] == 0.0 and r["minutes_at_equal_cost_low"] > 0 for r in worse)


def test_the_command_compares_a_policy_file_with_the_node_rule(tmp_path: Path) -> None:
    from simulators.scenarios import REPO_ROOT

    policy = REPO_ROOT / "local_agents" / "policies" / "default.npz"
    argv = [sys.executable, "-m", "evals.frontier", "--suite", "smoke", "--factors", "1,3", "--seeds", "1", "--duration-s", "40",
            "--jobs", "1", "--controllers", f"node-rule,shipped={policy}", "--out", str(tmp_path)]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "frontier.json").read_text())
    assert {p["controller"] for p in report["points"]} == {"node-rule", "shipped"}
    assert [c["factor"] for c in report["against_node_rule"]["shipped"]] == [1.0, 3.0]
    assert "shipped x1 against the node rule's frontier" in out.stdout


def test_an_unknown_controller_is_a_one_line_error(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "evals.frontier", "--controllers", "node-rule,nope.npz", "--out", str(tmp_path)]
    out = subprocess.run(argv, capture_output=True, text=True)
    assert out.returncode == 2 and "no policy file nope.npz" in out.stderr.strip().splitlines()[-1]
