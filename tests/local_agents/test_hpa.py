"""Kubernetes HPA (local_agents.hpa): the documentation's worked examples, replica_calculator.go's corner cases, and
exact replica trajectories for stabilization, rate limits, bounds and sync timing."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from local_agents.hpa import HPA, HPADecision, HPASettings, NoMetricsError, calculate_replicas
from simulators.errors import ConfigError

REQUEST_M = 100
"""Every pod requests 100m CPU, so a pod's usage in milli-cores is its utilization in percent."""


def calc(current: int, ready: int, usage: float, target_pct: int, unready: int = 0, missing: int = 0) -> tuple[int, int]:
    result = calculate_replicas(current, ready, usage, REQUEST_M, unready, missing, target_pct, 0.1)
    return result.replicas, result.utilization_pct


def run(
    hpa: HPA,
    total_usage_m: Callable[[int], float],
    start_replicas: int,
    until_s: int,
    every_s: int = 15,
    min_replicas: int = 1,
    max_replicas: int = 100,
) -> list[tuple[int, int]]:
    """Step every ``every_s`` seconds with all replicas ready and the service's total CPU usage given per time; the
    new count takes effect at once. Returns the (time, replicas) of every change."""
    replicas, changes = start_replicas, []
    for now in range(0, until_s + 1, every_s):
        decision = hpa.step(now, replicas, replicas, total_usage_m(now), REQUEST_M, 0, 0, min_replicas, max_replicas)
        if decision.changed:
            changes.append((now, decision.desired))
        replicas = decision.desired
    return changes


# -- The documentation's algorithm details ------------------------------------------------------------------------


def test_doc_example_double_of_target_doubles_the_replicas() -> None:
    # "if the current metric value is 200m, and the desired value is 100m, the number of replicas will be doubled"
    assert calc(current=4, ready=4, usage=4 * 200, target_pct=100) == (8, 200)


def test_doc_example_half_of_target_halves_the_replicas() -> None:
    assert calc(current=4, ready=4, usage=4 * 50, target_pct=100) == (2, 50)


@pytest.mark.parametrize("per_pod_m", [105, 95, 110, 90])
def test_doc_example_ratio_within_tolerance_skips_scaling(per_pod_m: int) -> None:
    assert calc(current=10, ready=10, usage=10 * per_pod_m, target_pct=100) == (10, per_pod_m)


def test_doc_example_ratio_past_tolerance_scales() -> None:
    assert calc(current=10, ready=10, usage=10 * 111, target_pct=100) == (12, 111)  # ceil(1.11 * 10)
    assert calc(current=10, ready=10, usage=10 * 89, target_pct=100) == (9, 89)  # ceil(0.89 * 10)


def test_tolerance_boundary_is_inclusive_like_is_within() -> None:
    # 77% / 70% = 1.1 exactly: Tolerances.isWithin keeps the count (|1 - 1.1| <= 0.1 would not, by float rounding).
    assert calc(current=10, ready=10, usage=776, target_pct=70) == (10, 77)


def test_doc_example_unready_pods_count_as_zero_on_scale_up_and_damp_it() -> None:
    # 4 ready pods at 115% would ask for ceil(1.15 * 4) = 5; counting the unready pod at 0% gives 460/500 = 92%, within
    # tolerance, so the current 5 stand.
    result = calculate_replicas(5, 4, 4 * 115, REQUEST_M, 1, 0, 100, 0.1)
    assert (result.replicas, result.utilization_pct, result.recomputed_ratio) == (5, 115, 0.92)
    assert result.unready_counted_at_zero


def test_unready_pods_that_flip_the_direction_cancel_the_scale_up() -> None:
    # 2 ready at 130%, 2 unready at 0%: 260/400 = 65% is below target, so no scale-up (and no scale-down).
    assert calc(current=4, ready=2, usage=260, target_pct=100, unready=2) == (4, 130)


