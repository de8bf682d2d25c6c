"""The catalog's read-only tools, answered from the decision log and the latest snapshot. Called by the manager's
tool loop and the console's chat; feeds them plain JSON-ready data. What comes back is telemetry and log text:
callers quote it to an LLM as data, never as instructions.
"""

from __future__ import annotations

from typing import Any

from simulators.snapshot import ClusterSnapshot
from tools.catalog import MetricsArgs, RecentDecisionsArgs, SnapshotArgs, ToolCall
from tools.decision_log import DecisionLog, parse_since, rows_to_dicts

DECISION_FIELDS = ("id", "tick", "time_s", "actor", "action", "node", "service", "explanation", "status", "risk", "approved_by")


def run_query(call: ToolCall, log: DecisionLog | None, snapshot: ClusterSnapshot | None, run_id: str | None = None) -> dict[str, Any]:
    """Answer a read-only call; a query that cannot be answered says why in ``error``."""
    args = call.args
    if isinstance(args, SnapshotArgs):
        if snapshot is None:
            return {"error": "no snapshot yet"}
        return {"snapshot": snapshot.to_dict()}
    if log is None:
        return {"error": "no decision log configured"}
    if isinstance(args, RecentDecisionsArgs):
        since = parse_since(args.since) if args.since else None
        rows = log.decisions(run_id=run_id, actor=args.actor, node=args.node, service=args.service, since=since, limit=args.limit)
        return {"decisions": [{k: row[k] for k in DECISION_FIELDS} for row in rows_to_dicts(rows)]}
    if isinstance(args, MetricsArgs):
        if run_id is None:
            return {"error": "metrics need a run"}
        samples = log.samples(run_id)
        if samples:
            cutoff = samples[-1].time_s - args.last_s
            samples = [s for s in samples if s.time_s >= cutoff]
        keys = (
            "tick",
            "time_s",
            "arrivals_rps",
            "served_rps",
            "violation_rate",
            "drops",
            "cold_starts",
            "cost_per_h",
            "power_w",
            "replicas",
        )
        return {"metrics": [{k: getattr(s, k) for k in keys} for s in samples]}
    return {"error": f"{call.name} is not a read-only query"}
