"""Kubernetes HPA, exactly. Called by local_agents.controllers' HPA controller once per sync period per service; feeds
it desired replica counts and the reason for each change.

A pure per-service state machine: time comes in as seconds (``now_s``), CPU as milli-cores, and nothing here knows
about the simulator. It mirrors kube-controller-manager's ``pkg/controller/podautoscaler`` for one CPU Resource metric
with an ``averageUtilization`` target and the autoscaling/v2 default behavior, checked against the Go source:

* ``calculate_replicas`` is ``ReplicaCalculator.GetResourceReplicas`` (replica_calculator.go) with
  ``metricsclient.GetResourceUtilizationRatio`` (metrics/utilization.go): integer utilization
  ``usage * 100 / requests``, ``scaleUpWithUnready``, missing pods at ``max(100, target)``% of their request on a
  scale-down and 0% on a scale-up, unready pods at 0% on a scale-up, the recomputed ratio, no change within tolerance
  or when the direction flips, ``ceil(newRatio * len(metrics))`` and the final guard against moving the wrong way.
  The tolerance test is ``Tolerances.isWithin``: ``1 - tolerance <= ratio <= 1 + tolerance`` (inclusive).
* ``HPA.step`` is ``HorizontalController.reconcileAutoscaler`` (horizontal.go): ``recordInitialRecommendation``;
  scaling disabled at 0 replicas; straight to max/min when the current count is outside them; else
  ``computeReplicasForMetrics`` then ``normalizeDesiredReplicasWithBehaviors``
  (``stabilizeRecommendationWithBehaviors``, ``convertDesiredReplicasWithBehaviorRate`` with
  ``calculateScaleUpLimitWithScalingRules`` / ``calculateScaleDownLimitWithBehaviors``); ``storeScaleEvent`` after a
  change. Time windows compare like Go's ``time.After``/``time.Before``: strictly.

autoscaling/v2 defaults (``SetDefaults_HorizontalPodAutoscalerBehavior`` plus the controller's flags): sync period
15 s, tolerance 0.1, scale-down stabilization 300 s, scale-up stabilization 0 s, scale-up policies Pods 4 and
Percent 100 per 15 s (selectPolicy Max), scale-down policy Percent 100 per 15 s. The caller classifies pods the way
``groupPods`` does: ``ready_pods`` have metrics, ``unready_pods`` are ignored for CPU (pending, unready or still in
their CPU initialization period), ``missing_pods`` should have metrics but have none.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self, TypeVar

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from simulators.errors import ConfigError

SettingsT = TypeVar("SettingsT", bound=BaseModel)

# ---------------------------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------------------------


def _shown(value: object) -> str:
    return str(value) if isinstance(value, (int, float, str)) else repr(value)


def _range_text(settings_cls: type[BaseModel], name: str) -> str:
    """The field's pydantic bounds in words: "> 0", ">= 0", "in (0, 1]", "in [6, 3600]"."""
    low = high = ""
    for bound in settings_cls.model_fields[name].metadata:
        if isinstance(bound, annotated_types.Gt):
            low = f"({bound.gt:g}"
        elif isinstance(bound, annotated_types.Ge):
            low = f"[{bound.ge:g}"
        elif isinstance(bound, annotated_types.Lt):
            high = f"{bound.lt:g})"
        elif isinstance(bound, annotated_types.Le):
            high = f"{bound.le:g}]"
    if low and high:
        return f"in {low}, {high}"
    if low:
        return f"{'>' if low[0] == '(' else '>='} {low[1:]}"
    return f"{'<' if high[-1] == ')' else '<='} {high[:-1]}"


_KIND_BY_ERROR = {
    "float_parsing": "a number",
    "float_type": "a number",
    "int_parsing": "a whole number",
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "finite_number": "a finite number",
}
_BOUND_ERRORS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")


def _first_error_line(settings_cls: type[BaseModel], owner: str, error: ValidationError) -> str:
    first = error.errors()[0]
    name = str(first["loc"][0]) if first["loc"] else "?"
    kind = first["type"]
    if kind == "extra_forbidden":
        return f"{owner}: unknown parameter {name!r}"
    if kind in _BOUND_ERRORS:
        return f"{owner}: {name} must be {_range_text(settings_cls, name)}, got {_shown(first['input'])}"
    if kind in _KIND_BY_ERROR:
        return f"{owner}: {name} must be {_KIND_BY_ERROR[kind]}, got {first['input']!r}"
    if kind == "value_error":
        return f"{owner}: {name} {first['ctx']['error']}"
    return f"{owner}: {name}: {first['msg']}"


