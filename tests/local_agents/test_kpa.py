"""Knative Pod Autoscaler (local_agents.kpa): bucketed window averages, and exact replica trajectories for stable
mode, panic mode, the scale-up and scale-down rates and scale-to-zero."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from local_agents.kpa import KPA, KPASettings, WindowedAverage, target_per_pod
from simulators.errors import ConfigError

CONTAINER_CONCURRENCY = 10
"""With the default 70% target utilization each pod targets 7 in-flight requests."""


def run(
    kpa: KPA,
    concurrency: Callable[[int], float],
    start_pods: int,
    until_s: int,
    min_replicas: int = 1,
    max_replicas: int = 100,
) -> list[tuple[int, int, bool]]:
    """Record the concurrency every second and step every 2 s tick; the new count is ready at once. Returns the
    (time, replicas, panic) of every change."""
    pods, changes = start_pods, []
    for now in range(until_s + 1):
        kpa.record(now, concurrency(now))
        if now % 2 == 0:
            decision = kpa.step(now, pods, CONTAINER_CONCURRENCY, min_replicas, max_replicas, current_replicas=pods)
            if decision.changed:
                changes.append((now, decision.desired, decision.panic))
            pods = decision.desired
    return changes


def panic_ticks(kpa: KPA, concurrency: Callable[[int], float], start_pods: int, until_s: int) -> list[int]:
    pods, panicking = start_pods, []
    for now in range(until_s + 1):
        kpa.record(now, concurrency(now))
        if now % 2 == 0:
            decision = kpa.step(now, pods, CONTAINER_CONCURRENCY, 1, 100, current_replicas=pods)
            if decision.panic:
                panicking.append(now)
            pods = decision.desired
    return panicking


# -- WindowedAverage (TimedFloat64Buckets) ---------------------------------------------------------------------------


def test_window_average_over_a_partial_window_divides_by_the_seconds_written() -> None:
    window = WindowedAverage(60)
    for now, value in enumerate([4.0, 8.0, 6.0]):
        window.record(now, value)
    assert window.average(2) == 6.0  # (4 + 8 + 6) / 3, not / 60


def test_window_average_drops_samples_older_than_the_window() -> None:
    window = WindowedAverage(6)
    for now in range(10):
        window.record(now, float(now))
    assert window.average(9) == 6.5  # seconds 4..9


def test_window_average_leaves_out_seconds_since_the_last_write() -> None:
    window = WindowedAverage(6)
    for now in range(10):
        window.record(now, 6.0)
    assert window.average(12) == 6.0  # seconds 7..9 over 3 valid buckets
    assert not window.is_empty(15)
    assert window.is_empty(16)
    assert window.average(16) == 0.0


def test_window_counts_gaps_as_zero_and_sums_samples_in_one_second() -> None:
    window = WindowedAverage(60)
    window.record(0, 3.0)
    window.record(0.5, 3.0)
    window.record(3, 2.0)
    assert window.average(3) == 2.0  # (6 + 0 + 0 + 2) / 4


def test_window_restarts_after_a_whole_window_without_data() -> None:
    window = WindowedAverage(6)
    window.record(0, 100.0)
    window.record(10, 1.0)
    assert window.average(10) == 1.0


def test_panic_window_is_rounded_stable_window_share() -> None:
    assert KPASettings().panic_window_s == 6
    assert KPASettings(stable_window_s=6, panic_window_percent=1).panic_window_s == 1
    assert KPASettings(stable_window_s=25, panic_window_percent=10).panic_window_s == 3  # 2.5 s rounds half up


def test_target_per_pod_follows_resolve_metric_target() -> None:
    assert target_per_pod(10, 0.7) == 7.0
    assert target_per_pod(0, 0.7) == 70.0  # unlimited concurrency targets the default 100
    assert target_per_pod(0.01, 0.5) == 0.01  # never below TargetMin


# -- autoscaler.Scale trajectories -------------------------------------------------------------------------------------


def test_stable_mode_follows_the_stable_window_average_after_a_step() -> None:
    # 35 in flight on 5 pods, then 56 from t=60 (8 pods' worth; 8/5 = 1.6 < 2, no panic). With k seconds of 56 in the
    # 60 s window, the stable average / 7 is 5 + k/20: 6 pods for k in 1..20, 7 for 21..40, 8 from 41.
    assert run(KPA(), lambda now: 35 if now < 60 else 56, start_pods=5, until_s=150) == [
        (60, 6, False),
        (80, 7, False),
        (100, 8, False),
    ]


def test_reason_names_observed_values_target_mode_and_counts() -> None:
    kpa = KPA()
    kpa.record(0, 21)
    decision = kpa.step(0, 1, CONTAINER_CONCURRENCY, 1, 100)
    assert decision.reason == (
        "KPA: concurrency stable 21.00 / panic 21.00, target 7/pod on 1 ready, panic mode, 1 -> 3 replicas (wants 3 stable / 3 panic pods)"
    )


def test_panic_scales_up_on_the_panic_window_and_never_down_until_a_stable_window_without_panic() -> None:
    # 7 in flight on 1 pod, a burst of 70 from t=60 to t=79, then 7 again.
    # t=60: panic window 5*7+70 = 105/6 = 17.5 -> 3 pods, 3/1 >= 2: panic. t=62: 38.5 -> 6 (6/3 >= 2, panic extended).
    # t=64: 59.5 -> 9, t=66: 70 -> 10. The last over-threshold tick is t=62, so panic ends at the first tick after
    # 62 + 60 = 122: t=124, where the stable window still averages 22.75 -> 4 pods, cut to 10/2 = 5 by the scale-down
    # rate; then 3 (t=126), 2 (t=134) and 1 (t=140) as the burst leaves the stable window.
    def burst(now: int) -> float:
        return 70 if 60 <= now < 80 else 7

    assert run(KPA(), burst, start_pods=1, until_s=160) == [
        (60, 3, True),
        (62, 6, True),
        (64, 9, True),
        (66, 10, True),
        (124, 5, False),
        (126, 3, False),
        (134, 2, False),
        (140, 1, False),
    ]
    ticks = panic_ticks(KPA(), burst, start_pods=1, until_s=160)
    assert (ticks[0], ticks[-1], len(ticks)) == (60, 122, 32)


def test_panic_resets_max_panic_pods_when_it_ends() -> None:
    # A second burst after the first panic ended panics again (panic window 49/6 -> 2 pods, 2/1 >= 2) but holds the
    # new peak of 2, not the old peak of 10.
    def two_bursts(now: int) -> float:
        return 70 if 60 <= now < 80 else 14 if 200 <= now < 210 else 7

    changes = run(KPA(), two_bursts, start_pods=1, until_s=220)
    assert [change for change in changes if change[0] >= 200] == [(200, 2, True)]


def test_max_scale_down_rate_halves_the_ready_count_per_tick() -> None:
    # 7 in flight asks for 1 pod; from 10 ready the floor is floor(10/2) = 5, then floor(5/2) = 2, then 1.
    assert run(KPA(), lambda now: 7, start_pods=10, until_s=10) == [(0, 5, False), (2, 2, False), (4, 1, False)]


def test_scale_down_rate_with_a_stable_count_of_three() -> None:
    assert run(KPA(), lambda now: 21, start_pods=10, until_s=10) == [(0, 5, False), (2, 3, False)]


def test_max_scale_up_rate_bounds_each_tick() -> None:
    # 700 in flight wants 100 pods; with max_scale_up_rate 2 each tick allows ceil(2 * ready).
    kpa = KPA(KPASettings(max_scale_up_rate=2))
    assert run(kpa, lambda now: 700, start_pods=1, until_s=20) == [
        (0, 2, True),
        (2, 4, True),
        (4, 8, True),
        (6, 16, True),
        (8, 32, True),
        (10, 64, True),
        (12, 100, True),
    ]


def test_default_scale_up_rate_reaches_the_target_in_one_tick() -> None:
    assert run(KPA(), lambda now: 700, start_pods=1, until_s=4) == [(0, 100, True)]


def test_a_new_kpa_over_several_pods_starts_in_panic_and_holds_them_for_a_stable_window() -> None:
    # newAutoscaler: panic from t=0 holding 10; no tick is over the threshold, so panic ends at t=62 (> 0 + 60).
    kpa = KPA(initial_ready_pods=10)
    assert run(kpa, lambda now: 7, start_pods=10, until_s=80) == [(62, 5, False), (64, 2, False), (66, 1, False)]


def test_scale_to_zero_waits_for_an_all_zero_stable_window_and_the_grace_period() -> None:
    # Load stops at t=60. The stable window [t-59, t] is all zero from t=119, so the first tick wanting 0 is t=120;
    # the grace period keeps 1 pod until t=150. Load returning at t=200 brings 1 pod back.
    def load(now: int) -> float:
        return 0 if 60 <= now < 200 else 7

    assert run(KPA(), load, start_pods=1, until_s=210, min_replicas=0) == [(150, 0, False), (200, 1, False)]


def test_scale_to_zero_reason_during_the_grace_period() -> None:
    kpa = KPA(KPASettings(stable_window_s=6))
    for now in range(7):
        kpa.record(now, 0)
    kpa.step(0, 1, CONTAINER_CONCURRENCY, 0, 10)
    decision = kpa.step(6, 1, CONTAINER_CONCURRENCY, 0, 10, current_replicas=1)
    assert (decision.desired, decision.changed) == (1, False)
    assert "keeping 1 through the scale-to-zero grace period (6 of 30 s)" in decision.reason


def test_no_scale_to_zero_when_disabled_or_min_is_one() -> None:
    def load(now: int) -> float:
        return 7 if now < 60 else 0

    disabled = KPA(KPASettings(enable_scale_to_zero=False))
    assert run(disabled, load, start_pods=1, until_s=300, min_replicas=0) == []
    assert run(KPA(), load, start_pods=1, until_s=300, min_replicas=1) == []


def test_min_and_max_bound_the_count_and_max_zero_is_unbounded() -> None:
    assert run(KPA(), lambda now: 700, start_pods=1, until_s=2, max_replicas=20) == [(0, 20, True)]
    assert run(KPA(), lambda now: 7000, start_pods=1, until_s=2, max_replicas=0) == [(0, 1000, True)]
    assert run(KPA(), lambda now: 7, start_pods=1, until_s=2, min_replicas=4) == [(0, 4, False)]


def test_no_action_between_ticks_or_without_data() -> None:
    kpa = KPA()
    no_data = kpa.step(0, 3, CONTAINER_CONCURRENCY, 1, 100, current_replicas=3)
    kpa.record(1, 70)
    between = kpa.step(1, 3, CONTAINER_CONCURRENCY, 1, 100, current_replicas=3)
    next_tick = kpa.step(2, 3, CONTAINER_CONCURRENCY, 1, 100, current_replicas=3)
    assert (no_data.desired, no_data.changed) == (3, False)
    assert "no concurrency data" in no_data.reason
    assert (between.desired, between.changed) == (3, False)
    assert (next_tick.desired, next_tick.changed) == (10, True)


def test_changed_compares_with_the_previous_answer_without_current_replicas() -> None:
    kpa = KPA()
    kpa.record(0, 14)
    first = kpa.step(0, 1, CONTAINER_CONCURRENCY, 1, 100)
    kpa.record(2, 14)
    second = kpa.step(2, 1, CONTAINER_CONCURRENCY, 1, 100)
    assert (first.desired, first.changed, second.desired, second.changed) == (2, True, 2, False)


# -- Settings ----------------------------------------------------------------------------------------------------------


def test_defaults_are_config_autoscalers() -> None:
    settings = KPASettings.from_params({})
    assert (settings.tick_s, settings.stable_window_s, settings.panic_window_percent) == (2.0, 60.0, 10.0)
    assert (settings.panic_threshold, settings.target_utilization, settings.scale_to_zero_grace_s) == (2.0, 0.7, 30.0)
    assert (settings.max_scale_up_rate, settings.max_scale_down_rate, settings.enable_scale_to_zero) == (1000.0, 2.0, True)


def test_params_may_be_strings() -> None:
    settings = KPASettings.from_params({"stable_window_s": "120", "enable_scale_to_zero": "false"})
    assert (settings.stable_window_s, settings.panic_window_s, settings.enable_scale_to_zero) == (120.0, 12, False)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"stable_window_s": 5}, "kpa: stable_window_s must be in [6, 3600], got 5"),
        ({"stable_window_s": 60.5}, "kpa: stable_window_s must be whole seconds, got 60.5"),
        ({"panic_window_percent": 0.5}, "kpa: panic_window_percent must be in [1, 100], got 0.5"),
        ({"panic_threshold_percent": 100}, "kpa: panic_threshold_percent must be in [110, 1000], got 100"),
        ({"target_utilization": 0}, "kpa: target_utilization must be in (0, 1], got 0"),
        ({"max_scale_up_rate": 1}, "kpa: max_scale_up_rate must be > 1, got 1"),
        ({"max_scale_down_rate": "1.0"}, "kpa: max_scale_down_rate must be > 1, got 1.0"),
        ({"tick_s": 0}, "kpa: tick_s must be > 0, got 0"),
        ({"scale_to_zero_grace_s": 0}, "kpa: scale_to_zero_grace_s must be > 0, got 0"),
        ({"enable_scale_to_zero": "maybe"}, "kpa: enable_scale_to_zero must be true or false, got 'maybe'"),
        ({"panic_window": 10}, "kpa: unknown parameter 'panic_window'"),
    ],
)
def test_invalid_settings_raise_one_line_config_errors(params: dict[str, str | float], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        KPASettings.from_params(params)
    assert str(caught.value) == message


def test_invalid_call_arguments_raise_config_errors() -> None:
    with pytest.raises(ConfigError, match="container_concurrency"):
        KPA().step(0, 1, -1, 1, 10)
    with pytest.raises(ConfigError, match="max_replicas"):
        KPA().step(0, 1, 10, 5, 3)
