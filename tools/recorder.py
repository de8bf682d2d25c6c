"""Records a run into the decision log: every explained action a controller took this tick, with the weights in
force and whether it took effect, plus a downsampled metric sample. Called by ``ama sim --db`` and the runtime after
each ``Cluster.step``; feeds tools.decision_log.

Actions are duck-typed (anything with actor, action, service, node, before, after and text, like
local_agents.controllers.ActionReason), so tools does not import the controllers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Protocol

from simulators.cluster import Cluster
from simulators.rewards import RewardWeights
from simulators.snapshot import ClusterSnapshot, take_snapshot
from tools.catalog import ToolArgumentError, ToolCall, parse_call
from tools.decision_log import DecisionLog


class Explained(Protocol):
    actor: str
    action: str
    service: str
    node: str | None
    before: int
    after: int
    text: str


class DecisionRecorder:
    """One run's writer. ``sample_every`` ticks a metric sample is taken (0: never)."""

    def __init__(self, log: DecisionLog, run_id: str, weights: RewardWeights | None = None, sample_every: int = 5) -> None:
        self.log = log
        self.run_id = run_id
        self.sample_every = sample_every
        self.rows = 0
        self.set_weights(weights or RewardWeights())

    def set_weights(self, weights: RewardWeights) -> None:
        self.weights = weights
        self._weights_json = json.dumps(weights.as_dict())

    @staticmethod
    def _cell(cluster: Cluster, action: Explained) -> tuple[int, int] | None:
        """(node, service) of an action on one cell's replicas; None for offloads, node-wide moves (power, a node's
        fallback note: service ``*``) and anything naming no known node and service."""
        if action.action == "offload" or action.node not in cluster.node_names or action.service not in cluster.service_names:
            return None
        return cluster.node_names.index(action.node), cluster.service_names.index(action.service)

    def record_tick(self, cluster: Cluster, actions: Iterable[Explained], snapshot: ClusterSnapshot | None = None) -> None:
        """After the cluster stepped: log the tick's actions (``failed`` where a node's count fell short of the
        target, e.g. for lack of room) and, every ``sample_every`` ticks, a metric sample (from ``snapshot`` when the
        caller already took this tick's)."""
        tick, time_s = cluster.t, cluster.time_s
        replicas = None
        for a in actions:
            status, result = "applied", None
            cell = self._cell(cluster, a) if a.after > a.before else None  # a replica count that went up, to check
            if cell is not None:
                if replicas is None:
                    replicas = cluster.replicas()
                got = int(replicas[cell])
                if got < a.after:
                    status, result = "failed", {"replicas": got, "why": "the node had no room for more replicas"}
            self.log.record(
                self.run_id,
                tick,
                time_s,
                a.actor,
                a.action,
                a.text,
                node=a.node,
                service=a.service,
                args={"before": a.before, "after": a.after},
                weights=self._weights_json,
                status=status,
                result=result,
            )
            self.rows += 1
        if self.sample_every and tick % self.sample_every == 0:
            self.log.sample(self.run_id, snapshot or take_snapshot(cluster))

    def record_call(self, cluster: Cluster, actor: str, name: str, arguments: dict[str, Any] | str, **state: Any) -> ToolCall | None:
        """Validate a tool call (tools.catalog.parse_call, with ``state`` as its current_replicas / current_weights /
        bounds). An invalid call is recorded as ``failed`` with the one-line reason and None is returned; a valid one
        is returned for the caller to gate and apply."""
        try:
            return parse_call(name, arguments, **state)
        except ToolArgumentError as exc:
            raw = arguments if isinstance(arguments, str) else json.dumps(arguments, default=str)
            self.log.record(
                self.run_id, cluster.t, cluster.time_s, actor, name, f"rejected: {exc}",
                args={"raw": raw[:2000]}, weights=self._weights_json, status="failed", result={"error": str(exc)},
            )  # fmt: skip
            self.rows += 1
            return None
