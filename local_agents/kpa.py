"""Knative Pod Autoscaler, exactly. Called by local_agents.controllers' KPA controller once per simulated second per
service (``record``) and once per tick (``step``); feeds it desired replica counts, panic mode and the reason for
each change.

A pure per-service state machine: time comes in as seconds (``now_s``), load as the service's observed total
in-flight concurrency, and nothing here knows about the simulator. Checked against knative/serving:

* ``WindowedAverage`` is ``aggregation.TimedFloat64Buckets`` (bucketing.go) with 1 s buckets and the default
  "linear" window algorithm: ``Record`` adds a value to its second's bucket, zeroing the buckets skipped since the
  last write and resetting the window after a whole window without writes; ``WindowAverage`` divides the window's
  total by the number of buckets since the first write (so a window that is not yet full averages over the seconds
  it has), leaves out the seconds since the last write, and floors to 6 decimals (``roundToNDigits``);
  ``IsEmpty`` is true when nothing was written for more than a window (Knative's ``ErrNoData``).
* The panic window is ``MakeMetric``'s: ``round(stable_window * panic_window_percent / 100)`` seconds, at least 1.
* ``KPA.step`` is ``autoscaler.Scale`` (scaling/autoscaler.go) run every ``tickInterval`` (2 s), with Reachable
  true, no scale-down delay and activation scale 1: ready count ``max(1, ready)``; ``maxScaleUp = ceil(rate_up *
  ready)``, ``maxScaleDown = floor(ready / rate_down)``; ``dspc``/``dppc`` = ceil(observed / target) clamped to
  [maxScaleDown, maxScaleUp]; panic starts or extends when ``dppc / ready >= panic_threshold``, ends once no panic
  was seen for a stable window (``panicTime + stableWindow`` strictly before now), and while panicking the count is
  ``max(stable, panic)`` and never below the highest panic count (``maxPanicPods``). A new KPA starts in panic when
  it is created over more than one ready pod (``newAutoscaler``).
* The target per pod is ``ResolveMetricTarget``'s: ``max(0.01, container_concurrency * target_utilization)``, with
  ``container_concurrency`` 0 (unlimited) meaning ``container-concurrency-target-default`` 100.
* Then the PodAutoscaler reconciler's ``scaler.scale``: ``applyBounds(min, max)`` (max 0 means no upper bound), and
  ``handleScaleToZero``: with scale-to-zero enabled, 0 is applied only once the revision has wanted 0 continuously
  for ``scale_to_zero_grace_s`` (before that it keeps 1); with it disabled, 0 becomes 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, field_validator

from local_agents.hpa import settings_from_params
from simulators.errors import ConfigError

CONTAINER_CONCURRENCY_TARGET_DEFAULT = 100.0
"""``container-concurrency-target-default``: the target basis when container concurrency is 0 (unlimited)."""
TARGET_MIN = 0.01
"""``autoscaling.TargetMin``: the smallest target per pod."""
_ROUND_DIGITS = 6
_NEVER = -(10**15)
"""Go's zero ``time.Time`` in whole seconds: long before any window."""

# ---------------------------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------------------------


