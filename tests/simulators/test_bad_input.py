"""Bad input never crashes or silently corrupts a run: malformed scenario files through ``ama sim`` (each: exit 2,
one line naming the file and what is wrong, no traceback, within seconds), and random scenarios drawn inside every
stated range never put a NaN or an infinity into a run summary."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from evals.runner import run_controller
from local_agents.registry import make_controller
from simulators.scenarios import MAX_RPS, ScenarioSpec, compile_scenario

REPO = Path(__file__).resolve().parents[2]

BASE = """\
name: bad
duration_s: {duration}
tick_s: {tick}
cluster:
  nodes:
    - {{prefix: n, count: {count}, cpus: 16, mem_gb: 64}}
services:
  - {{name: api, work_ms: 40, slo_ms: 300, cpu: {cpu}, mem_mb: {mem}}}
workload:
  - {workload}
events: {events}
"""


def scenario(duration: float = 600, tick: float = 1, count: int = 4, cpu: float = 1, mem: float = 512,
             workload: str = "{service: api, type: poisson, rps: 100}", events: str = "[]") -> str:  # fmt: skip
    return BASE.format(duration=duration, tick=tick, count=count, cpu=cpu, mem=mem, workload=workload, events=events)


CASES: dict[str, tuple[str | bytes, str]] = {
    "ticks beyond memory": (scenario(duration=2_000_000, tick=0.001), "duration_s: duration_s / tick_s is 2000000000 ticks"),
    "tick below its range": (scenario(tick=1e-9), "tick_s: Input should be greater than or equal to 0.001"),
    "rate too large for a Poisson draw": (
        scenario(workload="{service: api, type: poisson, rps: 1.0e+300}"),
        "rps: Input should be less than",
    ),
    "spike factor overflowing": (
        scenario(events="[{at_s: 10, type: traffic_spike, service: api, factor: 1.0e+300, duration_s: 60}]"),
        "factor: Input should be less than or equal to 10000",
    ),
    "spikes stacked past the rate bound": (
        scenario(
            workload="{service: api, type: poisson, rps: 1.0e+6}",
            events="[{at_s: 10, type: traffic_spike, service: api, factor: 9000, duration_s: 60}]",
        ),
        "would get 9e+09 requests/s",
    ),
    "binary file": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "not UTF-8 text"),
    "NUL bytes in text": ("name: bad\x00\x00\n", "holds NUL bytes"),
    "huge node count": (scenario(count=100_000_000), "count: Input should be less than or equal to 10000"),
    "huge MMPP rate": (scenario(workload="{service: api, type: mmpp, rates_rps: [1.0e+12, 1], mean_dwell_s: [10, 10]}"), "rates_rps[0]"),
    "MMPP dwell too short for the run": (
        scenario(duration=2_000_000, workload="{service: api, type: mmpp, rates_rps: [10, 1], mean_dwell_s: [0.01, 10]}"),
        "expected state visits over the run",
    ),
    "straggler slowdown overflowing": (
        scenario(events="[{at_s: 10, type: straggler, node: n-0, slowdown: 1.0e+300, duration_s: 60}]"),
        "slowdown: Input should be less than or equal to 10000",
    ),
    "duplicate key": (
        scenario().replace("duration_s: 600\n", "duration_s: 600\nseed: 1\nseed: 2\n"),
        "duplicate key 'seed' (first on line",
    ),
    "a CPU need no node has": (scenario(cpu=64), "service 'api' fits on no node: a replica needs 64 CPUs, the largest node has 16"),
    "a memory need no node has": (scenario(mem=100_000), "a replica needs 100000 MB, the largest node has 65536 MB"),
    "a negative seed": (scenario().replace("name: bad\n", "name: bad\nseed: -5\n"), "seed: Input should be greater than or equal to 0"),
    "batch jobs beyond the rate bound": (
        scenario(workload="{service: api, type: batch, jobs_per_s: 1.0e+5, mean_instances: 1.0e+6}"),
        "jobs_per_s x mean_instances",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_malformed_scenario_is_one_line_and_exit_2(case: str, tmp_path: Path) -> None:
    content, words = CASES[case]
    path = tmp_path / "bad.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    out = subprocess.run(
        [sys.executable, "-m", "ui.cli", "sim", "--scenario", str(path), "--ticks", "5"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
    )
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr[-2000:]
    assert len(lines) == 1 and str(path) in lines[0] and words in lines[0], out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""


def _draw(rng: np.random.Generator, low: float, high: float) -> float:
    """Anywhere in [low, high], extremes included: log-uniform over the positive part, the bounds themselves often."""
    pick = rng.random()
    if pick < 0.15:
        return low
    if pick < 0.3:
        return high
    floor = max(low, 1e-6)
    return float(math.exp(rng.uniform(math.log(floor), math.log(high)))) if high > floor else low


def random_spec(rng: np.random.Generator) -> dict[str, Any]:
    """A small scenario (few nodes and ticks, so it runs in a test) whose values are drawn across the stated ranges."""
    nodes = int(rng.integers(1, 4))
    group = {
        "prefix": "n", "count": nodes, "cpus": _draw(rng, 1, 4096), "mem_gb": _draw(rng, 1, 1_048_576), "speed": _draw(rng, 1e-3, 1e3),
        "price_per_h": _draw(rng, 0, 1e5), "power_idle_w": 0.0, "power_peak_w": _draw(rng, 0, 1e6), "boot_s": _draw(rng, 0, 120),
        "tier": str(rng.choice(["edge", "cloud"])),
    }  # fmt: skip
    service = {
        "name": "api", "work_ms": _draw(rng, 1e-3, 3_600_000), "slo_ms": _draw(rng, 1e-3, 2.592e9), "cold_start_s": _draw(rng, 0, 30),
        "mem_mb": _draw(rng, 1, 1024), "cpu": 1.0, "concurrency": int(_draw(rng, 1, 100_000)), "timeout_s": _draw(rng, 1e-3, 2.592e6),
        "min_replicas": 0, "max_replicas": int(_draw(rng, 1, 1_000_000)), "initial_replicas": int(_draw(rng, 0, 50)),
    }  # fmt: skip
    ticks = 40
    workload = [{"service": "api", "type": "poisson", "rps": _draw(rng, 0, MAX_RPS / 1e4)}]  # a x1e4 spike stays within MAX_RPS
    events = [
        {"at_s": 5, "type": "straggler", "node": "n-0", "slowdown": _draw(rng, 1, 1e4), "duration_s": 20},
        {"at_s": 8, "type": "traffic_spike", "service": "api", "factor": _draw(rng, 1e-4, 1e4), "duration_s": 10},
        {"at_s": 12, "type": "price_change", "tier": group["tier"], "factor": _draw(rng, 1e-4, 1e4)},
        {"at_s": 15, "type": "network_degradation", "tier": group["tier"], "added_latency_ms": _draw(rng, 1e-3, 3.6e6), "duration_s": 10},
    ]  # fmt: skip
    return {"name": "random", "seed": int(rng.integers(0, 2**31)), "duration_s": ticks, "cluster": {"nodes": [group]},
            "services": [service], "workload": workload, "events": events}  # fmt: skip


@pytest.mark.parametrize("seed", range(12))
def test_random_scenarios_inside_the_ranges_never_give_a_nan(seed: int) -> None:
    rng = np.random.default_rng(seed)
    spec = ScenarioSpec.model_validate(yaml.safe_load(yaml.safe_dump(random_spec(rng))))
    scenario = compile_scenario(spec)
    for controller in ("hpa", "node-rule"):
        recorder, _ = run_controller(scenario, make_controller(controller, seed=seed), keep_series=False)
        for key, value in recorder.summary().items():
            assert value is None or math.isfinite(value), (controller, key, value, spec.model_dump())


def test_a_seed_given_on_the_command_line_is_checked_too(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(scenario())
    out = subprocess.run(
        [sys.executable, "-m", "ui.cli", "sim", "--scenario", str(path), "--ticks", "5", "--seed", "-1"],
        capture_output=True, text=True, cwd=REPO, timeout=30,
    )  # fmt: skip
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and "seed -1: a seed must be between 0 and" in lines[0], out.stderr