def settings_from_params(settings_cls: type[SettingsT], owner: str, params: Mapping[str, Any]) -> SettingsT:
    """Build ``settings_cls`` from loose parameters (strings or numbers); the first problem becomes one ConfigError
    line naming the parameter, e.g. ``"hpa: sync_period_s must be > 0, got -5"``. Shared with local_agents.kpa."""
    try:
        return settings_cls.model_validate(dict(params))
    except ValidationError as error:
        raise ConfigError(_first_error_line(settings_cls, owner, error)) from None


class HPASettings(BaseModel):
    """One HorizontalPodAutoscaler's knobs (min/max replicas come per call). Defaults are autoscaling/v2's; the bounds
    are the API validation's (``validateScalingRules``: window <= 3600 s, period in (0, 1800] s, policy value > 0)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target_utilization: float = Field(0.7, gt=0, le=1)
    """``averageUtilization`` as a fraction of the CPU request; a whole percent (the API field is an int32 %)."""
    tolerance: float = Field(0.1, ge=0)
    """``--horizontal-pod-autoscaler-tolerance``."""
    sync_period_s: float = Field(15.0, gt=0)
    """``--horizontal-pod-autoscaler-sync-period``."""
    scale_down_stabilization_s: float = Field(300.0, ge=0, le=3600)
    scale_up_stabilization_s: float = Field(0.0, ge=0, le=3600)
    scale_up_pods: int = Field(4, gt=0)
    scale_up_percent: int = Field(100, gt=0)
    scale_up_period_s: float = Field(15.0, gt=0, le=1800)
    """The period of both scale-up policies (Pods and Percent)."""
    scale_down_percent: int = Field(100, gt=0)
    scale_down_period_s: float = Field(15.0, gt=0, le=1800)

    @field_validator("target_utilization")
    @classmethod
    def _whole_percent(cls, value: float) -> float:
        if abs(value * 100 - round(value * 100)) > 1e-9:
            raise ValueError(f"must be a whole percent (averageUtilization is an integer), got {value:g}")
        return value

    @property
    def target_pct(self) -> int:
        """``targetAverageUtilization`` as Kubernetes stores it: an integer percent."""
        return round(self.target_utilization * 100)

    @classmethod
    def from_params(cls, params: Mapping[str, str | float]) -> Self:
        """Settings from a scenario's or the CLI's loose parameters; unknown or invalid ones raise ConfigError."""
        return settings_from_params(cls, "hpa", params)


# ---------------------------------------------------------------------------------------------------------------
# ReplicaCalculator.GetResourceReplicas
# ---------------------------------------------------------------------------------------------------------------


class NoMetricsError(ValueError):
    """No ready pod reported metrics: GetResourceReplicas' "did not receive metrics for targeted pods" error."""


@dataclass(frozen=True)
class ReplicaCalculation:
    """What GetResourceReplicas decided, with the intermediate numbers for the reason string."""

    replicas: int
    utilization_pct: int
    usage_ratio: float
    recomputed_ratio: float | None = None
    """The ratio after filling in missing/unready pods; None when the first ratio decided."""
    missing_filled_pct: int | None = None
    """The utilization missing pods were counted at; None when they were left out."""
    unready_counted_at_zero: bool = False
    hold_reason: str = ""
    """Why the current count was kept ("within tolerance", "direction flips", ...); empty when it scales."""


