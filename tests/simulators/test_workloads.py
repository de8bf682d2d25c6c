"""Tests for simulators.workloads: synthetic rate generators, trace readers and tick binning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simulators.errors import TraceFormatError
from simulators.workloads import (
    alibaba_batch_counts,
    alibaba_groups,
    app_counts,
    batch_counts,
    bin_requests,
    constant_rates,
    diurnal_rates,
    generic_counts_to_ticks,
    minute_counts_to_ticks,
    mmpp_rates,
    poisson_counts,
    read_alibaba_batch,
    read_azure_functions,
    read_azure_llm,
    read_generic_csv,
    top_functions,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
TRACES_DIR = REPO_ROOT.parent / "shared" / "data" / "traces"
AZURE_FUNCTIONS_SAMPLE = TRACES_DIR / "azure_functions_2019_sample500"
AZURE_LLM_CODE = TRACES_DIR / "azure_llm_inference_2023" / "AzureLLMInferenceTrace_code.csv"
ALIBABA_BATCH = TRACES_DIR / "alibaba_batch_v2017" / "batch_task.csv"


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------------------------
# Synthetic generators
# ---------------------------------------------------------------------------------------------------------------


def test_constant_rates_shape_and_value() -> None:
    rates = constant_rates(5, 0.5, 3.0)
    assert rates.dtype == np.float64
    np.testing.assert_array_equal(rates, np.full(5, 3.0))


def test_diurnal_rates_trough_at_phase_and_peak_half_period_later() -> None:
    rates = diurnal_rates(ticks=200, tick_s=1.0, base_rps=2.0, peak_rps=10.0, period_s=100.0, phase_s=30.0)
    assert rates.shape == (200,)
    assert rates.min() == pytest.approx(2.0)
    assert rates.max() == pytest.approx(10.0)
    assert rates[30] == pytest.approx(2.0)
    assert rates[80] == pytest.approx(10.0)
    assert rates[130] == pytest.approx(2.0)


def test_poisson_counts_mean_matches_rate_times_tick() -> None:
    rng = np.random.default_rng(7)
    counts = poisson_counts(constant_rates(100_000, 0.5, 4.0), 0.5, rng)
    assert counts.dtype == np.int64
    assert counts.shape == (100_000,)
    assert counts.mean() == pytest.approx(2.0, rel=0.02)


def test_poisson_counts_is_reproducible_with_a_seed() -> None:
    rates = diurnal_rates(50, 1.0, 1.0, 5.0, 20.0)
    first = poisson_counts(rates, 1.0, np.random.default_rng(3))
    second = poisson_counts(rates, 1.0, np.random.default_rng(3))
    np.testing.assert_array_equal(first, second)


def _runs(states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values and lengths of the runs of equal consecutive entries."""
    edges = np.flatnonzero(np.diff(states) != 0) + 1
    starts = np.concatenate([[0], edges])
    lengths = np.diff(np.concatenate([starts, [states.size]]))
    return states[starts], lengths


def test_mmpp_visits_all_states_and_respects_dwell() -> None:
    rates_rps = [1.0, 5.0, 20.0]
    mean_dwell_s = [40.0, 80.0, 120.0]
    rates = mmpp_rates(200_000, 1.0, np.random.default_rng(11), rates_rps, mean_dwell_s)
    assert rates.shape == (200_000,)
    assert rates.min() >= 1.0 - 1e-9 and rates.max() <= 20.0 + 1e-9
    pure = np.isin(rates, rates_rps)  # ticks spent entirely in one state
    assert set(np.unique(rates[pure])) == set(rates_rps)
    # Uniform jumps to another state: each state is visited equally often, so time share follows the dwell means.
    for rate, dwell in zip(rates_rps, mean_dwell_s, strict=True):
        share = np.mean(np.isclose(rates, rate))
        assert share == pytest.approx(dwell / sum(mean_dwell_s), abs=0.05)
    # Each visit shows as a run of whole ticks in its state, about the dwell mean long (less the partial end ticks).
    values, lengths = _runs(np.where(pure, rates, -1.0))
    assert np.isin(values, rates_rps).sum() == pytest.approx(200_000 / np.mean(mean_dwell_s), rel=0.15)
    for rate, dwell in zip(rates_rps, mean_dwell_s, strict=True):
        assert lengths[values == rate].mean() == pytest.approx(dwell - 1.0, rel=0.2)


