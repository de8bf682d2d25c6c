"""The tool catalog: every action and query the control plane can take, typed. Read by the manager (the LLM sees the
catalog as OpenAI tools; its calls are parsed and risk-assessed here), by the approval gate (``high`` risk waits for
an operator) and by the actuators that carry actions out. Arguments are pydantic models, so a call that violates a
schema is rejected with one line naming the tool, the field and the problem, and that line is what gets recorded.

Risk: ``low`` runs at once; ``high`` waits for an approval. Adding, removing, draining and restoring nodes are always high;
scaling, offloading and reward-weight changes become high when they exceed the configured ``RiskBounds``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from simulators.errors import InputError
from simulators.rewards import REWARD_COMPONENTS, RewardWeights


class ToolArgumentError(InputError):
    """A tool call whose name or arguments are not valid; ``str(e)`` is one line naming the tool and the field."""


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Name = Annotated[str, Field(min_length=1, max_length=200)]


class ScaleArgs(Args):
    service: Name
    replicas: Annotated[int, Field(ge=0, le=100_000)]
    """The replica count to reach: on ``node`` if given, else for the whole service."""
    node: Name | None = None


class PrewarmArgs(Args):
    service: Name
    node: Name


class OffloadArgs(Args):
    node: Name
    share: Annotated[float, Field(ge=0.0, le=0.95, allow_inf_nan=False)]


class MigrateArgs(Args):
    service: Name
    from_node: Name
    to_node: Name
    replicas: Annotated[int, Field(ge=1, le=10_000)] = 1


class DrainNodeArgs(Args):
    node: Name


class RestoreNodeArgs(Args):
    node: Name


class AddNodesArgs(Args):
    count: Annotated[int, Field(ge=1, le=10_000)]
    tier: Literal["edge", "cloud"] = "cloud"


class RemoveNodesArgs(Args):
    nodes: Annotated[list[Name], Field(min_length=1, max_length=10_000)]


class SetRewardWeightsArgs(Args):
    weights: dict[str, Annotated[float, Field(ge=0.0, le=10.0, allow_inf_nan=False)]]
    """New values for some or all of the components; the others keep their current values."""
    expires_in_s: Annotated[float, Field(gt=0, le=86_400)] | None = None
    """After this long the previous weights return."""

    @field_validator("weights")
    @classmethod
    def _known(cls, weights: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(weights) - set(REWARD_COMPONENTS))
        if unknown:
            raise ValueError(f"unknown component(s) {', '.join(unknown)}; known: {', '.join(REWARD_COMPONENTS)}")
        if not weights:
            raise ValueError("give at least one component")
        return weights


class SnapshotArgs(Args):
    pass


class RecentDecisionsArgs(Args):
    limit: Annotated[int, Field(ge=1, le=500)] = 20
    actor: Name | None = None
    node: Name | None = None
    service: Name | None = None
    since: Name | None = None
    """An ISO time or an age like 15m, 2h."""


class MetricsArgs(Args):
    last_s: Annotated[float, Field(gt=0, le=86_400)] = 300.0


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    args: type[Args]
    risk: Literal["low", "high"]
    read_only: bool
    template: str
    """Explanation template, filled with the call's arguments."""

    def openai_schema(self) -> dict[str, Any]:
        """The tool as the OpenAI chat API's ``tools`` entry."""
        schema = self.args.model_json_schema()
        schema.pop("title", None)
        return {"type": "function", "function": {"name": self.name, "description": self.description, "parameters": schema}}


CATALOG: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool("scale", "Set the replica count of a service, on one node or service-wide.", ScaleArgs, "low", False,
             "scale {service} to {replicas} replicas{on_node}"),
        Tool("prewarm", "Start one replica of a service on a node ahead of demand.", PrewarmArgs, "low", False,
             "pre-warm {service} on {node}"),
        Tool("offload", "Send a share of a node's arrivals to the cloud tier or peers.", OffloadArgs, "low", False,
             "offload {share:.0%} of {node}'s arrivals"),
        Tool("migrate", "Move replicas of a service from one node to another (start there, stop here).", MigrateArgs, "low", False,
             "move {replicas} replica(s) of {service} from {from_node} to {to_node}"),
        Tool("drain_node", "Stop routing to a node, re-route its queue, stop its replicas and power it off.", DrainNodeArgs, "high", False,
             "drain {node}"),
        Tool("restore_node", "Power a drained node back on once its problem has ended (it serves after its boot time).",
             RestoreNodeArgs, "high", False, "power {node} back on"),
        Tool("add_nodes", "Power on nodes of a tier that are off (they serve after their boot time).", AddNodesArgs, "high", False,
             "add {count} {tier} node(s)"),
        Tool("remove_nodes", "Drain and power off the named nodes.", RemoveNodesArgs, "high", False,
             "remove node(s) {node_list}"),
        Tool("set_reward_weights", "Replace the local agents' reward weights (until an expiry).", SetRewardWeightsArgs, "low", False,
             "set reward weights {weight_list}{expiry}"),
        Tool("get_snapshot", "Read the latest cluster telemetry snapshot.", SnapshotArgs, "low", True, "read the cluster snapshot"),
        Tool("recent_decisions", "Read recent decisions from the decision log, optionally filtered.", RecentDecisionsArgs, "low", True,
             "read the last {limit} decisions"),
        Tool("get_metrics", "Read the cluster metric samples of the last seconds.", MetricsArgs, "low", True,
             "read the metrics of the last {last_s:g} s"),
    )
}  # fmt: skip