class KPASettings(BaseModel):
    """One service's Knative autoscaler knobs (config-autoscaler defaults; bounds from its validation and the
    ``autoscaling`` package constants). ``container_concurrency`` and min/max scale come per call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tick_s: float = Field(2.0, gt=0)
    """The decider's ``tickInterval``."""
    stable_window_s: float = Field(60.0, ge=6, le=3600)
    """``stable-window``, whole seconds (``WindowMin``..``WindowMax``)."""
    panic_window_percent: float = Field(10.0, ge=1, le=100)
    panic_threshold_percent: float = Field(200.0, ge=110, le=1000)
    """``panic-threshold-percentage`` (``PanicThresholdPercentageMin``..``Max``)."""
    target_utilization: float = Field(0.7, gt=0, le=1)
    """``container-concurrency-target-percentage`` as a fraction."""
    max_scale_up_rate: float = Field(1000.0, gt=1)
    max_scale_down_rate: float = Field(2.0, gt=1)
    scale_to_zero_grace_s: float = Field(30.0, gt=0)
    """``scale-to-zero-grace-period`` (Knative requires it positive)."""
    enable_scale_to_zero: bool = True

    @field_validator("stable_window_s")
    @classmethod
    def _whole_seconds(cls, value: float) -> float:
        if value != int(value):
            raise ValueError(f"must be whole seconds, got {value:g}")
        return value

    @property
    def panic_window_s(self) -> int:
        """``MakeMetric``: the stable window times the percentage, rounded to a second (half away from zero), >= 1 s."""
        return max(1, math.floor(self.stable_window_s * self.panic_window_percent / 100.0 + 0.5))

    @property
    def panic_threshold(self) -> float:
        return self.panic_threshold_percent / 100.0

    @classmethod
    def from_params(cls, params: Mapping[str, str | float | bool]) -> Self:
        """Settings from a scenario's or the CLI's loose parameters; unknown or invalid ones raise ConfigError."""
        return settings_from_params(cls, "kpa", params)


# ---------------------------------------------------------------------------------------------------------------
# TimedFloat64Buckets
# ---------------------------------------------------------------------------------------------------------------


def _round_down(value: float) -> float:
    """``roundToNDigits(6, value)``: floor to 6 decimals."""
    scale = math.pow(10, _ROUND_DIGITS)
    return math.floor(value * scale) / scale


class WindowedAverage:
    """The average of per-second samples over the last ``window_s`` seconds: ``TimedFloat64Buckets`` with 1 s
    granularity (a ring of ``window_s`` buckets). Samples in the same second add up, as Knative's bucket does."""

    def __init__(self, window_s: int) -> None:
        if window_s < 1:
            raise ConfigError(f"kpa: averaging window must be >= 1 s, got {window_s}")
        self.window_s = window_s
        self._buckets = [0.0] * window_s
        self._first_write = _NEVER
        self._last_write = _NEVER
        self._window_total = 0.0

    def record(self, now_s: float, value: float) -> None:
        """``TimedFloat64Buckets.Record``."""
        second = math.floor(now_s)
        if second != self._last_write:
            if second + self.window_s <= self._last_write:
                return  # older than a window before the last write: ignored
            if self._first_write == _NEVER or self._first_write > second:
                self._first_write = second
            if second > self._last_write:
                self._advance_to(second)
        self._buckets[second % self.window_s] += value
        self._window_total += value

    def _advance_to(self, second: int) -> None:
        if second - self._last_write >= self.window_s:
            self._first_write = second
            self._buckets = [0.0] * self.window_s
            self._window_total = 0.0
        else:
            for skipped in range(self._last_write + 1, second + 1):
                self._window_total -= self._buckets[skipped % self.window_s]
                self._buckets[skipped % self.window_s] = 0.0
        self._last_write = second

    def is_empty(self, now_s: float) -> bool:
        """``IsEmpty``: nothing written for more than a window."""
        return math.floor(now_s) - self._last_write > self.window_s

    def average(self, now_s: float) -> float:
        """``TimedFloat64Buckets.WindowAverage`` (the "linear" algorithm)."""
        now = math.floor(now_s)
        since_last_write = now - self._last_write
        written_span = self._last_write - self._first_write + 1
        if since_last_write <= 0:
            return _round_down(self._window_total / min(written_span, self.window_s))
        if since_last_write < self.window_s:
            total = self._window_total
            for stale in range(self._last_write + 1, now + 1):
                total -= self._buckets[stale % self.window_s]
            return _round_down(total / min(written_span, self.window_s - since_last_write))
        return 0.0


# ---------------------------------------------------------------------------------------------------------------
# autoscaler.Scale and the scaler's bounds and scale-to-zero
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KPADecision:
    desired: int
    changed: bool
    reason: str
    panic: bool