def test_unready_pods_are_ignored_on_scale_down() -> None:
    # usage ratio 0.5 < 1: scaleUpWithUnready is false, the 2 unready pods are left out: ceil(0.5 * 2) = 1.
    assert calc(current=4, ready=2, usage=2 * 50, target_pct=100, unready=2) == (1, 50)


def test_doc_example_missing_metrics_count_as_full_request_on_scale_down() -> None:
    # 3 ready pods at 10% of request (target 50%) plus 1 pod without metrics counted at 100%: (30 + 100) / 400 = 32%,
    # ratio 0.64, ceil(0.64 * 4) = 3, where ignoring the missing pod would give ceil(0.2 * 3) = 1.
    assert calc(current=4, ready=3, usage=30, target_pct=50, missing=1) == (3, 10)


def test_missing_metrics_fall_back_to_the_target_when_it_is_above_100_percent() -> None:
    # target 150%: a missing pod counts at max(100, 150) = 150% on scale-down: (2*30 + 150) / 300 = 70% -> 0.46...
    result = calculate_replicas(3, 2, 60, REQUEST_M, 0, 1, 150, 0.1)
    assert result.missing_filled_pct == 150
    assert (result.replicas, result.utilization_pct) == (2, 30)  # ceil(70/150 * 3) = ceil(1.4) = 2


def test_missing_metrics_count_as_zero_on_scale_up() -> None:
    # 3 ready at 200%, 1 missing at 0%: 600/400 = 150%, ceil(1.5 * 4) = 6.
    result = calculate_replicas(4, 3, 600, REQUEST_M, 0, 1, 100, 0.1)
    assert (result.replicas, result.missing_filled_pct, result.recomputed_ratio) == (6, 0, 1.5)


def test_missing_pods_that_flip_the_direction_cancel_the_scale_down() -> None:
    # 2 ready at 20% (target 50%), 2 missing at 100%: 240/400 = 60% is above target -> keep 4.
    assert calc(current=4, ready=2, usage=40, target_pct=50, missing=2) == (4, 20)


def test_final_guard_refuses_a_scale_down_ratio_that_adds_replicas() -> None:
    # ratio 0.125 -> with the missing pod at 100%: 110/200 = 55% / 80% = 0.6875, ceil(0.6875 * 2) = 2 > 1 current.
    result = calculate_replicas(1, 1, 10, REQUEST_M, 0, 1, 80, 0.1)
    assert result.replicas == 1
    assert "against the metric" in result.hold_reason


def test_utilization_is_an_integer_percent_truncated() -> None:
    # 6099m of 10000m is 60.99% -> 60%: ratio 60/50 = 1.2 exactly, ceil(1.2 * 100) = 120 (not ceil(1.2198 * 100) = 122).
    assert calc(current=100, ready=100, usage=6099, target_pct=50) == (120, 60)
    # 5599m -> 55%: 55/50 = 1.1, inside the inclusive tolerance (55.99% would have scaled to 112).
    assert calc(current=100, ready=100, usage=5599, target_pct=50) == (100, 55)


def test_no_ready_pods_is_an_error_for_the_calculator() -> None:
    with pytest.raises(NoMetricsError):
        calc(current=3, ready=0, usage=0, target_pct=70, unready=3)


# -- HorizontalController: stabilization, rate limits, bounds, timing ---------------------------------------------


def test_scale_down_waits_for_the_max_recommendation_of_the_last_300_s_to_fall() -> None:
    # 700m total on 10 pods (70%: keep 10) until t=60, then 350m (recommendation 5) until t=120, then 140m (2).
    # The window is (now - 300, now]: the last 10 was recorded at t=45, so 10 -> 5 at t=345; the last 5 at t=105,
    # so 5 -> 2 at t=405.
    def usage(now: int) -> float:
        return 700 if now < 60 else 350 if now < 120 else 140

    assert run(HPA(), usage, start_replicas=10, until_s=600) == [(345, 5), (405, 2)]


def test_the_first_sync_seeds_the_window_with_the_current_count() -> None:
    # recordInitialRecommendation: a fresh HPA over 10 idle pods holds 10 for 300 s, then drops at once.
    assert run(HPA(), lambda now: 70, start_replicas=10, until_s=400) == [(300, 1)]


