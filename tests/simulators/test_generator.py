"""The scenario generator: every generated scenario passes the scenario schema, the same seed gives the same file,
the splits never share a seed, and across a hundred scenarios every workload kind and anomaly type appears within
the promised ranges. Also the generated suites through scenario_files and a subprocess run of the command."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from simulators import generator
from simulators.errors import ConfigError
from simulators.scenarios import ScenarioSpec, load_scenario, scenario_files

WITH_TRACES = generator.traces_available()
SEEDS = [generator.split_seed(split, k) for split in generator.SPLITS for k in range(100)]
SPECS = {seed: generator.generate_spec(seed, with_traces=WITH_TRACES) for seed in SEEDS}


def test_every_generated_spec_validates() -> None:
    for seed, spec in SPECS.items():
        ScenarioSpec.model_validate(spec)
        assert spec["name"] == f"gen-{generator.split_of(seed)}-{seed}"
        assert f"split {generator.split_of(seed)}, generator seed {seed}" in spec["description"]


def test_a_handful_compile_into_runnable_scenarios(tmp_path: Path) -> None:
    paths = generator.write_split("test", 6, tmp_path)
    for path in paths:
        scenario = load_scenario(path)
        assert scenario.ticks == scenario.spec.duration_s
        assert scenario.workload.arrivals.sum() > 0
        cluster = scenario.make_cluster()
        for _ in range(5):
            cluster.step()


def test_same_seed_same_scenario_and_seeds_differ() -> None:
    seed = generator.split_seed("validation", 7)
    assert generator.generate_spec(seed, with_traces=WITH_TRACES) == SPECS[seed]
    assert generator.generate_spec(seed + 1, with_traces=WITH_TRACES) != SPECS[seed]


def test_splits_are_disjoint_and_seeds_stay_in_their_split() -> None:
    ranges = list(generator.SPLITS.values())
    for i, a in enumerate(ranges):
        for b in ranges[i + 1 :]:
            assert a.stop <= b.start or b.stop <= a.start
    for split, seeds in generator.SPLITS.items():
        assert generator.split_seed(split, 0) == seeds.start
        assert generator.split_of(generator.split_seed(split, len(seeds) - 1)) == split
        with pytest.raises(ConfigError, match="outside"):
            generator.split_seed(split, len(seeds))
    with pytest.raises(ConfigError, match="unknown split"):
        generator.split_seed("holdout", 0)


def test_every_workload_kind_and_anomaly_type_appears() -> None:
    workloads = Counter(w["type"] for spec in SPECS.values() for w in spec["workload"])
    events = Counter(e["type"] for spec in SPECS.values() for e in spec["events"])
    kinds = generator.WORKLOAD_KINDS if WITH_TRACES else [k for k in generator.WORKLOAD_KINDS if k not in generator.TRACE_KINDS]
    assert set(kinds) <= set(workloads), workloads
    assert set(generator.EVENT_KINDS) <= set(events), events
    assert any(len(s["events"]) == 1 for s in SPECS.values()) and any(len({e["type"] for e in s["events"]}) >= 3 for s in SPECS.values())
    assert any(len(s["events"]) == 0 for s in SPECS.values())


def test_without_traces_no_replay_is_drawn() -> None:
    for k in range(30):
        spec = generator.generate_spec(generator.split_seed("train", k), with_traces=False)
        assert not {w["type"] for w in spec["workload"]} & set(generator.TRACE_KINDS)


def test_ranges() -> None:
    sizes = []
    for spec in SPECS.values():
        groups = spec["cluster"]["nodes"]
        sizes.append(sum(g["count"] for g in groups))
        assert 300 <= spec["duration_s"] <= 1800 and spec["tick_s"] == 1.0
        has_gpu = any(g.get("gpus", 0) for g in groups)
        for s in spec["services"]:
            assert generator.MIN_WORK_MS <= s["work_ms"] <= generator.MAX_WORK_MS
            assert generator.MIN_SLO_FACTOR <= s["slo_ms"] / s["work_ms"] <= generator.MAX_SLO_FACTOR * (1 + 1e-9)
            assert has_gpu or s["kind"] == "cpu"
            fits = [
                g for g in groups if g["cpus"] >= s["cpu"] and g["mem_gb"] * 1024 >= s["mem_mb"] and g.get("gpus", 0) >= s.get("gpus", 0)
            ]
            assert fits, s
            assert s["min_replicas"] <= s["initial_replicas"] <= s["max_replicas"]
        for e in spec["events"]:
            assert 0 <= e["at_s"] < spec["duration_s"]
    assert min(sizes) >= generator.MIN_NODES and max(sizes) <= generator.MAX_NODES
    assert sum(n <= 50 for n in sizes) > 0.8 * len(sizes)  # mostly small, so suites stay cheap
    assert max(sizes) > 200  # and a few large
    assert any("on" in g for spec in SPECS.values() for g in spec["cluster"]["nodes"])  # some nodes off at t=0
    tiers = Counter(g["tier"] for spec in SPECS.values() for g in spec["cluster"]["nodes"])
    assert tiers["edge"] > 0 and tiers["cloud"] > 0


def test_generated_suite_is_written_once_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMA_GENERATED_DIR", str(tmp_path))
    files = scenario_files("generated-validation-4")
    assert [f.stem for f in files] == [f"gen-validation-{generator.split_seed('validation', k)}" for k in range(4)]
    assert all(tmp_path in f.parents for f in files)
    assert yaml.safe_load(files[0].read_text())["suites"] == ["generated-validation"]
    stamp = files[0].stat().st_mtime_ns
    assert scenario_files("generated-validation-4") == files and files[0].stat().st_mtime_ns == stamp
    with pytest.raises(ConfigError, match="generated-<split>"):
        scenario_files("generated-holdout")


def test_cli_generates_files_that_load(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "ui.cli",
        "scenarios",
        "generate",
        "--count",
        "3",
        "--split",
        "train",
        "--seed",
        "10",
        "--out",
        str(tmp_path),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "3 train scenarios (generator seeds 10..12)" in done.stdout
    paths = sorted(tmp_path.glob("*.yaml"))
    assert [p.name for p in paths] == ["gen-train-10.yaml", "gen-train-11.yaml", "gen-train-12.yaml"]
    assert load_scenario(paths[0]).spec == ScenarioSpec.model_validate(SPECS[10])
    bad_command = [sys.executable, "-m", "ui.cli", "scenarios", "generate", "--split", "holdout", "--out", str(tmp_path)]
    bad = subprocess.run(bad_command, capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2 and "unknown split 'holdout'" in bad.stderr


def test_suites_combine_with_commas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``standard,generated-test-3`` is one eval over both: the standard files, then three generated, each once."""
    monkeypatch.setenv("AMA_GENERATED_DIR", str(tmp_path))
    standard = scenario_files("standard")
    both = scenario_files("standard,generated-test-3,standard")
    assert both[: len(standard)] == standard and len(both) == len(standard) + 3
    assert all(path.parent.name == "test" and path.is_relative_to(tmp_path) for path in both[len(standard) :])
