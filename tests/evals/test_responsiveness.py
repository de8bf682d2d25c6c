"""The weight-responsiveness measurement runs end to end with a tiny budget: the rewritten and default runs are
identical before the switch and the report, JSON and plot are written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from evals.responsiveness import trace
from local_agents.act import load_policy
from simulators.rewards import RewardWeights
from simulators.scenarios import SCENARIO_DIR


def test_runs_are_identical_until_the_switch_and_differ_after_it() -> None:
    policy = load_policy()
    scenario = SCENARIO_DIR / "traffic-spike-small.yaml"
    default = trace(scenario, 120.0, policy, 5, 60.0, None)
    changed = trace(scenario, 120.0, policy, 5, 60.0, RewardWeights(energy=1.0, sla=0.05, latency=0.05, cost=0.5))
    assert (default["energy_j"][:60] == changed["energy_j"][:60]).all()
    assert (default["replicas"][60:] != changed["replicas"][60:]).any()


def test_the_command_writes_its_report(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "evals.responsiveness", "--scenario", str(SCENARIO_DIR / "traffic-spike-small.yaml"), "--seeds", "0",
            "--switch-s", "30", "--window-s", "20", "--duration-s", "60", "--out", str(tmp_path)]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    results = json.loads((tmp_path / "responsiveness.json").read_text())
    assert [r["component"] for r in results] == ["energy", "sla"]
    assert (tmp_path / "responsiveness.png").stat().st_size > 1000
    assert "energy x3" in out.stdout
