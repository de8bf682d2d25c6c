"""The Actuator protocol: how validated tool calls (tools.catalog.ToolCall) reach a cluster. Called by the
manager's apply step and the runtime; implemented by tools.sim_actuator for the simulator, and by real backends in
the same shape. Every ``apply`` is idempotent per ``request_id`` (a retried request returns the first result and
changes nothing) and reports failures as data, never by raising.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from tools.catalog import ToolCall


@dataclass(frozen=True)
class ActionResult:
    request_id: str
    tool: str
    ok: bool
    detail: str
    """What happened, in words (or why nothing did)."""
    data: dict[str, Any] = field(default_factory=dict)
    replayed: bool = False
    """True when this is the stored result of an earlier call with the same request_id."""

    def as_dict(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "tool": self.tool, "ok": self.ok, "detail": self.detail, "data": self.data}


class Actuator(Protocol):
    def apply(self, call: ToolCall, request_id: str) -> ActionResult:
        """Carry out an action once per request_id; failures come back as ``ok=False`` with the reason."""


class IdempotentActuator:
    """Base for actuators: remembers each request_id's result and replays it instead of acting twice."""

    def __init__(self) -> None:
        self._results: dict[str, ActionResult] = {}

    def apply(self, call: ToolCall, request_id: str) -> ActionResult:
        if not request_id:
            return ActionResult(request_id, call.name, False, "a request_id is required")
        done = self._results.get(request_id)
        if done is not None:
            return ActionResult(done.request_id, done.tool, done.ok, done.detail, done.data, replayed=True)
        if call.tool.read_only:
            result = ActionResult(request_id, call.name, False, f"{call.name} is a read-only query, not an action")
        else:
            try:
                result = self._apply(call, request_id)
            except Exception as exc:  # an actuator reports failures as data, whatever the backend raised
                result = ActionResult(request_id, call.name, False, f"{call.name} failed: {type(exc).__name__}: {exc}")
        self._results[request_id] = result
        return result

    def _apply(self, call: ToolCall, request_id: str) -> ActionResult:
        raise NotImplementedError
