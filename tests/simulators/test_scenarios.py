"""Scenario files: every shipped one compiles; every malformed one fails with one line naming file, line and field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from simulators.errors import ScenarioError, TraceFormatError
from simulators.scenarios import SCENARIO_DIR, load_scenario, scenario_files, traces_dir

SHIPPED = scenario_files()
TRACE_FREE = [p for p in SHIPPED if "traces/" not in p.read_text()]

MINIMAL = """\
name: minimal
seed: 1
duration_s: 120
cluster:
  nodes:
    - {prefix: cloud, count: 2, tier: cloud}
    - {prefix: edge, count: 2, tier: edge, cpus: 4, mem_gb: 8}
services:
  - {name: api, work_ms: 40, slo_ms: 300}
workload:
  - {service: api, type: poisson, rps: 50}
events:
  - {at_s: 30, type: traffic_spike, service: api, factor: 3, duration_s: 20}
"""


def without_events(text: str) -> str:
    return text.split("events:\n")[0]


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_at_least_six_scenarios_ship_with_each_real_trace_replayed() -> None:
    assert len(SHIPPED) >= 6
    texts = " ".join(p.read_text() for p in SHIPPED)
    assert "type: azure_functions" in texts
    assert "type: azure_llm" in texts
    assert "type: alibaba_batch" in texts


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_scenario_compiles(path: Path) -> None:
    if path not in TRACE_FREE and not traces_dir().is_dir():
        pytest.skip(f"shared traces not found at {traces_dir()}")
    scenario = load_scenario(path)
    assert scenario.ticks == round(scenario.spec.duration_s / scenario.spec.tick_s)
    assert scenario.workload.arrivals.shape == (scenario.ticks, len(scenario.config.services))
    assert scenario.workload.arrivals.sum() > 0
    assert np.all(scenario.workload.arrivals >= 0)


def test_traffic_spike_multiplies_arrivals_in_its_window(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, MINIMAL))
    arrivals = scenario.workload.arrivals[:, 0]
    assert arrivals[30:50].mean() == pytest.approx(150, rel=0.1)
    assert arrivals[:30].mean() == pytest.approx(50, rel=0.15)
    assert arrivals[50:].mean() == pytest.approx(50, rel=0.15)


def test_seed_changes_arrivals_and_same_seed_repeats(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    a, b, c = load_scenario(path), load_scenario(path), load_scenario(path, seed=2)
    assert np.array_equal(a.workload.arrivals, b.workload.arrivals)
    assert not np.array_equal(a.workload.arrivals, c.workload.arrivals)


BAD_CASES = {
    "unknown event type": (
        "  - {at_s: 30, type: traffic_spike, service: api, factor: 3, duration_s: 20}",
        "  - {at_s: 30, type: meteor_strike}",
        13,
        "events[0]",
        "meteor_strike",
    ),
    "negative rate": ("rps: 50}", "rps: -5}", 11, "workload[0].rps", "greater than or equal to 0"),
    "NaN rate": ("rps: 50}", "rps: .nan}", 11, "workload[0].rps", "finite"),
    "unknown service in event": ("service: api, factor", "service: nope, factor", 13, "events[0].service", "unknown service 'nope'"),
    "unknown node in event": (
        "  - {at_s: 30, type: traffic_spike, service: api, factor: 3, duration_s: 20}",
        "  - {at_s: 30, type: node_failure, node: cloud-9}",
        13,
        "events[0].node",
        "unknown node 'cloud-9'",
    ),
    "missing field": ("duration_s: 120\n", "", None, "duration_s", "required field is missing"),
    "unknown field": ("seed: 1", "seed: 1\ncolour: blue", 3, "colour", "unknown field"),
    "event after the end": ("at_s: 30,", "at_s: 500,", 13, "events[0].at_s", "after the end"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES), ids=str)
def test_malformed_scenario_names_file_line_and_field(tmp_path: Path, case: str) -> None:
    old, new, line, field, words = BAD_CASES[case]
    assert old in MINIMAL
    path = write(tmp_path, MINIMAL.replace(old, new, 1))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    assert field in message
    assert words in message
    if line is not None:
        assert info.value.line == line, message


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="file not found"):
        load_scenario(tmp_path / "absent.yaml")
    with pytest.raises(ScenarioError, match="not valid YAML") as info:
        load_scenario(write(tmp_path, "name: x\nservices: [unclosed\n"))
    assert info.value.line is not None


def test_trace_with_wrong_columns_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "load.csv").write_text("when,what,how_many\n0,api,5\n")
    path = write(tmp_path, MINIMAL.replace("{service: api, type: poisson, rps: 50}", "{type: csv, path: load.csv}"))
    with pytest.raises(TraceFormatError) as info:
        load_scenario(path)
    assert "load.csv" in str(info.value)
    assert "missing columns" in str(info.value)


def test_generic_csv_bins_are_spread_over_their_width(tmp_path: Path) -> None:
    (tmp_path / "load.csv").write_text("time_s,service,count\n0,api,100\n10,api,200\n20,api,0\n")
    path = write(tmp_path, without_events(MINIMAL.replace("{service: api, type: poisson, rps: 50}", "{type: csv, path: load.csv}")))
    arrivals = load_scenario(path).workload.arrivals[:, 0]
    assert arrivals[:10].sum() == 100 and arrivals[10:20].sum() == 200
    assert arrivals[:10].max() < 100  # spread, not dumped into the bin's first tick


def _fake_azure_functions(directory: Path, minutes: int = 5) -> None:
    """A three-function trace in the Azure Functions 2019 format."""
    directory.mkdir()
    header = "HashOwner,HashApp,HashFunction,Trigger," + ",".join(str(m) for m in range(1, minutes + 1))
    rows = [f"o{k},a{k},f{k},http," + ",".join(str((k + 1) * 60) for _ in range(minutes)) for k in range(3)]
    (directory / "invocations.csv").write_text("\n".join([header, *rows]) + "\n")
    dur_header = "HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum"
    (directory / "durations.csv").write_text(
        "\n".join([dur_header, *(f"o{k},a{k},f{k},{(k + 1) * 100},10,1,900" for k in range(3))]) + "\n"
    )
    mem_header = "HashOwner,HashApp,SampleCount,AverageAllocatedMb"
    (directory / "memory.csv").write_text("\n".join([mem_header, *(f"o{k},a{k},5,{(k + 1) * 64}" for k in range(3))]) + "\n")


def test_azure_functions_replay_from_generated_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_azure_functions(tmp_path / "azure_functions_2019_sample500")
    monkeypatch.setenv("AMA_TRACES_DIR", str(tmp_path))
    text = MINIMAL.replace(
        "  - {name: api, work_ms: 40, slo_ms: 300}", "  - {name: a, min_replicas: 0}\n  - {name: b, min_replicas: 0}"
    ).replace(
        "{service: api, type: poisson, rps: 50}", "{type: azure_functions, path: traces/azure_functions_2019_sample500, services: [a, b]}"
    )
    text = text.replace("service: api", "service: a").replace("duration_s: 120", "duration_s: 300")
    scenario = load_scenario(write(tmp_path, text))
    arrivals = scenario.workload.arrivals
    # the busiest function (f2: 180/min) replays as service a, the next (f1: 120/min) as b; totals kept exactly outside the spike
    assert arrivals[:30, 0].sum() + arrivals[50:, 0].sum() == pytest.approx(180 * 5 - arrivals[30:50, 0].sum() / 3, rel=0.2)
    assert arrivals[:, 1].sum() == 120 * 5
    services = {s.name: s for s in scenario.config.services}
    assert services["a"].work_ms == 300 and services["a"].mem_mb == 192
    assert services["b"].work_ms == 200 and services["b"].mem_mb == 128


def test_azure_llm_replay_from_generated_file(tmp_path: Path) -> None:
    (tmp_path / "llm.csv").write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:00:00.0000000,1000,10\n2023-11-16 18:00:00.5000000,1000,10\n2023-11-16 18:00:03.2500000,100,400\n"
    )
    text = MINIMAL.replace("{service: api, type: poisson, rps: 50}", "{type: azure_llm, path: llm.csv, service: api}")
    scenario = load_scenario(write(tmp_path, without_events(text)))
    arrivals, scale = scenario.workload.arrivals[:, 0], scenario.workload.work_scale[:, 0]
    assert arrivals[0] == 2 and arrivals[3] == 1 and arrivals.sum() == 3
    assert scale[3] > 1 > scale[0]  # 400 output tokens cost more than 10


@pytest.mark.skipif(not (traces_dir() / "azure_functions_2019_sample500").is_dir(), reason="shared traces not present")
def test_real_trace_scenarios_replay_the_trace_volume() -> None:
    scenario = load_scenario(SCENARIO_DIR / "azure-functions-replay.yaml")
    names = [s.name for s in scenario.config.services]
    assert names[0] == "fn0"
    # fn0 is the sample's busiest function: ~66.5 invocations/s over the trace (tripled for 5 of 60 minutes)
    assert scenario.workload.arrivals[:1800, 0].mean() == pytest.approx(66.5, rel=0.25)


def test_batch_workload_arrives_in_heavy_tailed_bursts(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "{service: api, type: poisson, rps: 50}", "{service: api, type: batch, jobs_per_s: 0.2, mean_instances: 50, size: lognormal}"
    )
    scenario = load_scenario(write(tmp_path, without_events(text.replace("duration_s: 120", "duration_s: 3000"))))
    arrivals = scenario.workload.arrivals[:, 0]
    assert arrivals.sum() / (3000 * 0.2) == pytest.approx(50, rel=0.3)
    assert (arrivals == 0).mean() == pytest.approx(np.exp(-0.2), abs=0.05)  # idle between submissions
    assert arrivals.max() > 5 * 50  # one job brings many times the mean at once


def test_batch_workload_rejects_a_pareto_without_a_mean(tmp_path: Path) -> None:
    text = MINIMAL.replace("{service: api, type: poisson, rps: 50}", "{service: api, type: batch, jobs_per_s: 1, shape: 0.9}")
    with pytest.raises(ScenarioError) as info:
        load_scenario(write(tmp_path, text))
    assert "workload[0]" in str(info.value) and "shape > 1" in str(info.value)
    assert info.value.line == 11


ALIBABA_ROWS = [
    "10,70,1,1,5000,Terminated,50,0.0079",
    "10,15,1,2,3,Terminated,100,0.0043",
    "-5,40,2,3,7,Failed,50,0.002",
    "30,0,3,4,2,Running,400,0.01",
    "31,40,4,5,9,Waiting,,",
]


def _alibaba_scenario(tmp_path: Path, entry: str) -> Path:
    header = (
        "task_create_time, task_end_time, job_id, task_id,number_of_instances, status, "
        "number_of_cpus_requested_per_instance_in_the_task,normalized_memory_requested_per_instance_in_the_task"
    )
    (tmp_path / "alibaba_batch_v2017").mkdir(exist_ok=True)
    (tmp_path / "alibaba_batch_v2017" / "batch_task.csv").write_text("\n".join([header, *ALIBABA_ROWS]) + "\n")
    text = MINIMAL.replace("  - {name: api, work_ms: 40, slo_ms: 300}", "  - {name: api}\n  - {name: short}\n  - {name: long}")
    return write(tmp_path, without_events(text.replace("{service: api, type: poisson, rps: 50}", entry)))


def test_alibaba_batch_replay_from_a_generated_trace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMA_TRACES_DIR", str(tmp_path))
    entry = "{type: alibaba_batch, path: traces/alibaba_batch_v2017/batch_task.csv, services: [short, long], split: duration, bounds: [30]}"
    arrivals = load_scenario(_alibaba_scenario(tmp_path, entry)).workload.arrivals
    assert arrivals[10].tolist() == [0, 3, 5000]  # a task's 5,000 instances all arrive in its create second
    assert arrivals[30].tolist() == [0, 0, 2] and arrivals[31].tolist() == [0, 9, 0]
    assert arrivals.sum() == 5000 + 3 + 2 + 9  # created before the start: left out
    shifted = entry.replace("bounds: [30]", "bounds: [30], start_s: 6, speedup: 2, scale: 0.5")
    arrivals = load_scenario(_alibaba_scenario(tmp_path, shifted)).workload.arrivals
    assert arrivals[2, 2] == pytest.approx(2500, rel=0.1)  # (10 - 6) / 2: tick 2, thinned to one in two
    assert set(np.flatnonzero(arrivals.sum(axis=1)).tolist()) <= {2, 12}  # (30 - 6) / 2 and (31 - 6) / 2: tick 12


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ("split: duration", "needs 1 bounds"),
        ("split: cpu, bounds: [2, 1]", "needs 1 bounds"),
        ("bounds: [60]", "only for split cpu or duration"),
        ("split: gpu", "'job', 'cpu' or 'duration'"),
        ("speedup: 0", "greater than or equal to 0.001"),
    ],
)
def test_alibaba_batch_entry_errors_name_the_field(tmp_path: Path, extra: str, words: str) -> None:
    entry = "{type: alibaba_batch, path: batch_task.csv, services: [short, long], " + extra + "}"
    with pytest.raises(ScenarioError) as info:
        load_scenario(_alibaba_scenario(tmp_path, entry))
    message = str(info.value)
    assert "workload[0]" in message and words in message, message
    assert info.value.line == 13


def test_alibaba_batch_malformed_trace_is_one_line(tmp_path: Path) -> None:
    path = _alibaba_scenario(tmp_path, "{type: alibaba_batch, path: alibaba_batch_v2017/batch_task.csv, services: [short]}")
    trace = tmp_path / "alibaba_batch_v2017" / "batch_task.csv"
    trace.write_text(trace.read_text().replace("31,40,4,5,9,Waiting", "31,40,4,5,nine,Waiting"))
    with pytest.raises(TraceFormatError) as info:
        load_scenario(path)
    assert str(info.value) == f"{trace}: line 6, column 'number_of_instances': not a number: 'nine'"


@pytest.mark.skipif(not (traces_dir() / "alibaba_batch_v2017").is_dir(), reason="shared traces not present")
def test_alibaba_batch_scenario_replays_the_busy_window_in_bursts() -> None:
    scenario = load_scenario(SCENARIO_DIR / "alibaba-batch-replay.yaml")
    names = [s.name for s in scenario.config.services]
    batch = scenario.workload.arrivals[:, [names.index("short"), names.index("long")]]
    # two trace hours (45,997 s on) at speedup 2, one instance in twenty: 2,927,741 trace instances in the window
    assert batch.sum() == pytest.approx(0.05 * 2_927_741, rel=0.02)
    assert batch.max() > 1000  # a burst of thousands of instances within one second
    assert scenario.ticks <= 3600