@dataclass(frozen=True)
class _ScaleResult:
    """What ``autoscaler.Scale`` computed on one tick, for the reason string."""

    stable: float
    panic: float
    target: float
    ready: int
    dspc: int
    dppc: int
    desired_stable: int
    desired_panic: int
    max_scale_up: int
    max_scale_down: int
    desired: int


def target_per_pod(container_concurrency: float, target_utilization: float) -> float:
    """``ResolveMetricTarget`` for the concurrency metric."""
    if container_concurrency < 0:
        raise ConfigError(f"kpa: container_concurrency must be >= 0, got {container_concurrency}")
    total = container_concurrency or CONTAINER_CONCURRENCY_TARGET_DEFAULT
    return max(TARGET_MIN, total * target_utilization)


def apply_bounds(min_replicas: int, max_replicas: int, desired: int) -> int:
    """``applyBounds``: at least ``min_replicas``; at most ``max_replicas`` unless it is 0 (unbounded)."""
    if desired < min_replicas:
        return min_replicas
    if max_replicas != 0 and desired > max_replicas:
        return max_replicas
    return desired


def _check_bounds(min_replicas: int, max_replicas: int) -> None:
    if min_replicas < 0:
        raise ConfigError(f"kpa: min_replicas must be >= 0, got {min_replicas}")
    if max_replicas != 0 and max_replicas < max(1, min_replicas):
        raise ConfigError(f"kpa: max_replicas must be 0 (unbounded) or >= max(1, min_replicas={min_replicas}), got {max_replicas}")