def test_mmpp_tick_rate_is_time_weighted_mean_within_bounds() -> None:
    rates = mmpp_rates(1000, 10.0, np.random.default_rng(5), [0.0, 10.0], [3.0, 3.0])
    mixed = (rates > 0) & (rates < 10)
    assert mixed.mean() > 0.9  # ticks much longer than dwells mix both states
    assert rates.mean() == pytest.approx(5.0, rel=0.05)


def test_mmpp_single_state_is_constant() -> None:
    rates = mmpp_rates(10, 1.0, np.random.default_rng(0), [3.0], [5.0])
    np.testing.assert_allclose(rates, np.full(10, 3.0))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: constant_rates(3, 1.0, -1.0), "rps"),
        (lambda: constant_rates(3, 1.0, float("nan")), "rps"),
        (lambda: constant_rates(3, 0.0, 1.0), "tick_s"),
        (lambda: constant_rates(-1, 1.0, 1.0), "ticks"),
        (lambda: diurnal_rates(3, 1.0, 1.0, 2.0, 0.0), "period_s"),
        (lambda: diurnal_rates(3, 1.0, 5.0, 2.0, 10.0), "peak_rps"),
        (lambda: diurnal_rates(3, 1.0, -1.0, 2.0, 10.0), "base_rps"),
        (lambda: mmpp_rates(3, 1.0, np.random.default_rng(0), [1.0, 2.0], [1.0]), "mean_dwell_s"),
        (lambda: mmpp_rates(3, 1.0, np.random.default_rng(0), [1.0, 2.0], [1.0, 0.0]), "mean_dwell_s"),
        (lambda: mmpp_rates(3, 1.0, np.random.default_rng(0), [1.0, -2.0], [1.0, 1.0]), "rates_rps"),
        (lambda: mmpp_rates(3, 1.0, np.random.default_rng(0), [], []), "rates_rps"),
        (lambda: poisson_counts(np.array([1.0, -1.0]), 1.0, np.random.default_rng(0)), "rates"),
        (lambda: poisson_counts(np.array([np.nan]), 1.0, np.random.default_rng(0)), "rates"),
    ],
)
def test_generators_reject_bad_arguments(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


# ---------------------------------------------------------------------------------------------------------------
# Bursty batch submissions
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "shape"), [("pareto", 1.5), ("lognormal", 1.5)])
def test_batch_counts_mean_and_heavy_tailed_bursts(size: str, shape: float) -> None:
    counts = batch_counts(200_000, 1.0, np.random.default_rng(5), jobs_per_s=0.05, mean_instances=200, size=size, shape=shape)
    assert counts.dtype == np.int64 and counts.shape == (200_000,)
    busy = counts[counts > 0]
    assert busy.size == pytest.approx(200_000 * (1 - np.exp(-0.05)), rel=0.05)  # ticks with at least one submission
    assert counts.sum() / (200_000 * 0.05) == pytest.approx(200, rel=0.25)  # mean instances per job
    assert busy.max() > 20 * np.median(busy)  # heavy tail: the largest job dwarfs the typical one
    assert busy.min() >= 1


