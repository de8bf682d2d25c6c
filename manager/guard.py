"""Guard: bounds, rate limits, risk. Called by manager.graph's guard node on every proposal; feeds the approval gate
(high-risk calls) and apply (the rest). Also holds the two pieces of state that undo a weight change: the
``WeightSchedule`` (reverts changes when they expire) and the ``SloWatch`` (reverts a change that made SLOs worse).

Weights are clipped, never escalated: a proposal that moves a component by more than ``WeightBounds.max_step`` gets
that component clipped to the step (with a note), and the weight change stays low risk. A weight change is cheap to
undo (it expires, and the SloWatch reverts it), while waiting for an operator would delay every incident response;
so the guard bounds it instead of asking. A ``set_reward_weights`` call among the actions is folded into the weight
change the same way (the proposal's own weights win on a conflict), so weights have one path and one set of bounds.

Actions are validated with tools.catalog.parse_call: invalid ones are refused with a note, read-only ones dropped
with a note, and the rest routed by the catalog's risk assessment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from manager.state import GuardedPlan, Proposal, ToolRequest
from simulators.rewards import REWARD_COMPONENTS, RewardWeights
from tools.catalog import CATALOG, RiskBounds, ToolArgumentError, ToolCall, parse_call

EPSILON = 1e-9


@dataclass(frozen=True)
class WeightBounds:
    """Hard limits on the reward weights the guard lets through."""

    low: Mapping[str, float] = field(default_factory=dict)
    """Lower bound per component (0.0 for those not named)."""
    high: Mapping[str, float] = field(default_factory=dict)
    """Upper bound per component (1.0 for those not named)."""
    max_step: float = 0.25
    """Largest change of any one component per proposal."""
    max_total: float = 2.0
    """Cap on the sum of all weights."""

    def __post_init__(self) -> None:
        unknown = sorted((set(self.low) | set(self.high)) - set(REWARD_COMPONENTS))
        if unknown:
            raise ValueError(f"weight bounds for unknown component(s): {', '.join(unknown)}")
        for name in REWARD_COMPONENTS:
            if not 0.0 <= self.low_of(name) <= self.high_of(name):
                raise ValueError(f"weight bounds for {name} must satisfy 0 <= low <= high, got {self.low_of(name)}, {self.high_of(name)}")
        if self.max_step <= 0:
            raise ValueError(f"max_step must be > 0, got {self.max_step}")
        if sum(self.low_of(name) for name in REWARD_COMPONENTS) > self.max_total:
            raise ValueError(f"the lower bounds sum to more than max_total {self.max_total}")

    def low_of(self, component: str) -> float:
        return float(self.low.get(component, 0.0))

    def high_of(self, component: str) -> float:
        return float(self.high.get(component, 1.0))


def guard(
    proposal: Proposal,
    current: RewardWeights,
    bounds: WeightBounds,
    risk: RiskBounds,
    current_replicas: dict[tuple[str, str | None], int],
) -> GuardedPlan:
    """Clip the proposal's weights, validate and route its actions. Never raises on a bad proposal: whatever it
    refuses or changes is one sentence in ``notes``."""
    notes: list[str] = []
    low_risk: list[dict[str, Any]] = []
    high_risk: list[dict[str, Any]] = []
    asked = dict(proposal.weights)
    expires_in_s = proposal.expires_in_s
    for request in proposal.actions:
        call = _validated(request, risk, current_replicas, current, notes)
        if call is None:
            continue
        if call.name == "set_reward_weights":
            asked = {**call.args_dict()["weights"], **asked}
            expires_in_s = expires_in_s if expires_in_s is not None else call.args_dict()["expires_in_s"]
            notes.append(f"folded set_reward_weights into the weight change: {call.explanation}.")
        else:
            (high_risk if call.risk == "high" else low_risk).append(_call_dict(call))
    weights = _guarded_weights(asked, current, bounds, notes)
    return GuardedPlan(
        weights=weights, expires_in_s=expires_in_s if weights is not None else None, low_risk=low_risk, high_risk=high_risk, notes=notes
    )


def _validated(
    request: ToolRequest,
    risk: RiskBounds,
    current_replicas: dict[tuple[str, str | None], int],
    current: RewardWeights,
    notes: list[str],
) -> ToolCall | None:
    """The validated call, or None with a note saying why it was refused or dropped."""
    tool = CATALOG.get(request.name)
    if tool is not None and tool.read_only:
        notes.append(f"dropped {request.name}: a read-only query is not an action.")
        return None
    try:
        return parse_call(request.name, request.arguments, risk, current_replicas, current)
    except ToolArgumentError as exc:
        notes.append(f"refused {request.name}: {_reason(request.name, exc)}")
        return None


def _reason(name: str, exc: ToolArgumentError) -> str:
    line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return line.removeprefix(f"tool {name}: ")


def _call_dict(call: ToolCall) -> dict[str, Any]:
    return {"name": call.name, "arguments": call.args_dict(), "explanation": call.explanation, "risk_reason": call.risk_reason}


def _guarded_weights(asked: dict[str, float], current: RewardWeights, bounds: WeightBounds, notes: list[str]) -> dict[str, float] | None:
    """The full new weight vector within bounds, or None when it equals ``current``."""
    old = current.as_dict()
    new = dict(old)
    for name in REWARD_COMPONENTS:
        if name in asked:
            new[name] = _clipped(name, float(asked[name]), old[name], bounds, notes)
    new = _capped_total(new, bounds, notes)
    if all(abs(new[name] - old[name]) <= EPSILON for name in REWARD_COMPONENTS):
        return None
    return new


def _clipped(name: str, asked: float, current: float, bounds: WeightBounds, notes: list[str]) -> float:
    """``asked`` within ±max_step of ``current`` and within [low, high] (the bounds win over the step)."""
    low, high = bounds.low_of(name), bounds.high_of(name)
    applied = min(max(asked, current - bounds.max_step, low), current + bounds.max_step, high)
    applied = max(applied, low)
    if abs(applied - asked) <= EPSILON:
        return asked
    reasons = []
    if asked > high + EPSILON:
        reasons.append(f"above its upper bound {high:.2f}")
    if asked < low - EPSILON:
        reasons.append(f"below its lower bound {low:.2f}")
    if abs(asked - current) > bounds.max_step + EPSILON:
        reasons.append(f"a step of more than {bounds.max_step:.2f} from {current:.2f}")
    notes.append(f"clipped {name}: asked {asked:.2f}, applied {applied:.2f} ({' and '.join(reasons)}).")
    return applied


def _capped_total(weights: dict[str, float], bounds: WeightBounds, notes: list[str]) -> dict[str, float]:
    """Scale the part of each weight above its lower bound so the sum is at most max_total."""
    total = sum(weights.values())
    if total <= bounds.max_total + EPSILON:
        return weights
    floor = {name: bounds.low_of(name) for name in weights}
    factor = (bounds.max_total - sum(floor.values())) / (total - sum(floor.values()))
    notes.append(f"scaled the weights down by {factor:.3f} so they sum to {bounds.max_total:.2f} instead of {total:.2f}.")
    return {name: floor[name] + (value - floor[name]) * factor for name, value in weights.items()}


@dataclass(frozen=True)
class _Change:
    before: RewardWeights
    expires_at_s: float | None
    reason: str


@dataclass
class WeightSchedule:
    """The weights in force and the changes that will expire. Changes nest: each remembers the weights before it,
    and expiries revert them last-in first-out. An inner change whose expiry passes while a later change is still
    in force waits for that one (the later change was planned on top of it), then both revert at once. A change
    without expiry is the new baseline: it forgets the changes before it."""

    initial: RewardWeights = field(default_factory=RewardWeights)
    _current: RewardWeights | None = None
    _changes: list[_Change] = field(default_factory=list)

    @property
    def current(self) -> RewardWeights:
        return self._current if self._current is not None else self.initial

    @property
    def baseline(self) -> RewardWeights:
        """The weights beneath every change that will expire (what is in force once they all have)."""
        return self._changes[0].before if self._changes else self.current

    @property
    def changes(self) -> list[tuple[float | None, str]]:
        """(expiry time, reason) of the changes in force, oldest first."""
        return [(change.expires_at_s, change.reason) for change in self._changes]

    def apply(self, weights: RewardWeights, expires_in_s: float | None, now_s: float, reason: str) -> None:
        if expires_in_s is None:
            self._changes.clear()
        else:
            self._changes.append(_Change(self.current, now_s + expires_in_s, reason))
        self._current = weights

    def due(self, now_s: float) -> tuple[RewardWeights, list[str]] | None:
        """When the latest change has expired (popping it and any expired ones beneath it): the weights to return
        to and the reasons of the changes that ended, latest first; None while it is in force."""
        restored, ended = None, []
        while self._changes and self._expired(self._changes[-1], now_s):
            change = self._changes.pop()
            restored = change.before
            ended.append(change.reason)
        if restored is None:
            return None
        self._current = restored
        return restored, ended

    @staticmethod
    def _expired(change: _Change, now_s: float) -> bool:
        return change.expires_at_s is not None and now_s >= change.expires_at_s


@dataclass
class SloWatch:
    """Reverts a weight change that made SLOs worse: after ``settle_s``, a recent violation rate above the rate
    before the change by more than ``margin_abs`` and by more than ``margin_rel`` of it asks for a revert. The watch
    stays on until it fires, until the next change, or until ``clear`` (e.g. when the change expires)."""

    settle_s: float = 60.0
    margin_abs: float = 0.02
    margin_rel: float = 0.5
    _changed_at_s: float | None = None
    _rate_before: float = 0.0

    @property
    def pending(self) -> bool:
        return self._changed_at_s is not None

    def changed(self, now_s: float, violation_rate_before: float) -> None:
        self._changed_at_s, self._rate_before = now_s, violation_rate_before

    def clear(self) -> None:
        self._changed_at_s = None

    def check(self, now_s: float, violation_rate_recent: float) -> bool:
        """True (revert the change) when settled and worse; the watch then clears."""
        if self._changed_at_s is None or now_s - self._changed_at_s < self.settle_s:
            return False
        worse = violation_rate_recent - self._rate_before
        if worse > self.margin_abs and worse > self.margin_rel * self._rate_before:
            self.clear()
            return True
        return False
