"""Keep-alive policies for cold starts. Called by local_agents.controllers' keep-alive controllers (per service, in
simulated seconds) and by `ama keepalive` (per app, per trace minute); feeds pre-warm and keep-alive windows.

Policies follow Shahrad et al., "Serverless in the Wild: Characterizing and Optimizing the Serverless Workload at a
Large Cloud Provider", USENIX ATC 2020 (section 4). After an application's invocation ends, a policy gives two
windows in minutes: ``prewarm`` (the app's image is unloaded until then; 0 keeps it loaded) and ``keepalive`` (how
long it then stays loaded). A caller working in seconds multiplies both by 60.

* ``FixedKeepAlive(minutes)``: prewarm 0, keepalive ``minutes`` (AWS Lambda used 10, Azure Functions 20).
* ``HybridHistogram``: the paper's hybrid histogram policy, checked against the public Rust implementation in
  dslab (github.com/osukhoroslov/dslab, crates/dslab-faas/src/extra/hybrid_histogram.rs). Per app it keeps a
  histogram of idle times over ``range_min`` minutes in ``bin_min`` bins, the coefficient of variation (CV) of the
  bin counts (sample std, ddof=1, over all bins, divided by their mean), the count of out-of-bounds (OOB) idle times
  (``idle >= range_min``: those that fall past the last bin) and the whole idle-time series. Then:

  - OOB share ``>= oob_threshold``: "out-of-bounds". Forecast the next idle time F and use
    prewarm ``F * (1 - arima_margin)``, keepalive ``2 * F * arima_margin``.
  - else fewer than ``min_samples`` in-range idle times or CV ``< cv_threshold``: "uncertain", the paper's
    conservative standard keep-alive: prewarm 0, keepalive ``range_min``.
  - else "certain": with head/tail the first bins whose cumulative share reaches ``head``/``tail``,
    prewarm ``head * bin_min * (1 - hist_margin)``, keepalive ``(tail + 1) * bin_min * (1 + hist_margin)``.

  Deviations from dslab, all deliberate: (1) the forecast is an AR(1) fit by least squares on the idle-time series,
  not ARIMA (no new dependency); see ``_ar1_forecast``. (2) Idle times are per app (between the app's consecutive
  invoked minutes), where dslab measures them per function and files them under the function's app. (3)
  ``min_samples`` is added; its default 1 is dslab's behaviour (CV is 0 until the first in-range idle time, so
  an app with no idle time yet is "uncertain"). Note that CV alone cannot flag "too few samples": a single idle
  time gives CV = sqrt(n_bins) (15.5 for 240 bins), which reads as "certain". (4) With no idle time at all an app
  is never "out-of-bounds" (dslab would forecast from an empty series).

Trace evaluation (``simulate_apps``, minute granularity like the paper's simulator). Time is measured in minutes;
an invocation counted in minute m occupies that whole minute [m, m + 1). A *run* is a maximal stretch of
consecutive invoked minutes; the app stays loaded through a run, so only a run's first minute can be cold, and
then only that minute's first invocation is a cold start (the rest share the instance it started).

* Idle time fed to the policy: between consecutive invoked minutes m < m', ``m' - m - 1`` (the time from the end of
  minute m to the start of minute m'); 0 for back-to-back minutes, and those zeros are fed too.
* After a run ending in minute m the policy gives (prewarm p, keepalive k), asked once the run's idle times are fed.
  The app is loaded over idle time [p, p + k), i.e. minutes [m + 1 + p, m + 1 + p + k). The next run, starting
  after idle time I, is warm iff ``p <= I < p + k``. With whole-minute windows this loads exactly minutes
  (m + p, m + p + k] (with p = 0: through minute m + k), so keepalive10 keeps a gap of up to 10 minutes warm.
* Wasted memory is loaded time while idle: the overlap of [p, p + k) with the idle span [0, I) (after the last
  run: with the span up to the end of the trace; time past the trace end is not counted), times ``minute_s``
  seconds, times the app's memory in GB (1 GB = 1024 MB). With whole-minute windows this is 60 s x memory per
  loaded minute without an invocation; fractional windows count fractional minutes.
* Every app starts unloaded, so its first invocation is a cold start.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from simulators.errors import ConfigError
from simulators.workloads import AzureFunctionsTrace, app_counts, read_azure_functions

MB_PER_GB = 1024.0
DEFAULT_REPORT_POLICIES = ("keepalive10", "keepalive20", "hybrid")
PATTERN_CERTAIN = "certain"
PATTERN_UNCERTAIN = "uncertain"
PATTERN_OUT_OF_BOUNDS = "out-of-bounds"
_FIXED_NAME = re.compile(r"keepalive(\d+(?:\.\d+)?)")


class KeepAlivePolicy(Protocol):
    """Decides, per application, the (prewarm, keepalive) windows in minutes after an invocation ends."""

    name: str

    def observe_idle(self, app: int, idle_min: float) -> None:
        """Record one idle time (minutes between the end of one invocation and the start of the next)."""
        ...

    def windows(self, app: int) -> tuple[float, float]:
        """(prewarm_min, keepalive_min) for the app now."""
        ...


def _fail(message: str) -> ConfigError:
    return ConfigError(f"keepalive: {message}")


def _check_number(name: str, value: float, low: float, high: float = math.inf) -> float:
    """``value`` as a float; it must be a finite real number in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise _fail(f"{name} must be a number, got {value!r}")
    if not (math.isfinite(value) and low <= value <= high):
        interval = f"[{low:g}, {high:g}]" if math.isfinite(high) else f">= {low:g}"
        raise _fail(f"{name} must be a finite number {interval}, got {value!r}")
    return float(value)