def resource_utilization_ratio(usage_milli_total: float, requests_milli_total: int, target_pct: int) -> tuple[float, int]:
    """``metricsclient.GetResourceUtilizationRatio``: (utilization / target, utilization), the utilization an integer
    percent truncated like Go's int64 division."""
    utilization_pct = int(usage_milli_total * 100 // requests_milli_total)
    return utilization_pct / target_pct, utilization_pct


def within_tolerance(usage_ratio: float, tolerance: float) -> bool:
    """``Tolerances.isWithin`` with the same tolerance both ways: ``1 - tolerance <= ratio <= 1 + tolerance``."""
    return 1.0 - tolerance <= usage_ratio <= 1.0 + tolerance


def calculate_replicas(
    current_replicas: int,
    ready_pods: int,
    usage_milli_total: float,
    request_milli_per_pod: int,
    unready_pods: int,
    missing_pods: int,
    target_pct: int,
    tolerance: float,
) -> ReplicaCalculation:
    """``ReplicaCalculator.GetResourceReplicas`` with every pod requesting ``request_milli_per_pod``. ``usage_milli_total``
    is the summed CPU usage of the ``ready_pods`` (the pods with metrics). Raises NoMetricsError without ready pods."""
    if ready_pods <= 0:
        raise NoMetricsError("did not receive metrics for targeted pods (pods might be unready)")
    usage_ratio, utilization = resource_utilization_ratio(usage_milli_total, ready_pods * request_milli_per_pod, target_pct)

    def hold(why: str, **extra: Any) -> ReplicaCalculation:
        return ReplicaCalculation(current_replicas, utilization, usage_ratio, hold_reason=why, **extra)

    scale_up_with_unready = unready_pods > 0 and usage_ratio > 1.0
    if not scale_up_with_unready and missing_pods == 0:
        if within_tolerance(usage_ratio, tolerance):
            return hold("within tolerance")
        return ReplicaCalculation(math.ceil(usage_ratio * ready_pods), utilization, usage_ratio)

    metric_count, usage_total, missing_pct = ready_pods, float(usage_milli_total), None
    if missing_pods > 0 and usage_ratio < 1.0:
        missing_pct = max(100, target_pct)
        metric_count += missing_pods
        usage_total += missing_pods * (request_milli_per_pod * missing_pct // 100)
    elif missing_pods > 0 and usage_ratio > 1.0:
        missing_pct = 0
        metric_count += missing_pods
    if scale_up_with_unready:
        metric_count += unready_pods
    new_ratio, _ = resource_utilization_ratio(usage_total, metric_count * request_milli_per_pod, target_pct)
    filled = {"recomputed_ratio": new_ratio, "missing_filled_pct": missing_pct, "unready_counted_at_zero": scale_up_with_unready}

    if within_tolerance(new_ratio, tolerance):
        return hold("within tolerance after counting unready/missing pods", **filled)
    if (usage_ratio < 1.0 < new_ratio) or (usage_ratio > 1.0 > new_ratio):
        return hold("direction flips after counting unready/missing pods", **filled)
    new_replicas = math.ceil(new_ratio * metric_count)
    if (new_ratio < 1.0 and new_replicas > current_replicas) or (new_ratio > 1.0 and new_replicas < current_replicas):
        return hold(f"{new_replicas} would move against the metric", **filled)
    return ReplicaCalculation(new_replicas, utilization, usage_ratio, **filled)


# ---------------------------------------------------------------------------------------------------------------
# HorizontalController
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HPADecision:
    desired: int
    changed: bool
    reason: str
    utilization_pct: int


@dataclass
class _TimestampedRecommendation:
    recommendation: int
    timestamp_s: float


@dataclass
class _TimestampedScaleEvent:
    replica_change: int
    """Always positive: pods added (scale-up list) or removed (scale-down list)."""
    timestamp_s: float
    outdated: bool = False


def _replicas_change_per_period(now_s: float, period_s: float, events: list[_TimestampedScaleEvent]) -> int:
    """``getReplicasChangePerPeriod``: the change of the events strictly after ``now - period``."""
    cutoff = now_s - period_s
    return sum(event.replica_change for event in events if event.timestamp_s > cutoff)


def _tolerance_phrase(usage_ratio: float, tolerance: float) -> str:
    if usage_ratio > 1.0 + tolerance:
        return f"> {1.0 + tolerance:g} tolerance"
    if usage_ratio < 1.0 - tolerance:
        return f"< {1.0 - tolerance:g} tolerance"
    return f"within {1.0 - tolerance:g}..{1.0 + tolerance:g} tolerance"


def _check_bounds(min_replicas: int, max_replicas: int) -> None:
    if min_replicas < 0:
        raise ConfigError(f"hpa: min_replicas must be >= 0, got {min_replicas}")
    if max_replicas < max(1, min_replicas):
        raise ConfigError(f"hpa: max_replicas must be >= max(1, min_replicas={min_replicas}), got {max_replicas}")


class HPA:
    """One service's HorizontalPodAutoscaler: its recommendations and scale events live here between syncs."""

    def __init__(self, settings: HPASettings | None = None) -> None:
        self.settings = settings or HPASettings()
        self._recommendations: list[_TimestampedRecommendation] = []
        self._scale_up_events: list[_TimestampedScaleEvent] = []
        self._scale_down_events: list[_TimestampedScaleEvent] = []
        self._last_sync_s: float | None = None
        self._last_utilization_pct = 0

    def step(
        self,
        now_s: float,
        current_replicas: int,
        ready_pods: int,
        usage_milli_total: float,
        request_milli_per_pod: int,
        unready_pods: int,
        missing_pods: int,
        min_replicas: int,
        max_replicas: int,
    ) -> HPADecision:
        """``reconcileAutoscaler`` when a sync is due (the first call, then every ``sync_period_s``); between syncs the
        current count stands. ``current_replicas`` is the target's ``spec.replicas``."""
        if self._last_sync_s is not None and now_s - self._last_sync_s < self.settings.sync_period_s:
            return self._decision(current_replicas, current_replicas, "HPA: between syncs, no change", self._last_utilization_pct)
        self._last_sync_s = now_s
        _check_bounds(min_replicas, max_replicas)
        self._record_initial_recommendation(now_s, current_replicas)
        if current_replicas == 0:
            why = "scaling is disabled since the replica count of the target is zero" if min_replicas else "no pods to measure"
            return self._decision(0, 0, f"HPA: {why}, no change", 0)
        if current_replicas > max_replicas:
            return self._rescale(
                now_s,
                current_replicas,
                max_replicas,
                f"HPA: above max {max_replicas}, {current_replicas} -> {max_replicas} replicas (metrics not read)",
                0,
            )
        if current_replicas < min_replicas:
            return self._rescale(
                now_s,
                current_replicas,
                min_replicas,
                f"HPA: below min {min_replicas}, {current_replicas} -> {min_replicas} replicas (metrics not read)",
                0,
            )
        if request_milli_per_pod <= 0:
            raise ConfigError(f"hpa: request_milli_per_pod must be > 0, got {request_milli_per_pod}")
        if ready_pods <= 0:
            return self._decision(current_replicas, current_replicas, "HPA: no metrics from ready pods, no change", 0)

        calculation = calculate_replicas(
            current_replicas,
            ready_pods,
            usage_milli_total,
            request_milli_per_pod,
            unready_pods,
            missing_pods,
            self.settings.target_pct,
            self.settings.tolerance,
        )
        self._last_utilization_pct = calculation.utilization_pct
        desired, notes = self._normalize(now_s, current_replicas, calculation.replicas, min_replicas, max_replicas)
        reason = self._reason(calculation, current_replicas, desired, notes, unready_pods, missing_pods)
        return self._rescale(now_s, current_replicas, desired, reason, calculation.utilization_pct)

    # -- reconcileAutoscaler helpers ---------------------------------------------------------------------------

    def _decision(self, current: int, desired: int, reason: str, utilization_pct: int) -> HPADecision:
        return HPADecision(desired=desired, changed=desired != current, reason=reason, utilization_pct=utilization_pct)

    def _rescale(self, now_s: float, current: int, desired: int, reason: str, utilization_pct: int) -> HPADecision:
        if desired != current:
            self._store_scale_event(now_s, current, desired)
        return self._decision(current, desired, reason, utilization_pct)

    def _record_initial_recommendation(self, now_s: float, current_replicas: int) -> None:
        """``recordInitialRecommendation``: the first sync seeds the window with the current count."""
        if not self._recommendations:
            self._recommendations.append(_TimestampedRecommendation(current_replicas, now_s))

    def _normalize(self, now_s: float, current: int, proposal: int, min_replicas: int, max_replicas: int) -> tuple[int, list[str]]:
        """``normalizeDesiredReplicasWithBehaviors``: stabilize, then apply the rate limits and min/max."""
        notes = [] if proposal == current else [f"calculated {proposal}"]
        stabilized = self._stabilize(now_s, current, proposal)
        if stabilized != proposal:
            notes.append(self._stabilization_note(current, proposal, stabilized))
        desired, limit_note = self._limit_rate(now_s, current, stabilized, min_replicas, max_replicas)
        if limit_note:
            notes.append(limit_note)
        return desired, notes

    def _stabilization_note(self, current: int, proposal: int, stabilized: int) -> str:
        if proposal >= current:
            return f"scale-up stabilized at {stabilized}: min recommendation of the last {self.settings.scale_up_stabilization_s:g} s"
        return f"scale-down stabilized at {stabilized}: max recommendation of the last {self.settings.scale_down_stabilization_s:g} s"

    def _stabilize(self, now_s: float, current: int, desired: int) -> int:
        """``stabilizeRecommendationWithBehaviors``: clamp the current count into [min of the scale-up window, max of the
        scale-down window] (both include ``desired``), then record the unstabilized ``desired`` in the last slot found
        older than both windows, or append it."""
        up_cutoff = now_s - self.settings.scale_up_stabilization_s
        down_cutoff = now_s - self.settings.scale_down_stabilization_s
        up_recommendation = down_recommendation = desired
        old_index: int | None = None
        for index, sample in enumerate(self._recommendations):
            if sample.timestamp_s > up_cutoff:
                up_recommendation = min(sample.recommendation, up_recommendation)
            if sample.timestamp_s > down_cutoff:
                down_recommendation = max(sample.recommendation, down_recommendation)
            if sample.timestamp_s < up_cutoff and sample.timestamp_s < down_cutoff:
                old_index = index
        recommendation = min(max(current, up_recommendation), down_recommendation)
        fresh = _TimestampedRecommendation(desired, now_s)
        if old_index is None:
            self._recommendations.append(fresh)
        else:
            self._recommendations[old_index] = fresh
        return recommendation

    def _limit_rate(self, now_s: float, current: int, desired: int, min_replicas: int, max_replicas: int) -> tuple[int, str]:
        """``convertDesiredReplicasWithBehaviorRate``: (replicas, the bound that cut them, or "")."""
        if desired > current:
            scale_up_limit = max(self._scale_up_limit(now_s, current), current)
            if max_replicas > scale_up_limit:
                maximum_allowed, note = scale_up_limit, f"scale-up limit {scale_up_limit}"
            else:
                maximum_allowed, note = max_replicas, f"max {max_replicas}"
            return (maximum_allowed, note) if desired > maximum_allowed else (desired, "")
        if desired < current:
            scale_down_limit = min(self._scale_down_limit(now_s, current), current)
            if min_replicas < scale_down_limit:
                minimum_allowed, note = scale_down_limit, f"scale-down limit {scale_down_limit}"
            else:
                minimum_allowed, note = min_replicas, f"min {min_replicas}"
            return (minimum_allowed, note) if desired < minimum_allowed else (desired, "")
        return desired, ""

    def _period_start_replicas(self, now_s: float, current: int, period_s: float) -> int:
        added = _replicas_change_per_period(now_s, period_s, self._scale_up_events)
        deleted = _replicas_change_per_period(now_s, period_s, self._scale_down_events)
        return current - added + deleted

    def _scale_up_limit(self, now_s: float, current: int) -> int:
        """``calculateScaleUpLimitWithScalingRules`` for the Pods and Percent policies, selectPolicy Max."""
        period_start = self._period_start_replicas(now_s, current, self.settings.scale_up_period_s)
        by_pods = period_start + self.settings.scale_up_pods
        by_percent = math.ceil(period_start * (1 + self.settings.scale_up_percent / 100))
        return max(by_pods, by_percent)

    def _scale_down_limit(self, now_s: float, current: int) -> int:
        """``calculateScaleDownLimitWithBehaviors`` for the Percent policy (Go's int32() truncates toward zero)."""
        period_start = self._period_start_replicas(now_s, current, self.settings.scale_down_period_s)
        return int(period_start * (1 - self.settings.scale_down_percent / 100))

    def _store_scale_event(self, now_s: float, previous: int, new: int) -> None:
        """``storeScaleEvent``: mark events older than the policy period outdated and reuse the last of them."""
        if new > previous:
            events, period_s, change = self._scale_up_events, self.settings.scale_up_period_s, new - previous
        else:
            events, period_s, change = self._scale_down_events, self.settings.scale_down_period_s, previous - new
        reuse_index: int | None = None
        for index, event in enumerate(events):
            if event.timestamp_s < now_s - period_s:
                event.outdated = True
            if event.outdated:
                reuse_index = index
        fresh = _TimestampedScaleEvent(change, now_s)
        if reuse_index is None:
            events.append(fresh)
        else:
            events[reuse_index] = fresh

    def _reason(self, calc: ReplicaCalculation, current: int, desired: int, notes: list[str], unready: int, missing: int) -> str:
        target = self.settings.target_pct
        text = f"HPA: cpu {calc.utilization_pct}% / target {target}% = {calc.usage_ratio:.2f} "
        text += _tolerance_phrase(calc.usage_ratio, self.settings.tolerance)
        if calc.recomputed_ratio is not None:
            counted = []
            if calc.unready_counted_at_zero:
                counted.append(f"{unready} unready at 0%")
            if calc.missing_filled_pct is not None:
                counted.append(f"{missing} missing at {calc.missing_filled_pct}%")
            text += f", {calc.recomputed_ratio:.2f} counting {' and '.join(counted)}"
        text += f", {current} -> {desired} replicas"
        details = ([calc.hold_reason] if calc.hold_reason else []) + notes
        return f"{text} ({'; '.join(details)})" if details else text
