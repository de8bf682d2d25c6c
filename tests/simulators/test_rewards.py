"""RewardWeights: frozen, validated, replaced rather than mutated; Dirichlet sampling around the defaults."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from simulators.rewards import REWARD_COMPONENTS, RewardWeights, combine, sample_weights


def test_defaults_are_named_and_frozen() -> None:
    w = RewardWeights()
    assert tuple(w.as_dict()) == REWARD_COMPONENTS
    with pytest.raises(dataclasses.FrozenInstanceError):
        w.sla = 1.0  # type: ignore[misc]
    assert w.replace(sla=0.9).sla == 0.9 and w.sla == 0.4


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf, "high", True])
def test_invalid_values_are_rejected_with_the_component_named(bad: object) -> None:
    with pytest.raises(ValueError, match="energy"):
        RewardWeights(energy=bad)  # type: ignore[arg-type]


def test_unknown_component_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown reward weight"):
        RewardWeights.from_mapping({"happiness": 1.0})


def test_round_trips_and_combine() -> None:
    w = RewardWeights(latency=0.1, sla=0.5, utilization=0.0, energy=0.2, cost=0.1, churn=0.1)
    assert RewardWeights.from_array(w.as_array()) == w
    terms = np.array([[-1.0, -1.0, 1.0, -1.0, -1.0, -1.0], [0, 0, 0, 0, 0, 0]])
    assert combine(terms, w).tolist() == pytest.approx([-1.0, 0.0])
    assert w.describe().startswith("sla 0.50")


def test_sampled_weights_stay_near_the_center_and_sum_like_it() -> None:
    rng = np.random.default_rng(0)
    samples = np.array([sample_weights(rng).as_array() for _ in range(2000)])
    assert samples.sum(1) == pytest.approx(RewardWeights().as_array().sum())
    assert samples.mean(0) == pytest.approx(RewardWeights().as_array(), abs=0.01)
    assert (samples.std(0) > 0).all()
