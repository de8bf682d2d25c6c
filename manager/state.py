"""The manager's data: what a diagnosis says, what a planner proposes, and what the guard lets through. Shared by
manager.anomalies' consumers, the planners (rule and LLM), the guard and the graph, whose state is JSON-only: every
model here round-trips through ``model_dump(mode="json")``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Weight = Annotated[float, Field(ge=0.0, le=10.0, allow_inf_nan=False)]

PLANNING_NODE_FIELDS = ("name", "tier", "state", "utilization")
"""What the manager's state keeps of each node of a snapshot (``ClusterSnapshot.to_dict(PLANNING_NODE_FIELDS)``): all
that the planners and the LLM's prompt read of a node. A node's full telemetry is in the decision log's samples."""


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Diagnosis(Model):
    """What the manager believes is going on: the anomalies in force and a one-paragraph summary."""

    incident_id: str
    primary: str
    """The anomaly type the plan answers first (one of manager.anomalies.ANOMALY_TYPES)."""
    targets: list[str] = []
    """Services, nodes or tiers concerned."""
    anomalies: list[dict[str, Any]] = []
    """Anomaly.as_dict() of every anomaly in force."""
    summary: str
    violation_rate: float = 0.0
    cost_per_h: float = 0.0


class ToolRequest(Model):
    """An action a planner wants: a catalog tool by name and its raw arguments (validated later by the guard)."""

    name: str
    arguments: dict[str, Any] = {}


class Proposal(Model):
    """A planner's answer: new reward weights (some components), for how long, optional actions, and why."""

    weights: dict[str, Weight] = {}
    """New values for some of simulators.rewards.REWARD_COMPONENTS; the others keep theirs."""
    expires_in_s: Annotated[float, Field(gt=0, le=86_400)] | None = None
    actions: list[ToolRequest] = []
    explanation: str = Field(min_length=1, max_length=2000)
    confidence: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    planner: Literal["rule", "llm"] = "rule"


class GuardedPlan(Model):
    """What the guard lets through: the clipped weights (or none), the validated actions with their risk, what it
    changed or refused and why. High-risk actions go to the approval gate; the rest apply at once."""

    weights: dict[str, float] | None = None
    """The full new weight vector, within bounds; None when nothing changes."""
    expires_in_s: float | None = None
    low_risk: list[dict[str, Any]] = []
    """Validated calls (name, arguments, explanation) that run at once."""
    high_risk: list[dict[str, Any]] = []
    """Validated calls (name, arguments, explanation, risk_reason) that wait for an operator."""
    notes: list[str] = []
    """What the guard clipped, refused or flagged, one sentence each."""
