"""Workload generators and trace readers. Called by simulators.scenarios when it builds a scenario's arrival matrix;
feeds simulators.cluster through that matrix.

Time is discretized in ticks of ``tick_s`` seconds. Everything here produces, for one service (or one row per
service), a per-tick array: either a *rate* (expected arrivals per second at each tick) from the synthetic
generators, or integer *counts* (arrivals in each tick) from ``poisson_counts`` and the trace helpers.
A caller wanting ``duration_s`` of workload uses ``ticks = int(round(duration_s / tick_s))``.

Trace formats read here:

* Azure Functions 2019 (``read_azure_functions``): a directory with ``invocations.csv``
  (HashOwner,HashApp,HashFunction,Trigger, then one column per minute named by its minute number),
  ``durations.csv`` (HashOwner,HashApp,HashFunction,Average,... in ms) and ``memory.csv``
  (HashApp,AverageAllocatedMb,... per app; the vHive-sampled files also carry a leading HashFunction column and
  hold the app's memory already divided evenly over its functions). Memory is matched by HashApp.
* Azure LLM inference 2023 (``read_azure_llm``): ``TIMESTAMP,ContextTokens,GeneratedTokens`` with timestamps like
  ``2023-11-16 18:17:03.9799600`` (100-ns precision).
* Alibaba cluster-trace-v2017 batch tasks (``read_alibaba_batch``): ``batch_task.csv`` with the header
  ``task_create_time,task_end_time,job_id,task_id,number_of_instances,status,
  number_of_cpus_requested_per_instance_in_the_task,normalized_memory_requested_per_instance_in_the_task``
  (spaces around names allowed); CPUs per instance in hundredths of a core (blank for some Waiting tasks), memory
  normalized to 0..1 (blank likewise); an end time of 0 marks a task still running at the trace's end.
* Generic (``read_generic_csv``): ``time_s,service,count`` with a header; extra columns are ignored.

Every reader raises ``TraceFormatError(path, problem)`` on bad input; line numbers in messages are 1-based file
lines (the header is line 1).
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simulators.errors import TraceFormatError

# ---------------------------------------------------------------------------------------------------------------
# Synthetic rate generators
# ---------------------------------------------------------------------------------------------------------------


def _check_ticks(ticks: int, tick_s: float) -> None:
    if isinstance(ticks, bool) or not isinstance(ticks, (int, np.integer)) or ticks < 0:
        raise ValueError(f"ticks must be a non-negative integer, got {ticks!r}")
    if not (math.isfinite(tick_s) and tick_s > 0):
        raise ValueError(f"tick_s must be a positive finite number, got {tick_s!r}")


def _check_rate(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a non-negative finite rate, got {value!r}")


def _check_positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


def _tick_starts(ticks: int, tick_s: float) -> np.ndarray:
    return np.arange(ticks, dtype=np.float64) * tick_s


def constant_rates(ticks: int, tick_s: float, rps: float) -> np.ndarray:
    """``rps`` arrivals per second at every tick; float64 of shape (ticks,)."""
    _check_ticks(ticks, tick_s)
    _check_rate("rps", rps)
    return np.full(ticks, float(rps), dtype=np.float64)


def diurnal_rates(ticks: int, tick_s: float, base_rps: float, peak_rps: float, period_s: float, phase_s: float = 0.0) -> np.ndarray:
    """A sinusoid between ``base_rps`` (trough, at t = phase_s) and ``peak_rps`` (half a period later).

    Evaluated at each tick start; float64 of shape (ticks,).
    """
    _check_ticks(ticks, tick_s)
    _check_rate("base_rps", base_rps)
    _check_rate("peak_rps", peak_rps)
    if peak_rps < base_rps:
        raise ValueError(f"peak_rps ({peak_rps}) must be >= base_rps ({base_rps})")
    _check_positive("period_s", period_s)
    if not math.isfinite(phase_s):
        raise ValueError(f"phase_s must be finite, got {phase_s!r}")
    angle = 2.0 * np.pi * (_tick_starts(ticks, tick_s) - phase_s) / period_s
    return base_rps + (peak_rps - base_rps) * 0.5 * (1.0 - np.cos(angle))


def _mmpp_state_sequence(
    rng: np.random.Generator, state_count: int, mean_dwell: np.ndarray, horizon_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """States visited from state 0 and the time each visit ends, until the horizon is covered."""
    batch = min(int(horizon_s / mean_dwell.min()) + 16, 1_000_000)
    states = np.zeros(1, dtype=np.int64)
    dwells = rng.exponential(mean_dwell[:1])
    while dwells.sum() < horizon_s:
        offsets = rng.integers(1, state_count, size=batch) if state_count > 1 else np.zeros(batch, np.int64)
        new_states = (states[-1] + np.cumsum(offsets)) % state_count
        states = np.concatenate([states, new_states])
        dwells = np.concatenate([dwells, rng.exponential(mean_dwell[new_states])])
    return states, np.cumsum(dwells)


def mmpp_rates(
    ticks: int,
    tick_s: float,
    rng: np.random.Generator,
    rates_rps: Sequence[float],
    mean_dwell_s: Sequence[float],
) -> np.ndarray:
    """Markov-modulated Poisson process rates: time-weighted mean of the state rate within each tick.

    State k has rate ``rates_rps[k]`` and lasts an exponential time with mean ``mean_dwell_s[k]``, then the process
    jumps to a uniformly random *other* state. It starts in state 0. Returns float64 of shape (ticks,).
    """
    _check_ticks(ticks, tick_s)
    rates = np.asarray(rates_rps, dtype=np.float64)
    mean_dwell = np.asarray(mean_dwell_s, dtype=np.float64)
    if rates.ndim != 1 or rates.size == 0:
        raise ValueError("rates_rps must be a non-empty 1-D sequence")
    if mean_dwell.shape != rates.shape:
        raise ValueError(f"rates_rps has {rates.size} states but mean_dwell_s has {mean_dwell.size}")
    for k, (rate, dwell) in enumerate(zip(rates, mean_dwell, strict=True)):
        _check_rate(f"rates_rps[{k}]", float(rate))
        _check_positive(f"mean_dwell_s[{k}]", float(dwell))
    if ticks == 0:
        return np.zeros(0, dtype=np.float64)
    horizon_s = ticks * tick_s
    states, visit_ends = _mmpp_state_sequence(rng, rates.size, mean_dwell, horizon_s)
    # The arrival-rate integral is piecewise linear in time, so interpolating it at tick edges is exact.
    knots = np.concatenate([[0.0], visit_ends])
    integral = np.concatenate([[0.0], np.cumsum(rates[states] * np.diff(knots))])
    edges = _tick_starts(ticks + 1, tick_s)
    averaged = np.diff(np.interp(edges, knots, integral)) / tick_s
    # Ticks inside one visit get that state's rate exactly, free of the integral's rounding noise.
    visit_at_edge = np.searchsorted(visit_ends, edges, side="right")
    single_visit = visit_at_edge[:-1] == np.searchsorted(visit_ends, edges[1:], side="left")
    return np.where(single_visit, rates[states[np.minimum(visit_at_edge[:-1], states.size - 1)]], averaged)


def batch_counts(
    ticks: int,
    tick_s: float,
    rng: np.random.Generator,
    jobs_per_s: float,
    mean_instances: float,
    size: str = "pareto",
    shape: float = 1.5,
    max_instances: int | None = None,
) -> np.ndarray:
    """Bursty batch submissions: jobs arrive as a Poisson process of ``jobs_per_s``, each a heavy-tailed number of
    instances that all arrive in the job's tick. Returns int64 (ticks,) instances per tick.

    ``size="pareto"``: a Pareto of tail index ``shape`` (> 1; 1.5 has a finite mean and an infinite variance) and
    scale ``mean_instances * (shape - 1) / shape``; ``size="lognormal"``: a lognormal of log-sigma ``shape`` and mean
    ``mean_instances``. Sizes are rounded to whole instances, at least 1 and at most ``max_instances`` (so the mean
    is ``mean_instances`` up to rounding and the cap).
    """
    _check_ticks(ticks, tick_s)
    _check_rate("jobs_per_s", jobs_per_s)
    _check_positive("shape", shape)
    if not (math.isfinite(mean_instances) and mean_instances >= 1):
        raise ValueError(f"mean_instances must be a finite number >= 1, got {mean_instances!r}")
    if size == "pareto" and shape <= 1:
        raise ValueError(f"a Pareto job size needs shape > 1 (a finite mean), got {shape!r}")
    if max_instances is not None and max_instances < 1:
        raise ValueError(f"max_instances must be >= 1, got {max_instances!r}")
    jobs = rng.poisson(jobs_per_s * tick_s, size=ticks)
    total = int(jobs.sum())
    if size == "pareto":
        sizes = (rng.pareto(shape, size=total) + 1.0) * (mean_instances * (shape - 1.0) / shape)
    elif size == "lognormal":
        sizes = rng.lognormal(math.log(mean_instances) - shape**2 / 2.0, shape, size=total)
    else:
        raise ValueError(f"size must be 'pareto' or 'lognormal', got {size!r}")
    whole = np.maximum(np.rint(sizes), 1.0)
    if max_instances is not None:
        whole = np.minimum(whole, float(max_instances))
    tick_of_job = np.repeat(np.arange(ticks), jobs)
    return np.rint(np.bincount(tick_of_job, weights=whole, minlength=ticks)).astype(np.int64)


def poisson_counts(rates: np.ndarray, tick_s: float, rng: np.random.Generator) -> np.ndarray:
    """Integer arrivals per tick, Poisson(rates * tick_s); int64 of the same shape as ``rates``."""
    _check_positive("tick_s", tick_s)
    rates = np.asarray(rates, dtype=np.float64)
    if not np.all(np.isfinite(rates)) or np.any(rates < 0):
        raise ValueError("rates must be non-negative finite numbers (found a negative, NaN or infinite rate)")
    return rng.poisson(rates * tick_s).astype(np.int64)


# ---------------------------------------------------------------------------------------------------------------
# CSV table reading shared by the trace readers
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Table:
    path: Path
    header: list[str]
    cells: np.ndarray  # object array of str (rows, columns); object keeps column slicing cheap
    lines: np.ndarray  # int64 (rows,), 1-based file line of each row

    def column_index(self, name: str) -> int:
        return self.header.index(name)

    def column(self, name: str) -> np.ndarray:
        return self.cells[:, self.column_index(name)]


def _read_table(path: str | os.PathLike[str], required_columns: Sequence[str], need_rows: bool) -> _Table:
    """Read a CSV with a header; check the required columns are there and every row has the header's width."""
    path = Path(path)
    if not path.is_file():
        raise TraceFormatError(path, "file not found")
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            for row in reader:
                if row:
                    rows.append(row)
                    lines.append(reader.line_num)
    except UnicodeDecodeError as error:
        raise TraceFormatError(path, f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    except csv.Error as error:
        raise TraceFormatError(path, f"malformed CSV: {error}") from None
    if not header:
        raise TraceFormatError(path, "empty file (no header line)")
    header = [name.strip() for name in header]
    missing = [name for name in required_columns if name not in header]
    if missing:
        raise TraceFormatError(path, f"missing columns: {', '.join(missing)}")
    if need_rows and not rows:
        raise TraceFormatError(path, "no data rows after the header")
    for row, line in zip(rows, lines, strict=True):
        if len(row) != len(header):
            raise TraceFormatError(path, f"line {line}: has {len(row)} fields but the header has {len(header)}")
    cells = np.array(rows, dtype=object).reshape(len(rows), len(header))
    return _Table(path, header, cells, np.asarray(lines, dtype=np.int64))


def _first_unparsable(table: _Table, cells: np.ndarray, columns: Sequence[str]) -> TraceFormatError:
    """The error naming the first cell float() cannot read (only called once a bulk parse failed)."""
    for row_index, row in enumerate(cells):
        for column, text in zip(columns, row, strict=True):
            try:
                float(text)
            except ValueError:
                line = table.lines[row_index]
                return TraceFormatError(table.path, f"line {line}, column '{column}': not a number: {text!r}")
    return TraceFormatError(table.path, "unparsable numeric value")


def _cell_error(table: _Table, cells: np.ndarray, mask: np.ndarray, columns: Sequence[str], problem: str) -> TraceFormatError:
    """The error naming the first cell (in file order) where ``mask`` is set."""
    row_index, column_index = np.argwhere(mask)[0]
    line = table.lines[row_index]
    text = str(cells[row_index, column_index])
    return TraceFormatError(table.path, f"line {line}, column '{columns[column_index]}': {problem}: {text!r}")


def _parse_numbers(table: _Table, columns: Sequence[str], what: str = "value", signed: bool = False) -> np.ndarray:
    """Float64 (rows, len(columns)) of the named columns; every cell must be a finite number, non-negative unless
    ``signed``."""
    cells = table.cells[:, [table.column_index(name) for name in columns]]
    try:
        values = cells.astype(np.float64)
    except ValueError:
        raise _first_unparsable(table, cells, columns) from None
    if not np.all(np.isfinite(values)):
        raise _cell_error(table, cells, ~np.isfinite(values), columns, "not a finite number")
    if not signed and np.any(values < 0):
        raise _cell_error(table, cells, values < 0, columns, f"negative {what}")
    return values


def _parse_optional(table: _Table, column: str, upper: float | None = None) -> np.ndarray:
    """Float64 (rows,) of one column whose blank cells are NaN; the others finite, non-negative, at most ``upper``."""
    cells = np.char.strip(table.column(column).astype(str)).astype(object).reshape(-1, 1)
    blank = cells[:, 0] == ""
    values = np.full(cells.shape[0], np.nan)
    if (~blank).any():
        filled = _Table(table.path, [column], cells[~blank], table.lines[~blank])
        values[~blank] = _parse_numbers(filled, [column])[:, 0]
        if upper is not None and np.any(values[~blank] > upper):
            raise _cell_error(filled, filled.cells, values[~blank, None] > upper, [column], f"above {upper:g}")
    return values


def _parse_counts(table: _Table, columns: Sequence[str]) -> np.ndarray:
    """Int64 (rows, len(columns)) of the named columns; every cell must be a non-negative whole number."""
    cells = table.cells[:, [table.column_index(name) for name in columns]]
    values = _parse_numbers(table, columns, what="count")
    fractional = values != np.floor(values)
    if np.any(fractional):
        raise _cell_error(table, cells, fractional, columns, "count is not a whole number")
    return values.astype(np.int64)


def _first_occurrence_index(keys: Sequence[object]) -> dict[object, int]:
    return {key: index for index, key in reversed(list(enumerate(keys)))}


# ---------------------------------------------------------------------------------------------------------------
# Azure Functions 2019
# ---------------------------------------------------------------------------------------------------------------

_AZURE_ID_COLUMNS = ("HashOwner", "HashApp", "HashFunction", "Trigger")


@dataclass(frozen=True)
class AzureFunctionsTrace:
    """Per-minute invocation counts of F functions over M minutes, with their durations and app memory."""

    owners: list[str]
    apps: list[str]
    functions: list[str]
    triggers: list[str]
    minutes: np.ndarray  # int64 (M,), minute numbers from the header
    counts: np.ndarray  # int64 (F, M) invocations per function per minute
    avg_duration_ms: np.ndarray  # float64 (F,), NaN where durations.csv has no row
    app_memory_mb: np.ndarray  # float64 (F,), the function's app's AverageAllocatedMb, NaN where missing


def _minute_numbers(table: _Table, minute_columns: list[str]) -> np.ndarray:
    if not minute_columns:
        raise TraceFormatError(table.path, "no minute columns after HashOwner,HashApp,HashFunction,Trigger")
    for name in minute_columns:
        if not name.isdigit():
            raise TraceFormatError(table.path, f"column '{name}' is not a minute number")
    minutes = np.array([int(name) for name in minute_columns], dtype=np.int64)
    gaps = np.flatnonzero(np.diff(minutes) != 1)
    if gaps.size:
        at = gaps[0]
        raise TraceFormatError(table.path, f"minute columns must be consecutive: '{minutes[at + 1]}' follows '{minutes[at]}'")
    return minutes


def _read_durations(path: Path, owners: list[str], apps: list[str], functions: list[str]) -> np.ndarray:
    table = _read_table(path, ("HashOwner", "HashApp", "HashFunction", "Average"), need_rows=False)
    averages = _parse_numbers(table, ["Average"])[:, 0]
    keys = list(zip(table.column("HashOwner"), table.column("HashApp"), table.column("HashFunction"), strict=True))
    row_of = _first_occurrence_index(keys)
    rows = np.array([row_of.get(key, -1) for key in zip(owners, apps, functions, strict=True)], dtype=np.int64)
    return np.where(rows >= 0, averages[rows], np.nan) if averages.size else np.full(len(functions), np.nan)


def _read_app_memory(path: Path, apps: list[str]) -> np.ndarray:
    table = _read_table(path, ("HashApp", "AverageAllocatedMb"), need_rows=False)
    memory = _parse_numbers(table, ["AverageAllocatedMb"])[:, 0]
    row_of = _first_occurrence_index(list(table.column("HashApp")))
    rows = np.array([row_of.get(app, -1) for app in apps], dtype=np.int64)
    return np.where(rows >= 0, memory[rows], np.nan) if memory.size else np.full(len(apps), np.nan)


def read_azure_functions(directory: str | Path) -> AzureFunctionsTrace:
    """Read ``invocations.csv``, ``durations.csv`` and ``memory.csv`` from an Azure Functions 2019 trace directory.

    Functions keep the order of ``invocations.csv``. Durations are matched by (HashOwner, HashApp, HashFunction),
    memory by HashApp (first row of the app wins); unmatched functions get NaN.
    """
    directory = Path(directory)
    table = _read_table(directory / "invocations.csv", _AZURE_ID_COLUMNS, need_rows=True)
    minute_columns = [name for name in table.header if name not in _AZURE_ID_COLUMNS]
    minutes = _minute_numbers(table, minute_columns)
    owners, apps, functions, triggers = (table.column(name).tolist() for name in _AZURE_ID_COLUMNS)
    return AzureFunctionsTrace(
        owners=owners,
        apps=apps,
        functions=functions,
        triggers=triggers,
        minutes=minutes,
        counts=_parse_counts(table, minute_columns),
        avg_duration_ms=_read_durations(directory / "durations.csv", owners, apps, functions),
        app_memory_mb=_read_app_memory(directory / "memory.csv", apps),
    )


def top_functions(trace: AzureFunctionsTrace, k: int) -> np.ndarray:
    """Indices of the ``k`` functions with the most invocations, most first, ties broken by lower index."""
    if k < 0:
        raise ValueError(f"k must be non-negative, got {k}")
    totals = trace.counts.sum(axis=1)
    return np.argsort(-totals, kind="stable")[:k].astype(np.int64)


def app_counts(trace: AzureFunctionsTrace) -> tuple[list[str], np.ndarray]:
    """Invocations summed per app: (app names in first-seen order, int64 (A, M))."""
    names, first_index, inverse = np.unique(np.array(trace.apps, dtype=str), return_index=True, return_inverse=True)
    order = np.argsort(first_index)
    rank_of_sorted = np.empty_like(order)
    rank_of_sorted[order] = np.arange(order.size)
    sums = np.zeros((names.size, trace.counts.shape[1]), dtype=np.int64)
    np.add.at(sums, rank_of_sorted[inverse.reshape(-1)], trace.counts)
    return names[order].tolist(), sums


def _check_counts(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts)
    if counts.ndim not in (1, 2):
        raise ValueError(f"counts_per_minute must be 1-D (M,) or 2-D (S, M), got shape {counts.shape}")
    as_float = counts.astype(np.float64)
    if not np.all(np.isfinite(as_float)) or np.any(as_float < 0) or np.any(as_float != np.floor(as_float)):
        raise ValueError("counts_per_minute must hold non-negative whole numbers")
    return counts.astype(np.int64)


_MULTINOMIAL_CHUNK_CELLS = 4_000_000  # bound on series * minutes * slots drawn at once (memory)


def _series_chunks(series: int, cells_per_series: int) -> range:
    step = max(1, _MULTINOMIAL_CHUNK_CELLS // max(1, cells_per_series))
    return range(0, series, step)


def _spread_whole_ticks(counts: np.ndarray, ticks_per_minute: int, rng: np.random.Generator) -> np.ndarray:
    """Each minute covers exactly ``ticks_per_minute`` ticks: a uniform multinomial per minute."""
    series, minute_count = counts.shape
    probabilities = np.full(ticks_per_minute, 1.0 / ticks_per_minute)
    result = np.empty((series, minute_count * ticks_per_minute), dtype=np.int64)
    chunks = _series_chunks(series, minute_count * ticks_per_minute)
    for begin in chunks:
        chunk = counts[begin : begin + chunks.step]
        result[begin : begin + chunks.step] = rng.multinomial(chunk, probabilities).reshape(chunk.shape[0], -1)
    return result


def _spread_fractional_ticks(counts: np.ndarray, ticks_per_minute: float, ticks: int, rng: np.random.Generator) -> np.ndarray:
    """Minutes straddle tick edges: a multinomial over the ticks each minute overlaps, weighted by overlap."""
    series, minute_count = counts.shape
    starts = np.arange(minute_count) * ticks_per_minute  # minute edges in tick units
    first_tick = np.floor(starts).astype(np.int64)
    slots = math.ceil(ticks_per_minute) + 1
    slot_ticks = first_tick[:, None] + np.arange(slots)[None, :]  # (M, slots)
    overlap = np.minimum(slot_ticks + 1, starts[:, None] + ticks_per_minute) - np.maximum(slot_ticks, starts[:, None])
    probabilities = np.clip(overlap, 0.0, None)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    target = np.minimum(slot_ticks, ticks - 1).reshape(-1)  # the last partial tick absorbs any overhang
    result = np.zeros((series, ticks), dtype=np.int64)
    chunks = _series_chunks(series, minute_count * slots)
    for begin in chunks:
        spread = rng.multinomial(counts[begin : begin + chunks.step], probabilities)  # (chunk, M, slots)
        flat = spread.reshape(spread.shape[0], -1)
        rows = np.arange(flat.shape[0])[:, None] * ticks + target[None, :]
        summed = np.bincount(rows.reshape(-1), weights=flat.reshape(-1), minlength=flat.shape[0] * ticks)
        result[begin : begin + chunks.step] = np.rint(summed).astype(np.int64).reshape(-1, ticks)
    return result


def minute_counts_to_ticks(counts_per_minute: np.ndarray, tick_s: float, seconds_per_minute: float, rng: np.random.Generator) -> np.ndarray:
    """Spread per-minute counts uniformly at random over ticks, keeping each minute's total exactly.

    A trace minute lasts ``seconds_per_minute`` simulated seconds (60 = real time, 6 = ten times faster).
    Input (M,) or (S, M); output int64 (ticks,) or (S, ticks), ticks = round(M * seconds_per_minute / tick_s)
    (at least 1 when M > 0). Arrivals fall uniformly within their minute and land in tick
    floor(arrival_time / tick_s); arrivals past the last tick (when rounding shortened the horizon) land in it.
    """
    _check_positive("tick_s", tick_s)
    _check_positive("seconds_per_minute", seconds_per_minute)
    counts = _check_counts(counts_per_minute)
    matrix = counts.reshape(1, -1) if counts.ndim == 1 else counts
    minute_count = matrix.shape[1]
    ticks_per_minute = seconds_per_minute / tick_s
    ticks = max(round(minute_count * ticks_per_minute), 1 if minute_count else 0)
    whole = round(ticks_per_minute)
    if minute_count == 0:
        result = np.zeros((matrix.shape[0], 0), dtype=np.int64)
    elif whole >= 1 and abs(ticks_per_minute - whole) < 1e-9 * max(1.0, ticks_per_minute):
        result = _spread_whole_ticks(matrix, whole, rng)
    else:
        result = _spread_fractional_ticks(matrix, ticks_per_minute, ticks, rng)
    return result[0] if counts.ndim == 1 else result


# ---------------------------------------------------------------------------------------------------------------
# Azure LLM inference 2023
# ---------------------------------------------------------------------------------------------------------------

_TIMESTAMP_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d{1,9})?")


@dataclass(frozen=True)
class LLMTrace:
    """One row per request, sorted by arrival."""

    arrival_s: np.ndarray  # float64 seconds since the first request, sorted
    context_tokens: np.ndarray  # int64
    generated_tokens: np.ndarray  # int64


def _parse_timestamps(table: _Table) -> np.ndarray:
    """TIMESTAMP column as datetime64[ns]; 'YYYY-MM-DD HH:MM:SS[.fraction up to 9 digits]'."""
    texts = np.char.strip(table.column("TIMESTAMP").astype(str))
    matches = [_TIMESTAMP_PATTERN.fullmatch(text) is not None for text in texts.tolist()]
    parsed: np.ndarray | None = None
    if all(matches):
        try:
            parsed = texts.astype("datetime64[ns]")
        except ValueError:
            parsed = None
    if parsed is None:
        bad_rows = [index for index, ok in enumerate(matches) if not ok] or [_first_bad_timestamp(texts)]
        line = table.lines[bad_rows[0]]
        raise TraceFormatError(
            table.path,
            f"line {line}, column 'TIMESTAMP': not a 'YYYY-MM-DD HH:MM:SS.fffffff' time: {texts[bad_rows[0]]!r}",
        )
    return parsed


def _first_bad_timestamp(texts: np.ndarray) -> int:
    for index, text in enumerate(texts.tolist()):
        try:
            np.datetime64(text, "ns")
        except ValueError:
            return index
    return 0


def read_azure_llm(path: str | os.PathLike[str]) -> LLMTrace:
    """Read an Azure LLM inference 2023 trace (``TIMESTAMP,ContextTokens,GeneratedTokens``)."""
    table = _read_table(path, ("TIMESTAMP", "ContextTokens", "GeneratedTokens"), need_rows=True)
    timestamps = _parse_timestamps(table)
    tokens = _parse_counts(table, ["ContextTokens", "GeneratedTokens"])
    order = np.argsort(timestamps, kind="stable")
    nanoseconds = (timestamps[order] - timestamps[order[0]]).astype(np.int64)
    return LLMTrace(
        arrival_s=nanoseconds.astype(np.float64) / 1e9,
        context_tokens=tokens[order, 0],
        generated_tokens=tokens[order, 1],
    )


def bin_requests(arrival_s: np.ndarray, tick_s: float, ticks: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Requests per tick (int64), or summed ``weights`` per tick (float64); arrivals outside [0, ticks*tick_s) dropped."""
    _check_ticks(ticks, tick_s)
    arrival_s = np.asarray(arrival_s, dtype=np.float64)
    tick_index = np.floor(arrival_s / tick_s)
    inside = (tick_index >= 0) & (tick_index < ticks)
    indices = tick_index[inside].astype(np.int64)
    if weights is None:
        return np.bincount(indices, minlength=ticks).astype(np.int64)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != arrival_s.shape:
        raise ValueError(f"weights shape {weights.shape} does not match arrival_s shape {arrival_s.shape}")
    return np.bincount(indices, weights=weights[inside], minlength=ticks).astype(np.float64)


# ---------------------------------------------------------------------------------------------------------------
# Alibaba cluster-trace-v2017 batch tasks
# ---------------------------------------------------------------------------------------------------------------

ALIBABA_BATCH_COLUMNS = (
    "task_create_time",
    "task_end_time",
    "job_id",
    "task_id",
    "number_of_instances",
    "status",
    "number_of_cpus_requested_per_instance_in_the_task",
    "normalized_memory_requested_per_instance_in_the_task",
)
ALIBABA_BATCH_STATUSES = ("Terminated", "Waiting", "Running", "Failed")
ALIBABA_SPLITS = ("job", "cpu", "duration")
"""How a replay deals tasks to services: by a hash of the job id, by CPU-request band, by task-duration band."""


@dataclass(frozen=True)
class AlibabaBatchTrace:
    """One row per task, sorted by create time (file order within a second)."""

    create_s: np.ndarray  # float64, seconds since the trace's start (a few are negative: created before it)
    end_s: np.ndarray  # float64; 0 (before create_s) for tasks still running at the trace's end
    job_id: np.ndarray  # int64
    task_id: np.ndarray  # int64
    instances: np.ndarray  # int64 instances the task launches, each one unit of work
    status: np.ndarray  # str: Terminated, Waiting, Running or Failed
    cpu_cores: np.ndarray  # float64 cores per instance (the trace's 100 is one core); NaN where blank
    memory: np.ndarray  # float64 normalized memory per instance, 0..1; NaN where blank

    @property
    def duration_s(self) -> np.ndarray:
        """End minus create per task; +inf for tasks that had not ended (end before create)."""
        duration = self.end_s - self.create_s
        return np.where(duration >= 0, duration, np.inf)


def read_alibaba_batch(path: str | os.PathLike[str]) -> AlibabaBatchTrace:
    """Read an Alibaba cluster-trace-v2017 ``batch_task.csv`` (the header row is required; see the module docstring)."""
    table = _read_table(path, ALIBABA_BATCH_COLUMNS, need_rows=True)
    times = _parse_numbers(table, ["task_create_time", "task_end_time"], signed=True)
    ids = _parse_counts(table, ["job_id", "task_id", "number_of_instances"])
    status = np.char.strip(table.column("status").astype(str))
    unknown = np.flatnonzero(~np.isin(status, ALIBABA_BATCH_STATUSES))
    if unknown.size:
        line = table.lines[unknown[0]]
        raise TraceFormatError(
            table.path, f"line {line}, column 'status': not one of {', '.join(ALIBABA_BATCH_STATUSES)}: {status[unknown[0]]!r}"
        )
    cpus = _parse_optional(table, "number_of_cpus_requested_per_instance_in_the_task")
    memory = _parse_optional(table, "normalized_memory_requested_per_instance_in_the_task", upper=1.0)
    order = np.argsort(times[:, 0], kind="stable")
    return AlibabaBatchTrace(
        create_s=times[order, 0],
        end_s=times[order, 1],
        job_id=ids[order, 0],
        task_id=ids[order, 1],
        instances=ids[order, 2],
        status=status[order],
        cpu_cores=cpus[order] / 100.0,
        memory=memory[order],
    )


def alibaba_groups(trace: AlibabaBatchTrace, split: str, count: int, bounds: Sequence[float] = ()) -> np.ndarray:
    """Which of ``count`` services each task goes to; int64 (tasks,).

    ``job``: a multiplicative hash of the job id modulo ``count`` (a job's tasks stay together; ``bounds`` unused).
    ``cpu`` / ``duration``: ``count - 1`` ascending ``bounds`` (cores per instance / seconds from create to end); a
    task goes to the first service whose bound its value is below, the last service takes the rest. Tasks with no CPU
    request go to the first service; tasks that had not ended count as longest.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if split == "job":
        hashed = (trace.job_id.astype(np.uint64) * np.uint64(2654435761)) % np.uint64(2**32)
        return ((hashed >> np.uint64(16)) % np.uint64(count)).astype(np.int64)
    if split not in ALIBABA_SPLITS:
        raise ValueError(f"split must be one of {', '.join(ALIBABA_SPLITS)}, got {split!r}")
    edges = np.asarray(bounds, dtype=np.float64)
    if edges.size != count - 1 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"a {split} split over {count} services needs {count - 1} ascending bounds, got {list(bounds)}")
    values = np.nan_to_num(trace.cpu_cores, nan=0.0) if split == "cpu" else trace.duration_s
    return np.searchsorted(edges, values, side="right").astype(np.int64)


def alibaba_batch_counts(
    trace: AlibabaBatchTrace, groups: np.ndarray, count: int, tick_s: float, ticks: int, speedup: float = 1.0, start_s: float = 0.0
) -> np.ndarray:
    """Instances per group per tick, int64 (count, ticks): every task's instances arrive together in the tick of
    ``(create_s - start_s) / speedup`` (so a job submission stays one burst); tasks outside the horizon are dropped."""
    _check_ticks(ticks, tick_s)
    _check_positive("speedup", speedup)
    groups = np.asarray(groups, dtype=np.int64)
    if groups.shape != trace.instances.shape:
        raise ValueError(f"groups shape {groups.shape} does not match the trace's {trace.instances.shape} tasks")
    tick_index = np.floor((trace.create_s - start_s) / speedup / tick_s)
    inside = (tick_index >= 0) & (tick_index < ticks)
    cells = groups[inside] * ticks + tick_index[inside].astype(np.int64)
    summed = np.bincount(cells, weights=trace.instances[inside].astype(np.float64), minlength=count * ticks)
    return np.rint(summed).astype(np.int64).reshape(count, ticks)


# ---------------------------------------------------------------------------------------------------------------
# Generic time_s,service,count CSV
# ---------------------------------------------------------------------------------------------------------------


def read_generic_csv(path: str | os.PathLike[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read ``time_s,service,count`` rows: service -> (time_s float64, count float64), services in first-seen order.

    Times must be finite and non-negative; counts non-negative whole numbers. Rows keep file order.
    """
    table = _read_table(path, ("time_s", "service", "count"), need_rows=True)
    times = _parse_numbers(table, ["time_s"])[:, 0]
    counts = _parse_counts(table, ["count"])[:, 0].astype(np.float64)
    services = np.char.strip(table.column("service").astype(str))
    empty = np.flatnonzero(services == "")
    if empty.size:
        raise TraceFormatError(table.path, f"line {table.lines[empty[0]]}, column 'service': empty service name")
    names, first_index, inverse = np.unique(services, return_index=True, return_inverse=True)
    rows_by_service = np.argsort(inverse.reshape(-1), kind="stable")  # grouped by service, file order inside
    groups = np.split(rows_by_service, np.cumsum(np.bincount(inverse.reshape(-1)))[:-1])
    return {str(names[position]): (times[groups[position]], counts[groups[position]]) for position in np.argsort(first_index)}


def generic_counts_to_ticks(times: np.ndarray, counts: np.ndarray, tick_s: float, ticks: int) -> np.ndarray:
    """Sum ``counts`` into tick bins (tick floor(time / tick_s)); int64 (ticks,); times outside the horizon dropped."""
    times = np.asarray(times, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    if times.shape != counts.shape:
        raise ValueError(f"times shape {times.shape} does not match counts shape {counts.shape}")
    return np.rint(bin_requests(times, tick_s, ticks, weights=counts)).astype(np.int64)