def _check_positive(name: str, value: float) -> float:
    number = _check_number(name, value, 0.0)
    if number <= 0:
        raise _fail(f"{name} must be positive, got {value!r}")
    return number


# ---------------------------------------------------------------------------------------------------------------
# Policies
# ---------------------------------------------------------------------------------------------------------------


class FixedKeepAlive:
    """Keep every app loaded ``minutes`` after each invocation; never pre-warm."""

    def __init__(self, minutes: float) -> None:
        self.minutes = _check_number("minutes", minutes, 0.0)
        self.name = f"keepalive{self.minutes:g}"

    def observe_idle(self, app: int, idle_min: float) -> None:
        """Fixed windows learn nothing."""

    def windows(self, app: int) -> tuple[float, float]:
        return 0.0, self.minutes


@dataclass
class _IdleSeries:
    """Running sums of one app's idle-time series for the AR(1) forecast (x = previous idle time, y = next)."""

    count: int = 0
    total: float = 0.0
    last: float = 0.0
    low: float = math.inf
    high: float = -math.inf
    pairs: int = 0
    sum_x: float = 0.0
    sum_y: float = 0.0
    sum_xx: float = 0.0
    sum_xy: float = 0.0


@dataclass
class _AppHistory:
    """One app's range-limited histogram of idle times plus its out-of-bounds count and idle-time series."""

    bins: np.ndarray  # int64 (n_bins,)
    in_range: int = 0
    square_sum: int = 0  # sum of squared bin counts, kept exactly for the CV
    out_of_bounds: int = 0
    series: _IdleSeries = field(default_factory=_IdleSeries)


def _add_to_series(series: _IdleSeries, idle_min: float) -> None:
    if series.count:
        series.pairs += 1
        series.sum_x += series.last
        series.sum_y += idle_min
        series.sum_xx += series.last * series.last
        series.sum_xy += series.last * idle_min
    series.count += 1
    series.total += idle_min
    series.last = idle_min
    series.low = min(series.low, idle_min)
    series.high = max(series.high, idle_min)


def _ar1_forecast(series: _IdleSeries) -> float:
    """One-step forecast of the next idle time: AR(1) with intercept, fitted by least squares on (x[t-1], x[t]).

    Fewer than three samples (at most one pair) or a constant lagged series leave the slope undetermined; the
    forecast is then the series mean (the value itself with one sample, as dslab does). The forecast is clipped to
    the range the series has shown, so a poorly determined fit cannot extrapolate to a negative or runaway value.
    """
    mean = series.total / series.count
    if series.pairs < 2:
        return mean
    spread_x = series.sum_xx - series.sum_x * series.sum_x / series.pairs
    if spread_x <= 1e-9 * max(1.0, series.sum_xx):
        return mean
    slope = (series.sum_xy - series.sum_x * series.sum_y / series.pairs) / spread_x
    intercept = (series.sum_y - slope * series.sum_x) / series.pairs
    return min(max(intercept + slope * series.last, series.low), series.high)