def test_batch_counts_cap_zero_rate_and_seed() -> None:
    capped = batch_counts(10_000, 1.0, np.random.default_rng(1), 0.05, 500, max_instances=50)
    jobs = batch_counts(10_000, 1.0, np.random.default_rng(1), 0.05, 1, max_instances=1)  # the same submissions
    assert jobs.max() >= 2
    assert np.array_equal(capped, 50 * jobs)  # every Pareto size here is over 166 (its scale), so each job is capped
    assert batch_counts(100, 1.0, np.random.default_rng(1), 0.0, 100).sum() == 0
    first = batch_counts(500, 0.5, np.random.default_rng(9), 0.2, 30, size="lognormal")
    assert np.array_equal(first, batch_counts(500, 0.5, np.random.default_rng(9), 0.2, 30, size="lognormal"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"jobs_per_s": -1.0}, "jobs_per_s"),
        ({"mean_instances": 0.5}, "mean_instances"),
        ({"shape": 1.0}, "shape > 1"),
        ({"size": "uniform"}, "size"),
        ({"max_instances": 0}, "max_instances"),
    ],
)
def test_batch_counts_rejects_bad_arguments(kwargs: dict, message: str) -> None:
    arguments = {"jobs_per_s": 1.0, "mean_instances": 10.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        batch_counts(10, 1.0, np.random.default_rng(0), **arguments)


# ---------------------------------------------------------------------------------------------------------------
# minute_counts_to_ticks
# ---------------------------------------------------------------------------------------------------------------


def test_minute_counts_to_ticks_real_time_1d_keeps_each_minute_total() -> None:
    per_minute = np.array([0, 5, 120, 7])
    ticks = minute_counts_to_ticks(per_minute, 1.0, 60.0, np.random.default_rng(1))
    assert ticks.dtype == np.int64
    assert ticks.shape == (240,)
    np.testing.assert_array_equal(ticks.reshape(4, 60).sum(axis=1), per_minute)


def test_minute_counts_to_ticks_2d_compressed_time() -> None:
    per_minute = np.array([[3, 0, 9], [100, 1, 0]])
    ticks = minute_counts_to_ticks(per_minute, 0.5, 6.0, np.random.default_rng(2))  # ten times faster
    assert ticks.shape == (2, 36)
    np.testing.assert_array_equal(ticks.reshape(2, 3, 12).sum(axis=2), per_minute)


def test_minute_counts_to_ticks_spreads_uniformly() -> None:
    ticks = minute_counts_to_ticks(np.array([600_000]), 1.0, 60.0, np.random.default_rng(4))
    assert ticks.sum() == 600_000
    np.testing.assert_allclose(ticks, 10_000, rtol=0.05)


def test_minute_counts_to_ticks_fractional_ticks_per_minute() -> None:
    per_minute = np.array([[10, 20, 30, 40, 50], [1, 0, 0, 0, 1000]])
    rng = np.random.default_rng(3)
    ticks = minute_counts_to_ticks(per_minute, 2.5, 6.0, rng)  # 2.4 ticks per minute, 12 ticks in all
    assert ticks.shape == (2, 12)
    np.testing.assert_array_equal(ticks.sum(axis=1), per_minute.sum(axis=1))
    # Minute 0 spans [0, 6) s = ticks 0, 1 and 40% of tick 2; minute 1 starts at 6 s (tick 2).
    single = minute_counts_to_ticks(np.array([100_000, 0]), 2.5, 6.0, rng)
    assert single.shape == (5,)
    assert single[3:].sum() == 0
    np.testing.assert_allclose(single[:3] / 100_000, [2.5 / 6, 2.5 / 6, 1.0 / 6], atol=0.01)


def test_minute_counts_to_ticks_rounding_down_keeps_totals() -> None:
    per_minute = np.array([7, 8, 9])
    ticks = minute_counts_to_ticks(per_minute, 7.0, 10.0, np.random.default_rng(0))  # 30 s / 7 s = 4.29 -> 4
    assert ticks.shape == (4,)
    assert ticks.sum() == per_minute.sum()


def test_minute_counts_to_ticks_rejects_bad_counts() -> None:
    with pytest.raises(ValueError, match="whole numbers"):
        minute_counts_to_ticks(np.array([1, -1]), 1.0, 60.0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="whole numbers"):
        minute_counts_to_ticks(np.array([1.5]), 1.0, 60.0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="seconds_per_minute"):
        minute_counts_to_ticks(np.array([1]), 1.0, 0.0, np.random.default_rng(0))


# ---------------------------------------------------------------------------------------------------------------
# Azure Functions 2019
# ---------------------------------------------------------------------------------------------------------------


def _write_azure_functions(directory: Path, memory_has_function_column: bool = True) -> Path:
    _write(
        directory / "invocations.csv",
        [
            "HashOwner,HashApp,HashFunction,Trigger,480,481,482",
            "o1,a1,f1,http,1,0,2",
            "o1,a1,f2,timer,5,5,5",
            "o2,a2,f3,queue,0,9,1",
            "o3,a3,f4,event,3,0,0",
        ],
    )
    _write(
        directory / "durations.csv",
        [
            "HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum,percentile_Average_0",
            "o2,a2,f3,250,10,1,900,1",
            "o1,a1,f1,12.5,3,10,15,10",
            "o1,a1,f2,7,15,5,9,5",
        ],
    )
    if memory_has_function_column:
        memory_lines = [
            "HashFunction,HashOwner,HashApp,SampleCount,AverageAllocatedMb,AverageAllocatedMb_pct1",
            "f3,o2,a2,10,300.0,290.0",
            "f1,o1,a1,4,128.5,120.0",
            "f2,o1,a1,4,128.5,120.0",
        ]
    else:
        memory_lines = [
            "HashOwner,HashApp,SampleCount,AverageAllocatedMb,AverageAllocatedMb_pct1",
            "o2,a2,10,300.0,290.0",
            "o1,a1,4,128.5,120.0",
        ]
    _write(directory / "memory.csv", memory_lines)
    return directory


@pytest.mark.parametrize("memory_has_function_column", [True, False])
def test_read_azure_functions_small_trace(tmp_path: Path, memory_has_function_column: bool) -> None:
    trace = read_azure_functions(_write_azure_functions(tmp_path, memory_has_function_column))
    assert trace.owners == ["o1", "o1", "o2", "o3"]
    assert trace.apps == ["a1", "a1", "a2", "a3"]
    assert trace.functions == ["f1", "f2", "f3", "f4"]
    assert trace.triggers == ["http", "timer", "queue", "event"]
    assert trace.minutes.dtype == np.int64
    np.testing.assert_array_equal(trace.minutes, [480, 481, 482])
    assert trace.counts.dtype == np.int64
    np.testing.assert_array_equal(trace.counts, [[1, 0, 2], [5, 5, 5], [0, 9, 1], [3, 0, 0]])
    np.testing.assert_array_equal(trace.avg_duration_ms, [12.5, 7.0, 250.0, np.nan])
    np.testing.assert_array_equal(trace.app_memory_mb, [128.5, 128.5, 300.0, np.nan])


def test_top_functions_orders_by_total_with_ties_by_index(tmp_path: Path) -> None:
    trace = read_azure_functions(_write_azure_functions(tmp_path))
    # Totals: f1 3, f2 15, f3 10, f4 3.
    np.testing.assert_array_equal(top_functions(trace, 4), [1, 2, 0, 3])
    np.testing.assert_array_equal(top_functions(trace, 2), [1, 2])
    np.testing.assert_array_equal(top_functions(trace, 10), [1, 2, 0, 3])


def test_app_counts_sums_functions_per_app_in_first_seen_order(tmp_path: Path) -> None:
    _write_azure_functions(tmp_path)
    _write(
        tmp_path / "invocations.csv",
        [
            "HashOwner,HashApp,HashFunction,Trigger,1,2",
            "o,zz,f1,http,1,2",
            "o,aa,f2,http,10,20",
            "o,zz,f3,http,100,200",
        ],
    )
    names, counts = app_counts(read_azure_functions(tmp_path))
    assert names == ["zz", "aa"]
    assert counts.dtype == np.int64
    np.testing.assert_array_equal(counts, [[101, 202], [10, 20]])


@pytest.mark.skipif(not AZURE_FUNCTIONS_SAMPLE.is_dir(), reason=f"real trace not present at {AZURE_FUNCTIONS_SAMPLE}")
def test_read_azure_functions_real_sample() -> None:
    trace = read_azure_functions(AZURE_FUNCTIONS_SAMPLE)
    assert len(trace.functions) == 500
    assert trace.counts.shape == (500, 480)
    np.testing.assert_array_equal(trace.minutes, np.arange(480, 960))
    assert trace.counts.sum() > 0
    assert not np.isnan(trace.avg_duration_ms).any()
    assert not np.isnan(trace.app_memory_mb).any()
    names, per_app = app_counts(trace)
    assert per_app.sum() == trace.counts.sum()
    assert len(names) == len(set(trace.apps))
    spread = minute_counts_to_ticks(trace.counts[top_functions(trace, 20)], 1.0, 6.0, np.random.default_rng(0))
    assert spread.shape == (20, 2880)
    np.testing.assert_array_equal(spread.reshape(20, 480, 6).sum(axis=2), trace.counts[top_functions(trace, 20)])


# ---------------------------------------------------------------------------------------------------------------
# Azure LLM inference 2023
# ---------------------------------------------------------------------------------------------------------------


def test_read_azure_llm_small_trace_sorts_and_parses_100ns_timestamps(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "llm.csv",
        [
            "TIMESTAMP,ContextTokens,GeneratedTokens",
            "2023-11-16 18:17:03.9799600,4808,10",
            "2023-11-16 18:17:05.0000001,100,2",
            "2023-11-16 18:17:04.0319600,3180,8",
            "2023-11-16 18:18:04,7,1",
        ],
    )
    trace = read_azure_llm(path)
    np.testing.assert_allclose(trace.arrival_s, [0.0, 0.052, 1.0200401, 60.02004], atol=1e-9)
    np.testing.assert_array_equal(trace.context_tokens, [4808, 3180, 100, 7])
    np.testing.assert_array_equal(trace.generated_tokens, [10, 8, 2, 1])
    assert trace.context_tokens.dtype == np.int64 and trace.generated_tokens.dtype == np.int64


def test_bin_requests_counts_and_weights() -> None:
    arrival_s = np.array([0.0, 0.4, 1.0, 2.9, 3.0, 10.0])
    np.testing.assert_array_equal(bin_requests(arrival_s, 1.0, 3), [2, 1, 1])
    weights = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    np.testing.assert_array_equal(bin_requests(arrival_s, 1.0, 3, weights=weights), [3.0, 3.0, 4.0])
    assert bin_requests(arrival_s, 1.0, 3).dtype == np.int64


@pytest.mark.skipif(not AZURE_LLM_CODE.is_file(), reason=f"real trace not present at {AZURE_LLM_CODE}")
def test_read_azure_llm_real_code_trace() -> None:
    trace = read_azure_llm(AZURE_LLM_CODE)
    assert 8800 <= trace.arrival_s.size <= 8830
    assert trace.arrival_s[0] == 0.0
    assert np.all(np.diff(trace.arrival_s) >= 0)
    assert 3000 < trace.arrival_s[-1] < 3700  # about an hour
    assert trace.context_tokens.min() > 0 and trace.generated_tokens.min() > 0
    per_second = bin_requests(trace.arrival_s, 1.0, int(np.ceil(trace.arrival_s[-1])) + 1)
    assert per_second.sum() == trace.arrival_s.size


# ---------------------------------------------------------------------------------------------------------------
# Alibaba cluster-trace-v2017 batch tasks
# ---------------------------------------------------------------------------------------------------------------

ALIBABA_HEADER = (
    "task_create_time, task_end_time, job_id, task_id,number_of_instances, status, "
    "number_of_cpus_requested_per_instance_in_the_task,normalized_memory_requested_per_instance_in_the_task"
)


def _write_alibaba(path: Path, rows: list[str]) -> Path:
    """A batch_task.csv in the trace's own format (its header, with the stray spaces the real file has)."""
    return _write(path, [ALIBABA_HEADER, *rows])


def _small_alibaba(tmp_path: Path) -> Path:
    return _write_alibaba(
        tmp_path / "batch_task.csv",
        [
            "10,70,1,1,5000,Terminated,50,0.0079",  # one job submitting 5,000 instances at t=10, a 60 s task
            "10,15,1,2,3,Terminated,100,0.0043",
            "-5,40,2,3,7,Failed,50,0.002",  # created before the trace's start
            "12,0,3,4,2,Running,400,0.01",  # still running at the trace's end
            "11,20,4,5,9,Waiting,,",  # no CPU or memory request
        ],
    )


def test_read_alibaba_batch_small_trace_sorted_with_blanks_as_nan(tmp_path: Path) -> None:
    trace = read_alibaba_batch(_small_alibaba(tmp_path))
    np.testing.assert_array_equal(trace.create_s, [-5, 10, 10, 11, 12])
    np.testing.assert_array_equal(trace.task_id, [3, 1, 2, 5, 4])  # by create time, file order within a second
    np.testing.assert_array_equal(trace.instances, [7, 5000, 3, 9, 2])
    assert trace.status.tolist() == ["Failed", "Terminated", "Terminated", "Waiting", "Running"]
    np.testing.assert_array_equal(trace.cpu_cores[[0, 1, 2, 4]], [0.5, 0.5, 1.0, 4.0])
    assert np.isnan(trace.cpu_cores[3]) and np.isnan(trace.memory[3])
    np.testing.assert_array_equal(trace.duration_s, [45, 60, 5, 9, np.inf])
    assert trace.instances.dtype == np.int64 and trace.job_id.dtype == np.int64


def test_alibaba_groups_by_job_cpu_and_duration(tmp_path: Path) -> None:
    trace = read_alibaba_batch(_small_alibaba(tmp_path))
    by_job = alibaba_groups(trace, "job", 3)
    assert by_job[1] == by_job[2]  # both tasks of job 1 go to the same service
    assert set(by_job.tolist()) <= {0, 1, 2}
    np.testing.assert_array_equal(alibaba_groups(trace, "cpu", 2, [0.75]), [0, 0, 1, 0, 1])  # blank CPU: first band
    np.testing.assert_array_equal(alibaba_groups(trace, "duration", 3, [10, 60]), [1, 2, 0, 0, 2])  # not ended: last
    many = read_alibaba_batch(_write_alibaba(tmp_path / "many.csv", [f"0,1,{j},{j},1,Terminated,50,0.1" for j in range(400)]))
    shares = np.bincount(alibaba_groups(many, "job", 2), minlength=2)
    assert shares.min() > 150  # the hash deals jobs about evenly
    with pytest.raises(ValueError, match="ascending bounds"):
        alibaba_groups(trace, "duration", 3, [60])


def test_alibaba_batch_counts_keep_each_task_a_burst(tmp_path: Path) -> None:
    trace = read_alibaba_batch(_small_alibaba(tmp_path))
    groups = alibaba_groups(trace, "duration", 2, [30])
    counts = alibaba_batch_counts(trace, groups, 2, tick_s=1.0, ticks=20)
    assert counts.shape == (2, 20) and counts.dtype == np.int64
    assert counts[1, 10] == 5000  # every instance of the task in its create second
    assert counts[0, 10] == 3 and counts[0, 11] == 9 and counts[1, 12] == 2
    assert counts.sum() == 5000 + 3 + 9 + 2  # the task created at -5 is before the replay
    compressed = alibaba_batch_counts(trace, groups, 2, tick_s=1.0, ticks=5, speedup=2.0, start_s=4.0)
    assert compressed[1, 3] == 5000 and compressed[1, 4] == 2 and compressed[0, 3] == 3 + 9  # (10 - 4) / 2 = 3
    assert alibaba_batch_counts(trace, groups, 2, tick_s=1.0, ticks=5, start_s=-5.0)[1, 0] == 7


@pytest.mark.skipif(not ALIBABA_BATCH.is_file(), reason=f"real trace not present at {ALIBABA_BATCH}")
def test_read_alibaba_batch_real_trace() -> None:
    trace = read_alibaba_batch(ALIBABA_BATCH)
    assert trace.create_s.size == 80_553
    assert np.unique(trace.job_id).size == 12_951
    assert trace.instances.sum() == 11_909_321
    assert trace.create_s[0] == -1078 and trace.create_s[-1] == 60_181
    assert np.isnan(trace.cpu_cores).sum() == 9_017
    assert set(trace.status.tolist()) == {"Terminated", "Waiting", "Running", "Failed"}
    per_second = alibaba_batch_counts(trace, np.zeros(trace.create_s.size, np.int64), 1, 1.0, 62_000, start_s=-1078)[0]
    assert per_second.sum() == trace.instances.sum()
    assert np.sort(per_second)[-5] >= 59_000  # the five busiest seconds launch 59k-88k instances each
    assert per_second.max() == 88_152


@pytest.mark.parametrize(
    ("row", "fragments"),
    [
        ("soon,70,1,1,5,Terminated,50,0.1", ("column 'task_create_time'", "not a number", "'soon'")),
        ("10,70,1,1,-5,Terminated,50,0.1", ("column 'number_of_instances'", "negative count")),
        ("10,70,1,1.5,5,Terminated,50,0.1", ("column 'task_id'", "not a whole number")),
        ("10,70,1,1,5,Done,50,0.1", ("column 'status'", "not one of", "'Done'")),
        ("10,70,1,1,5,Terminated,lots,0.1", ("column 'number_of_cpus_requested_per_instance_in_the_task'", "not a number")),
        ("10,70,1,1,5,Terminated,50,1.5", ("column 'normalized_memory_requested_per_instance_in_the_task'", "above 1", "'1.5'")),
        ("10,70,1,1,5,Terminated,50", ("has 7 fields",)),
    ],
)
def test_malformed_alibaba_rows_name_file_line_and_column(tmp_path: Path, row: str, fragments: tuple[str, ...]) -> None:
    path = _write_alibaba(tmp_path / "batch_task.csv", ["1,2,1,1,1,Terminated,50,0.1", "3,4,1,2,1,Waiting,,", row])
    with pytest.raises(TraceFormatError) as caught:
        read_alibaba_batch(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: line 4")
    for fragment in fragments:
        assert fragment in message, message


def test_alibaba_missing_columns_and_empty_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "batch_task.csv", ["task_create_time,job_id", "1,2"])
    with pytest.raises(TraceFormatError, match="missing columns: task_end_time, task_id"):
        read_alibaba_batch(path)
    with pytest.raises(TraceFormatError, match="no data rows"):
        read_alibaba_batch(_write_alibaba(path, []))
    with pytest.raises(TraceFormatError, match="file not found"):
        read_alibaba_batch(tmp_path / "absent.csv")


# ---------------------------------------------------------------------------------------------------------------
# Generic CSV
# ---------------------------------------------------------------------------------------------------------------


def test_read_generic_csv_groups_by_service_and_ignores_extra_columns(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "generic.csv",
        [
            "time_s,service,count,note",
            "0.0,web,3,x",
            "0.5,db,1,y",
            "1.5,web,4,z",
            "2.0,web,0,",
        ],
    )
    services = read_generic_csv(path)
    assert list(services) == ["web", "db"]
    web_times, web_counts = services["web"]
    np.testing.assert_array_equal(web_times, [0.0, 1.5, 2.0])
    np.testing.assert_array_equal(web_counts, [3.0, 4.0, 0.0])
    assert web_times.dtype == np.float64 and web_counts.dtype == np.float64
    np.testing.assert_array_equal(services["db"][0], [0.5])
    np.testing.assert_array_equal(services["db"][1], [1.0])


def test_generic_counts_to_ticks_sums_into_bins() -> None:
    ticks = generic_counts_to_ticks(np.array([0.0, 0.5, 1.5, 9.0]), np.array([3.0, 1.0, 4.0, 8.0]), 1.0, 3)
    assert ticks.dtype == np.int64
    np.testing.assert_array_equal(ticks, [4, 4, 0])


# ---------------------------------------------------------------------------------------------------------------
# Bad input: every reader raises TraceFormatError naming the file and the problem
# ---------------------------------------------------------------------------------------------------------------


def _assert_trace_error(call, path: Path, *fragments: str) -> None:
    with pytest.raises(TraceFormatError) as caught:
        call()
    message = str(caught.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message


def test_missing_files_raise_trace_format_error(tmp_path: Path) -> None:
    _assert_trace_error(lambda: read_azure_functions(tmp_path), tmp_path / "invocations.csv", "file not found")
    _assert_trace_error(lambda: read_azure_llm(tmp_path / "none.csv"), tmp_path / "none.csv", "file not found")
    _assert_trace_error(lambda: read_generic_csv(tmp_path / "no.csv"), tmp_path / "no.csv", "file not found")
    _write_azure_functions(tmp_path)
    (tmp_path / "memory.csv").unlink()
    _assert_trace_error(lambda: read_azure_functions(tmp_path), tmp_path / "memory.csv", "file not found")


def test_missing_columns_are_named(tmp_path: Path) -> None:
    _write_azure_functions(tmp_path)
    invocations = _write(tmp_path / "invocations.csv", ["HashOwner,HashApp,1,2", "o,a,1,2"])
    _assert_trace_error(lambda: read_azure_functions(tmp_path), invocations, "missing columns: HashFunction, Trigger")
    llm = _write(tmp_path / "llm.csv", ["TIMESTAMP,Tokens", "2023-11-16 18:17:03,5"])
    _assert_trace_error(lambda: read_azure_llm(llm), llm, "missing columns: ContextTokens, GeneratedTokens")
    generic = _write(tmp_path / "generic.csv", ["time,service,count", "0,web,1"])
    _assert_trace_error(lambda: read_generic_csv(generic), generic, "missing columns: time_s")


def test_missing_memory_column_is_named(tmp_path: Path) -> None:
    _write_azure_functions(tmp_path)
    memory = _write(tmp_path / "memory.csv", ["HashOwner,HashApp,SampleCount", "o1,a1,4"])
    _assert_trace_error(lambda: read_azure_functions(tmp_path), memory, "missing columns: AverageAllocatedMb")


def test_non_numeric_cells_name_line_and_column(tmp_path: Path) -> None:
    _write_azure_functions(tmp_path)
    invocations = _write(
        tmp_path / "invocations.csv",
        ["HashOwner,HashApp,HashFunction,Trigger,1,2", "o,a,f1,http,1,2", "o,a,f2,http,3,abc"],
    )
    _assert_trace_error(lambda: read_azure_functions(tmp_path), invocations, "line 3", "column '2'", "not a number", "'abc'")
    llm = _write(tmp_path / "llm.csv", ["TIMESTAMP,ContextTokens,GeneratedTokens", "2023-11-16 18:17:03,x,1"])
    _assert_trace_error(lambda: read_azure_llm(llm), llm, "line 2", "column 'ContextTokens'", "not a number")
    generic = _write(tmp_path / "generic.csv", ["time_s,service,count", "0,web,1", "soon,web,1"])
    _assert_trace_error(lambda: read_generic_csv(generic), generic, "line 3", "column 'time_s'", "not a number")


def test_bad_timestamps_name_line(tmp_path: Path) -> None:
    for bad in ["now", "2023-13-16 18:17:03.1", "16/11/2023 18:17"]:
        llm = _write(
            tmp_path / "llm.csv",
            ["TIMESTAMP,ContextTokens,GeneratedTokens", "2023-11-16 18:17:03,1,1", f"{bad},1,1"],
        )
        _assert_trace_error(lambda path=llm: read_azure_llm(path), llm, "line 3", "column 'TIMESTAMP'", repr(bad))


def test_negative_counts_are_rejected(tmp_path: Path) -> None:
    _write_azure_functions(tmp_path)
    invocations = _write(tmp_path / "invocations.csv", ["HashOwner,HashApp,HashFunction,Trigger,1", "o,a,f,http,-4"])
    _assert_trace_error(lambda: read_azure_functions(tmp_path), invocations, "line 2", "negative count", "'-4'")
    llm = _write(tmp_path / "llm.csv", ["TIMESTAMP,ContextTokens,GeneratedTokens", "2023-11-16 18:17:03,5,-1"])
    _assert_trace_error(lambda: read_azure_llm(llm), llm, "column 'GeneratedTokens'", "negative count")
    generic = _write(tmp_path / "generic.csv", ["time_s,service,count", "0,web,-2"])
    _assert_trace_error(lambda: read_generic_csv(generic), generic, "column 'count'", "negative count")


def test_fractional_counts_are_rejected(tmp_path: Path) -> None:
    generic = _write(tmp_path / "generic.csv", ["time_s,service,count", "0,web,2.5"])
    _assert_trace_error(lambda: read_generic_csv(generic), generic, "line 2", "not a whole number")


def test_empty_files_are_rejected(tmp_path: Path) -> None:
    _write_azure_functions(tmp_path)
    invocations = tmp_path / "invocations.csv"
    invocations.write_text("", encoding="utf-8")
    _assert_trace_error(lambda: read_azure_functions(tmp_path), invocations, "empty file")
    llm = tmp_path / "llm.csv"
    llm.write_text("", encoding="utf-8")
    _assert_trace_error(lambda: read_azure_llm(llm), llm, "empty file")
    generic = tmp_path / "generic.csv"
    generic.write_text("", encoding="utf-8")
    _assert_trace_error(lambda: read_generic_csv(generic), generic, "empty file")


def test_header_only_files_are_rejected(tmp_path: Path) -> None:
    llm = _write(tmp_path / "llm.csv", ["TIMESTAMP,ContextTokens,GeneratedTokens"])
    _assert_trace_error(lambda: read_azure_llm(llm), llm, "no data rows")


def test_ragged_rows_and_bad_minute_headers_are_rejected(tmp_path: Path) -> None:
    _write_azure_functions(tmp_path)
    invocations = _write(tmp_path / "invocations.csv", ["HashOwner,HashApp,HashFunction,Trigger,1,2", "o,a,f,http,1"])
    _assert_trace_error(lambda: read_azure_functions(tmp_path), invocations, "line 2", "has 5 fields")
    _write(invocations, ["HashOwner,HashApp,HashFunction,Trigger,1,total", "o,a,f,http,1,1"])
    _assert_trace_error(lambda: read_azure_functions(tmp_path), invocations, "column 'total' is not a minute number")
    _write(invocations, ["HashOwner,HashApp,HashFunction,Trigger,1,3", "o,a,f,http,1,1"])
    _assert_trace_error(lambda: read_azure_functions(tmp_path), invocations, "consecutive")