@dataclass(frozen=True)
class RiskBounds:
    """Changes above these bounds are high risk and wait for an operator."""

    max_replica_change: int = 10
    """Largest change in one service's (or one node's) replica count that runs without approval."""
    max_replica_change_share: float = 0.5
    """... and as a share of the current count."""
    max_weight_step: float = 0.25
    """Largest change of any reward-weight component that runs without approval."""
    max_offload_share: float = 0.5


@dataclass(frozen=True)
class ToolCall:
    """A validated call: the tool, its arguments, its assessed risk and a one-line explanation of what it does."""

    tool: Tool
    args: Args
    risk: Literal["low", "high"]
    explanation: str
    risk_reason: str = ""

    @property
    def name(self) -> str:
        return self.tool.name

    def args_dict(self) -> dict[str, Any]:
        return self.args.model_dump()


def tool_schemas(include_read_only: bool = True) -> list[dict[str, Any]]:
    return [t.openai_schema() for t in CATALOG.values() if include_read_only or not t.read_only]


def parse_call(
    name: str,
    arguments: dict[str, Any] | str,
    bounds: RiskBounds | None = None,
    current_replicas: dict[tuple[str, str | None], int] | None = None,
    current_weights: RewardWeights | None = None,
) -> ToolCall:
    """Validate a call (arguments as a dict or the JSON string an LLM returns) and assess its risk against the
    current state: ``current_replicas`` maps (service, node or None for service-wide) to counts."""
    tool = CATALOG.get(name)
    if tool is None:
        raise ToolArgumentError(f"unknown tool {name!r}; known: {', '.join(CATALOG)}")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as exc:
            raise ToolArgumentError(f"tool {name}: arguments are not valid JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(arguments, dict):
        raise ToolArgumentError(f"tool {name}: arguments must be a JSON object, got {type(arguments).__name__}")
    try:
        args = tool.args.model_validate(arguments)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(part) for part in err["loc"]) or "arguments"
        message = "unknown argument" if err["type"] == "extra_forbidden" else err["msg"]
        raise ToolArgumentError(f"tool {name}: {field}: {message}") from None
    risk, why = assess_risk(tool, args, bounds or RiskBounds(), current_replicas or {}, current_weights or RewardWeights())
    return ToolCall(tool, args, risk, explain_call(tool, args), why)


def assess_risk(
    tool: Tool,
    args: Args,
    bounds: RiskBounds,
    current_replicas: dict[tuple[str, str | None], int],
    current_weights: RewardWeights,
) -> tuple[Literal["low", "high"], str]:
    """The call's risk and, when high, why."""
    if tool.risk == "high":
        return "high", f"{tool.name} changes the cluster's capacity"
    if isinstance(args, ScaleArgs):
        current = current_replicas.get((args.service, args.node))
        if current is not None:
            change = abs(args.replicas - current)
            if change > bounds.max_replica_change and change > bounds.max_replica_change_share * max(current, 1):
                bound = f"{bounds.max_replica_change} and {bounds.max_replica_change_share:.0%}"
                return "high", f"changes {args.service} by {change} replicas (bound {bound})"
    if isinstance(args, OffloadArgs) and args.share > bounds.max_offload_share:
        return "high", f"offloads {args.share:.0%} (bound {bounds.max_offload_share:.0%})"
    if isinstance(args, SetRewardWeightsArgs):
        old = current_weights.as_dict()
        steps = {k: abs(v - old[k]) for k, v in args.weights.items()}
        worst = max(steps, key=lambda k: steps[k])
        if steps[worst] > bounds.max_weight_step:
            return "high", f"moves {worst} by {steps[worst]:.2f} (bound {bounds.max_weight_step:.2f} per step)"
    return "low", ""


def explain_call(tool: Tool, args: Args) -> str:
    values = args.model_dump()
    values["on_node"] = f" on {values['node']}" if values.get("node") else ""
    values["node_list"] = ", ".join(values.get("nodes") or [])
    values["weight_list"] = ", ".join(f"{k} {v:.2f}" for k, v in (values.get("weights") or {}).items())
    values["expiry"] = f" for {values['expires_in_s']:g} s" if values.get("expires_in_s") else ""
    return tool.template.format(**values)