class KPA:
    """One service's Knative autoscaler: the concurrency windows, the panic state and the scale-to-zero clock."""

    def __init__(self, settings: KPASettings | None = None, *, start_s: float = 0.0, initial_ready_pods: int = 0) -> None:
        """``newAutoscaler``: created over more than one ready pod, it starts in panic at ``start_s`` holding that
        many pods, so a restart does not scale down before it has a window of data."""
        self.settings = settings or KPASettings()
        self._stable = WindowedAverage(int(self.settings.stable_window_s))
        self._panic = WindowedAverage(self.settings.panic_window_s)
        self._panic_since_s: float | None = start_s if initial_ready_pods > 1 else None
        self._max_panic_pods = initial_ready_pods
        self._last_tick_s: float | None = None
        self._last_desired: int | None = None
        self._wants_zero_since_s: float | None = None

    @property
    def panicking(self) -> bool:
        return self._panic_since_s is not None

    def record(self, now_s: float, concurrency: float) -> None:
        """The service's observed total in-flight concurrency, once per simulated second (the collector's scrape)."""
        self._stable.record(now_s, concurrency)
        self._panic.record(now_s, concurrency)

    def step(
        self,
        now_s: float,
        ready_pods: int,
        container_concurrency: float,
        min_replicas: int,
        max_replicas: int,
        current_replicas: int | None = None,
    ) -> KPADecision:
        """The decider plus the scaler when a tick is due (the first call, then every ``tick_s``); between ticks and
        without data the count stands. ``changed`` compares with ``current_replicas`` when given, else with this
        KPA's previous answer (or ``ready_pods`` before its first)."""
        before = self._before(ready_pods, current_replicas)
        if self._last_tick_s is not None and now_s - self._last_tick_s < self.settings.tick_s:
            return KPADecision(before, False, "KPA: between ticks, no change", self.panicking)
        self._last_tick_s = now_s
        _check_bounds(min_replicas, max_replicas)
        target = target_per_pod(container_concurrency, self.settings.target_utilization)
        if self._stable.is_empty(now_s):
            return KPADecision(before, False, "KPA: no concurrency data in the stable window yet, no change", self.panicking)
        result = self._scale(now_s, ready_pods, target)
        bounded = apply_bounds(min_replicas, max_replicas, result.desired)
        desired, zero_note = self._handle_scale_to_zero(now_s, bounded)
        self._last_desired = desired
        reason = self._reason(result, before, desired, bounded, zero_note)
        return KPADecision(desired, desired != before, reason, self.panicking)

    def _before(self, ready_pods: int, current_replicas: int | None) -> int:
        if current_replicas is not None:
            return current_replicas
        return ready_pods if self._last_desired is None else self._last_desired

    def _scale(self, now_s: float, ready_pods: int, target: float) -> _ScaleResult:
        """``autoscaler.Scale``: the stable and panic pod counts within the rate limits, then the panic bookkeeping."""
        observed_stable = self._stable.average(now_s)
        observed_panic = self._panic.average(now_s)
        ready_count = max(1.0, float(ready_pods))
        max_scale_up = math.ceil(self.settings.max_scale_up_rate * ready_count)
        max_scale_down = math.floor(ready_count / self.settings.max_scale_down_rate)
        dspc = math.ceil(observed_stable / target)
        dppc = math.ceil(observed_panic / target)
        desired_stable = int(min(max(dspc, max_scale_down), max_scale_up))
        desired_panic = int(min(max(dppc, max_scale_down), max_scale_up))
        self._update_panic(now_s, dppc / ready_count >= self.settings.panic_threshold)
        desired = desired_stable
        if self.panicking:
            self._max_panic_pods = max(self._max_panic_pods, desired_stable, desired_panic)
            desired = self._max_panic_pods
        return _ScaleResult(
            observed_stable,
            observed_panic,
            target,
            ready_pods,
            dspc,
            dppc,
            desired_stable,
            desired_panic,
            max_scale_up,
            max_scale_down,
            desired,
        )

    def _update_panic(self, now_s: float, over_threshold: bool) -> None:
        """Start or extend panic while over the threshold; stop once a stable window passed without it."""
        if over_threshold:
            self._panic_since_s = now_s
        elif self._panic_since_s is not None and self._panic_since_s + self.settings.stable_window_s < now_s:
            self._panic_since_s = None
            self._max_panic_pods = 0

    def _handle_scale_to_zero(self, now_s: float, desired: int) -> tuple[int, str]:
        """``handleScaleToZero``: (replicas, a note when it held the count at 1)."""
        if desired != 0:
            self._wants_zero_since_s = None
            return desired, ""
        if not self.settings.enable_scale_to_zero:
            return 1, "scale-to-zero disabled, keeping 1"
        if self._wants_zero_since_s is None:
            self._wants_zero_since_s = now_s
        waited = now_s - self._wants_zero_since_s
        if waited >= self.settings.scale_to_zero_grace_s:
            return 0, f"idle for the {self.settings.scale_to_zero_grace_s:g} s grace period"
        return 1, f"keeping 1 through the scale-to-zero grace period ({waited:g} of {self.settings.scale_to_zero_grace_s:g} s)"

    def _reason(self, result: _ScaleResult, before: int, desired: int, bounded: int, zero_note: str) -> str:
        mode = "panic" if self.panicking else "stable"
        text = (
            f"KPA: concurrency stable {result.stable:.2f} / panic {result.panic:.2f}, target {result.target:g}/pod "
            f"on {result.ready} ready, {mode} mode, {before} -> {desired} replicas"
        )
        notes = [f"wants {result.dspc} stable / {result.dppc} panic pods"]
        deciding = max(result.dspc, result.dppc) if self.panicking else result.dspc
        if deciding > result.max_scale_up:
            notes.append(f"scale-up limit {result.max_scale_up}")
        if deciding < result.max_scale_down:
            notes.append(f"scale-down limit {result.max_scale_down}")
        if self.panicking and result.desired > max(result.desired_stable, result.desired_panic):
            notes.append(f"no scale-down in panic, holding {result.desired}")
        if bounded != result.desired:
            notes.append(f"bounded to {bounded} by min/max")
        if zero_note:
            notes.append(zero_note)
        return f"{text} ({'; '.join(notes)})"