def test_scale_down_reason_names_the_stabilization() -> None:
    hpa = HPA()
    hpa.step(0, 10, 10, 700, REQUEST_M, 0, 0, 1, 100)
    decision = hpa.step(15, 10, 10, 350, REQUEST_M, 0, 0, 1, 100)
    assert decision == HPADecision(10, False, decision.reason, 35)
    assert "calculated 5" in decision.reason
    assert "scale-down stabilized at 10" in decision.reason


def test_scale_up_from_one_replica_is_limited_to_max_of_4_pods_and_100_percent_per_15_s() -> None:
    # 1000% per pod asks for ceil(1000/70 * n) = 15, 72, 143, ...; the limit is max(start + 4, ceil(start * 2)) with
    # start the count at the beginning of the 15 s period (the event 15 s ago is not after the cutoff).
    assert run(HPA(), lambda now: 1000 * 10**6, start_replicas=1, until_s=120) == [
        (0, 5),
        (15, 10),
        (30, 20),
        (45, 40),
        (60, 80),
        (75, 100),
    ]


def test_scale_up_reason_names_utilization_ratio_counts_and_limit() -> None:
    decision = HPA().step(0, 4, 4, 4 * 91, REQUEST_M, 0, 0, 1, 100)
    assert decision == HPADecision(6, True, decision.reason, 91)
    assert decision.reason == "HPA: cpu 91% / target 70% = 1.30 > 1.1 tolerance, 4 -> 6 replicas (calculated 6)"
    limited = HPA().step(0, 2, 2, 2 * 700, REQUEST_M, 0, 0, 1, 100)
    assert limited.reason == "HPA: cpu 700% / target 70% = 10.00 > 1.1 tolerance, 2 -> 6 replicas (calculated 20; scale-up limit 6)"


def test_scale_up_events_count_against_the_whole_policy_period() -> None:
    # With 5 s syncs the +4 at t=0 is still inside (t-15, t] at t=5 and t=10: period start 1, limit 5, no change.
    hpa = HPA(HPASettings(sync_period_s=5))
    assert run(hpa, lambda now: 10**9, start_replicas=1, until_s=40, every_s=5) == [(0, 5), (15, 10), (30, 20)]


def test_scale_up_from_ten_doubles_every_period() -> None:
    assert run(HPA(), lambda now: 10**9, start_replicas=10, until_s=45, max_replicas=1000) == [(0, 20), (15, 40), (30, 80), (45, 160)]


def test_scale_down_by_100_percent_per_period_goes_straight_to_the_recommendation() -> None:
    hpa = HPA(HPASettings(scale_down_stabilization_s=0))
    assert run(hpa, lambda now: 70, start_replicas=10, until_s=60) == [(0, 1)]


def test_scale_down_percent_policy_truncates() -> None:
    # 50% per 15 s: int(10 * 0.5) = 5, int(5 * 0.5) = 2, then the recommendation 1.
    hpa = HPA(HPASettings(scale_down_stabilization_s=0, scale_down_percent=50))
    assert run(hpa, lambda now: 70, start_replicas=10, until_s=60) == [(0, 5), (15, 2), (30, 1)]


def test_max_replicas_caps_and_min_replicas_floors() -> None:
    up = HPA().step(0, 4, 4, 4 * 700, REQUEST_M, 0, 0, 1, 6)
    assert (up.desired, up.changed) == (6, True)
    assert up.reason.endswith("(calculated 40; max 6)")
    down = HPA(HPASettings(scale_down_stabilization_s=0)).step(0, 10, 10, 10, REQUEST_M, 0, 0, 3, 20)
    assert (down.desired, down.changed) == (3, True)
    assert down.reason.endswith("(calculated 1; min 3)")