def _bin_count_cv(history: _AppHistory) -> float:
    """CV of the bin counts (sample std with ddof=1 over all bins, divided by their mean); 0 with no samples."""
    if history.in_range == 0:
        return 0.0
    bins = history.bins.size
    mean = history.in_range / bins
    variance = (history.square_sum - history.in_range * mean) / (bins - 1)
    return math.sqrt(max(variance, 0.0)) / mean


def _first_bin_reaching(history: _AppHistory, share: float) -> int:
    """First bin whose cumulative share of the in-range idle times is >= ``share``."""
    cumulative = np.cumsum(history.bins) / history.in_range
    return min(int(np.searchsorted(cumulative, share, side="left")), history.bins.size - 1)


class HybridHistogram:
    """The hybrid histogram policy of Shahrad et al. (ATC 2020); rules and deviations in the module docstring."""

    name = "hybrid"

    def __init__(
        self,
        range_min: float = 240,
        bin_min: float = 1,
        head: float = 0.05,
        tail: float = 0.99,
        cv_threshold: float = 2.0,
        oob_threshold: float = 0.5,
        hist_margin: float = 0.10,
        arima_margin: float = 0.15,
        min_samples: int = 1,
    ) -> None:
        self.range_min = _check_positive("range_min", range_min)
        self.bin_min = _check_positive("bin_min", bin_min)
        bins = round(self.range_min / self.bin_min)
        if bins < 2 or abs(bins * self.bin_min - self.range_min) > 1e-9 * self.range_min:
            raise _fail(f"range_min ({range_min!r}) must be a whole number (>= 2) of bin_min ({bin_min!r})")
        self.n_bins = bins
        self.head = _check_number("head", head, 0.0, 1.0)
        self.tail = _check_number("tail", tail, self.head, 1.0)
        self.cv_threshold = _check_number("cv_threshold", cv_threshold, 0.0)
        self.oob_threshold = _check_number("oob_threshold", oob_threshold, 0.0, 1.0)
        self.hist_margin = _check_number("hist_margin", hist_margin, 0.0, 1.0)
        self.arima_margin = _check_number("arima_margin", arima_margin, 0.0, 1.0)
        if isinstance(min_samples, bool) or not isinstance(min_samples, (int, np.integer)) or min_samples < 1:
            raise _fail(f"min_samples must be an integer >= 1, got {min_samples!r}")
        self.min_samples = int(min_samples)
        self._apps: dict[int, _AppHistory] = {}

    def _history(self, app: int) -> _AppHistory:
        history = self._apps.get(app)
        if history is None:
            history = self._apps[app] = _AppHistory(bins=np.zeros(self.n_bins, dtype=np.int64))
        return history

    def observe_idle(self, app: int, idle_min: float) -> None:
        if not (math.isfinite(idle_min) and idle_min >= 0):
            raise _fail(f"idle_min must be a non-negative finite number, got {idle_min!r}")
        history = self._history(app)
        _add_to_series(history.series, float(idle_min))
        bin_index = int(idle_min // self.bin_min)
        if bin_index >= self.n_bins:
            history.out_of_bounds += 1
            return
        history.square_sum += 2 * int(history.bins[bin_index]) + 1
        history.bins[bin_index] += 1
        history.in_range += 1

    def bin_counts(self, app: int) -> np.ndarray:
        """A copy of the app's histogram, int64 (n_bins,)."""
        return self._history(app).bins.copy()

    def cv(self, app: int) -> float:
        """CV of the app's bin counts (0 before its first in-range idle time)."""
        return _bin_count_cv(self._history(app))

    def pattern(self, app: int) -> str:
        """``"out-of-bounds"``, ``"uncertain"`` or ``"certain"``: which rule ``windows`` applies now."""
        history = self._history(app)
        observed = history.in_range + history.out_of_bounds
        if observed and history.out_of_bounds / observed >= self.oob_threshold:
            return PATTERN_OUT_OF_BOUNDS
        if history.in_range < self.min_samples or _bin_count_cv(history) < self.cv_threshold:
            return PATTERN_UNCERTAIN
        return PATTERN_CERTAIN

    def forecast(self, app: int) -> float:
        """The AR(1) forecast of the app's next idle time; NaN before its first idle time."""
        series = self._history(app).series
        return _ar1_forecast(series) if series.count else math.nan

    def windows(self, app: int) -> tuple[float, float]:
        pattern = self.pattern(app)
        if pattern == PATTERN_OUT_OF_BOUNDS:
            forecast = self.forecast(app)
            return forecast * (1.0 - self.arima_margin), forecast * self.arima_margin * 2.0
        if pattern == PATTERN_UNCERTAIN:
            return 0.0, self.range_min
        history = self._history(app)
        head_bin = _first_bin_reaching(history, self.head)
        tail_bin = _first_bin_reaching(history, self.tail)
        return head_bin * self.bin_min * (1.0 - self.hist_margin), (tail_bin + 1) * self.bin_min * (1.0 + self.hist_margin)


def make_keepalive_policy(name: str, **params: float) -> KeepAlivePolicy:
    """A fresh policy by name: ``"keepaliveN"`` (N minutes, e.g. keepalive10, keepalive20) or ``"hybrid"``.

    ``params`` go to ``HybridHistogram``; fixed keep-alive takes none.
    """
    if name == HybridHistogram.name:
        unknown = sorted(set(params) - set(inspect.signature(HybridHistogram).parameters))
        if unknown:
            raise _fail(f"unknown hybrid parameter(s): {', '.join(unknown)}")
        return HybridHistogram(**params)
    match = _FIXED_NAME.fullmatch(name)
    if match is None:
        raise _fail(f"unknown policy {name!r} (expected 'keepaliveN' with N minutes, or 'hybrid')")
    if params:
        raise _fail(f"policy {name!r} takes no parameters, got: {', '.join(sorted(params))}")
    return FixedKeepAlive(float(match.group(1)))


# ---------------------------------------------------------------------------------------------------------------
# Trace evaluation
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppResults:
    """Per-app outcome of one policy over a trace."""

    policy: str
    invocations: np.ndarray  # int64 (A,)
    cold_starts: np.ndarray  # int64 (A,)
    wasted_gb_s: np.ndarray  # float64 (A,), loaded-while-idle time x memory

    def cold_start_rates(self) -> np.ndarray:
        """Cold starts per 100 invocations for each app with at least one invocation, float64 (invoked apps,)."""
        invoked = self.invocations > 0
        return self.cold_starts[invoked] / self.invocations[invoked] * 100.0

    def summary(self) -> dict[str, float]:
        """Headline numbers; rate percentiles are over invoked apps (NaN when none is)."""
        rates = self.cold_start_rates()
        p50, p75, p90 = np.percentile(rates, [50, 75, 90]) if rates.size else (math.nan,) * 3
        return {
            "apps": int(self.invocations.size),
            "invoked_apps": int(rates.size),
            "invocations": int(self.invocations.sum()),
            "total_cold_starts": int(self.cold_starts.sum()),
            "cold_start_rate_mean": float(rates.mean()) if rates.size else math.nan,
            "cold_start_rate_p50": float(p50),
            "cold_start_rate_p75": float(p75),
            "cold_start_rate_p90": float(p90),
            "wasted_memory_gb_s": float(self.wasted_gb_s.sum()),
        }


def _loaded_minutes(prewarm: float, keepalive: float, idle_span: float) -> float:
    """Overlap of the loaded interval [prewarm, prewarm + keepalive) with the idle span [0, idle_span)."""
    return max(0.0, min(prewarm + keepalive, idle_span) - min(prewarm, idle_span))


def _is_warm(prewarm: float, keepalive: float, idle_min: float) -> bool:
    return prewarm <= idle_min < prewarm + keepalive


def _simulate_app(app: int, invocations: np.ndarray, policy: KeepAlivePolicy) -> tuple[int, float]:
    """Cold starts and loaded-while-idle minutes of one app's per-minute invocation counts."""
    invoked_minutes = np.flatnonzero(invocations)
    if invoked_minutes.size == 0:
        return 0, 0.0
    cold_starts = 1
    loaded_idle = 0.0
    for idle in (np.diff(invoked_minutes) - 1).tolist():
        if idle > 0:
            prewarm, keepalive = policy.windows(app)
            cold_starts += not _is_warm(prewarm, keepalive, idle)
            loaded_idle += _loaded_minutes(prewarm, keepalive, idle)
        policy.observe_idle(app, float(idle))
    prewarm, keepalive = policy.windows(app)
    loaded_idle += _loaded_minutes(prewarm, keepalive, invocations.size - int(invoked_minutes[-1]) - 1)
    return cold_starts, loaded_idle


def _check_trace(counts: np.ndarray, memory_mb: np.ndarray, minute_s: float) -> tuple[np.ndarray, np.ndarray]:
    counts = np.asarray(counts)
    if counts.ndim != 2:
        raise _fail(f"counts must be 2-D (apps, minutes), got shape {counts.shape}")
    as_float = counts.astype(np.float64)
    if not np.all(np.isfinite(as_float)) or np.any(as_float < 0) or np.any(as_float != np.floor(as_float)):
        raise _fail("counts must hold non-negative whole numbers")
    memory = np.asarray(memory_mb, dtype=np.float64)
    if memory.shape != (counts.shape[0],):
        raise _fail(f"memory_mb must have shape ({counts.shape[0]},) to match counts, got {memory.shape}")
    if not np.all(np.isfinite(memory)) or np.any(memory < 0):
        raise _fail("memory_mb must hold non-negative finite numbers")
    _check_positive("minute_s", minute_s)
    return counts.astype(np.int64), memory


def simulate_apps(counts: np.ndarray, memory_mb: np.ndarray, policy: KeepAlivePolicy, minute_s: float = 60) -> AppResults:
    """Replay per-app per-minute invocation counts (A, M) under ``policy``; semantics in the module docstring.

    ``memory_mb`` (A,) is each app's memory while loaded. The policy keeps state per app index, so pass a fresh one.
    """
    counts, memory = _check_trace(counts, memory_mb, minute_s)
    cold_starts = np.zeros(counts.shape[0], dtype=np.int64)
    loaded_idle_min = np.zeros(counts.shape[0], dtype=np.float64)
    for app in range(counts.shape[0]):
        cold_starts[app], loaded_idle_min[app] = _simulate_app(app, counts[app], policy)
    wasted = loaded_idle_min * minute_s * memory / MB_PER_GB
    return AppResults(policy=policy.name, invocations=counts.sum(axis=1), cold_starts=cold_starts, wasted_gb_s=wasted)


def app_memory_mb(trace: AzureFunctionsTrace, app_names: Sequence[str]) -> np.ndarray:
    """Memory per app (MB): the sum of its sampled functions' memory shares, float64 in ``app_names`` order.

    The sampled memory.csv spreads each app's memory evenly over all its functions in the full trace, so this sum
    is the app's memory when every function of it was sampled and a proportional part of it otherwise. Functions
    without a memory row add nothing.
    """
    index = {name: position for position, name in enumerate(app_names)}
    memory = np.zeros(len(app_names), dtype=np.float64)
    np.add.at(memory, [index[app] for app in trace.apps], np.nan_to_num(trace.app_memory_mb, nan=0.0))
    return memory


def azure_keepalive_report(directory: str | Path, policies: Sequence[str] = DEFAULT_REPORT_POLICIES) -> dict:
    """Run each named policy over an Azure Functions 2019 trace grouped by app.

    Returns ``{"apps", "minutes", "functions_without_memory", "policies": {name: AppResults.summary()}}``.
    """
    trace = read_azure_functions(directory)
    names, counts = app_counts(trace)
    memory = app_memory_mb(trace, names)
    summaries = {name: simulate_apps(counts, memory, make_keepalive_policy(name)).summary() for name in policies}
    return {
        "apps": len(names),
        "minutes": int(counts.shape[1]),
        "functions_without_memory": int(np.isnan(trace.app_memory_mb).sum()),
        "policies": summaries,
    }
