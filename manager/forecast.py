"""Arrival forecasts from the observed past only. Called by manager.whatif and manager.verify, whose digital twin (the simulator forked
from the current state) must not read the scenario's future arrivals, which a real cluster does not have; feeds the
twin one sampled future per call.

Method (stated, simple, and honest about what it knows): an empirical bootstrap of the recent past. Each future
tick of a service draws its arrivals from that service's observed arrivals in the last ``window_s`` seconds (uniformly,
with replacement), so a spike in force stays in force over the horizon and a quiet period stays quiet; a level
correction scales the draws so their mean equals the last ``level_s`` seconds' mean (the current level, when the
window holds the start of a spike). Work per request follows the last observed tick's. With no past (tick 0) the
forecast is no arrivals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ForecastSettings:
    window_s: float = 120.0
    """The recent past the future ticks are drawn from."""
    level_s: float = 30.0
    """The most recent stretch whose mean sets the forecast's level."""


def sample_future(
    past_arrivals: np.ndarray, past_work_scale: np.ndarray, ticks: int, tick_s: float, rng: np.random.Generator,
    settings: ForecastSettings | None = None,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """One sampled future (arrivals (ticks, S), work scale (ticks, S)) from the observed past (T, S) alone."""
    s = settings or ForecastSettings()
    services = past_arrivals.shape[1]
    if past_arrivals.shape[0] == 0:
        return np.zeros((ticks, services)), np.ones((ticks, services))
    window = past_arrivals[-max(1, round(s.window_s / tick_s)) :]
    recent = past_arrivals[-max(1, round(s.level_s / tick_s)) :]
    draws = window[rng.integers(0, window.shape[0], size=(ticks, services)), np.arange(services)[None, :]]
    mean = draws.mean(axis=0)
    level = np.where(mean > 0, recent.mean(axis=0) / np.maximum(mean, 1e-12), 1.0)
    future = np.round(draws * level[None, :])
    work = np.repeat(past_work_scale[-1:], ticks, axis=0)
    return future, work


def outlook(
    past_arrivals: np.ndarray, tick_s: float, services: list[str], settings: ForecastSettings | None = None
) -> dict[str, dict[str, float]]:
    """What the forecast rests on, per service, in req/s: the level it is scaled to (the last ``level_s``) and the
    10th and 90th percentile of the ``window_s`` it draws from. Fed to the LLM planner's prompt by the runtime."""
    s = settings or ForecastSettings()
    if past_arrivals.shape[0] == 0:
        return {}
    window = past_arrivals[-max(1, round(s.window_s / tick_s)) :] / tick_s
    recent = past_arrivals[-max(1, round(s.level_s / tick_s)) :] / tick_s
    low, high = np.quantile(window, 0.1, axis=0), np.quantile(window, 0.9, axis=0)
    return {
        name: {"level_rps": round(float(recent[:, j].mean()), 2), "low_rps": round(float(low[j]), 2), "high_rps": round(float(high[j]), 2)}
        for j, name in enumerate(services)
    }
