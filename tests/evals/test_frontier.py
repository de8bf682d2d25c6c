"""The SLA-cost frontier: its arithmetic on hand-made runs (total violation minutes of the scenarios' seed means,
geometric mean of the scenarios' mean per-seed cost ratios, as the eval report), and the command end to end with a
tiny budget."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evals.frontier import frontier


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