def test_counts_outside_min_max_move_to_the_bound_without_metrics() -> None:
    above = HPA().step(0, 12, 12, 0, REQUEST_M, 0, 0, 1, 8)
    below = HPA().step(0, 1, 1, 10**6, REQUEST_M, 0, 0, 3, 8)
    assert (above.desired, above.changed, below.desired, below.changed) == (8, True, 3, True)


def test_no_action_between_syncs() -> None:
    hpa = HPA()
    first = hpa.step(0, 4, 4, 4 * 140, REQUEST_M, 0, 0, 1, 100)
    between = hpa.step(14.9, 8, 8, 8 * 700, REQUEST_M, 0, 0, 1, 100)
    next_sync = hpa.step(15, 8, 8, 8 * 700, REQUEST_M, 0, 0, 1, 100)
    assert (first.desired, first.changed) == (8, True)
    assert (between.desired, between.changed) == (8, False)
    assert (next_sync.desired, next_sync.changed) == (16, True)


def test_zero_replicas_disable_scaling() -> None:
    decision = HPA().step(0, 0, 0, 0, REQUEST_M, 0, 0, 1, 10)
    assert decision == HPADecision(0, False, "HPA: scaling is disabled since the replica count of the target is zero, no change", 0)


def test_no_ready_pods_with_metrics_means_no_change() -> None:
    decision = HPA().step(0, 3, 0, 0, REQUEST_M, 3, 0, 1, 10)
    assert (decision.desired, decision.changed) == (3, False)


def test_unready_pods_reach_the_reason() -> None:
    decision = HPA().step(0, 5, 4, 4 * 140, REQUEST_M, 1, 0, 1, 100)
    # 560 / 500 = 112% / 70% = 1.6 -> ceil(1.6 * 5) = 8
    assert decision.desired == 8
    assert "1.60 counting 1 unready at 0%" in decision.reason


# -- Settings ----------------------------------------------------------------------------------------------------------


def test_defaults_are_autoscaling_v2s() -> None:
    settings = HPASettings.from_params({})
    assert (settings.target_pct, settings.tolerance, settings.sync_period_s) == (70, 0.1, 15.0)
    assert (settings.scale_down_stabilization_s, settings.scale_up_stabilization_s) == (300.0, 0.0)
    assert (settings.scale_up_pods, settings.scale_up_percent, settings.scale_down_percent) == (4, 100, 100)


def test_params_may_be_strings() -> None:
    settings = HPASettings.from_params({"target_utilization": "0.5", "sync_period_s": "30", "scale_up_pods": 8})
    assert (settings.target_pct, settings.sync_period_s, settings.scale_up_pods) == (50, 30.0, 8)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"target_utilization": 1.5}, "hpa: target_utilization must be in (0, 1], got 1.5"),
        ({"target_utilization": 0}, "hpa: target_utilization must be in (0, 1], got 0"),
        ({"sync_period_s": -5}, "hpa: sync_period_s must be > 0, got -5"),
        ({"tolerance": "-0.1"}, "hpa: tolerance must be >= 0, got -0.1"),
        ({"scale_down_stabilization_s": 4000}, "hpa: scale_down_stabilization_s must be in [0, 3600], got 4000"),
        ({"foo": 1}, "hpa: unknown parameter 'foo'"),
        ({"tolerance": "abc"}, "hpa: tolerance must be a number, got 'abc'"),
        ({"scale_up_pods": 4.5}, "hpa: scale_up_pods must be a whole number, got 4.5"),
        ({"target_utilization": 0.705}, "hpa: target_utilization must be a whole percent (averageUtilization is an integer), got 0.705"),
    ],
)
def test_invalid_settings_raise_one_line_config_errors(params: dict[str, str | float], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        HPASettings.from_params(params)
    assert str(caught.value) == message


def test_invalid_bounds_raise_config_errors() -> None:
    with pytest.raises(ConfigError, match="max_replicas"):
        HPA().step(0, 3, 3, 300, REQUEST_M, 0, 0, 5, 4)
    with pytest.raises(ConfigError, match="min_replicas"):
        HPA().step(0, 3, 3, 300, REQUEST_M, 0, 0, -1, 4)
