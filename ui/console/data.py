"""What the operator console reads: runs, metric samples, decisions, weights, incidents and approvals from the decision
log, shaped for its pages (ui/console/views). Called by the console's pages only; it never steps a simulator, and
its only writes are the operator's approvals and chat messages (through DecisionLog and manager.chat).

Settings come from the environment, which ``ama console`` sets: ``AMA_DATABASE_URL`` (the log), ``AMA_CONSOLE_TOKEN``
(the shared token operators sign in with; without it nobody can write), ``AMA_LLM_BASE_URL`` (the manager's LLM for
the chat, optional).
"""

from __future__ import annotations

import hmac
import json
import os
from dataclasses import dataclass
from typing import Any

from simulators.rewards import REWARD_COMPONENTS, RewardWeights
from tools.decision_log import Decision, DecisionLog, MetricSample, Run, database_url

SERIES = ("arrivals_rps", "served_rps", "replicas", "violation_rate", "cost_per_h", "power_w", "nodes_on", "nodes_failed")


@dataclass(frozen=True)
class Access:
    """Who is at the console and whether they may write (approve, reject, chat, start replays)."""

    operator: str | None
    can_write: bool
    why: str


def check_access(name: str, token: str, expected: str | None = None) -> Access:
    """Signed in with a name and the shared token: writes allowed; anything else is read-only, saying why."""
    expected = os.environ.get("AMA_CONSOLE_TOKEN", "") if expected is None else expected
    name = name.strip()
    if not expected:
        return Access(name or None, False, "no console token is configured (AMA_CONSOLE_TOKEN): the console is read-only")
    if not name:
        return Access(None, False, "sign in with your name and the console token to approve, reject or chat")
    if not hmac.compare_digest(token.encode(), expected.encode()):
        return Access(name, False, "wrong token: read-only")
    return Access(name, True, f"signed in as {name}")


def open_log(url: str | None = None) -> DecisionLog:
    return DecisionLog(database_url(url), background=False)


def run_label(run: Run) -> str:
    return f"{run.scenario} · {run.controller} · manager {run.manager} · {run.status} · {run.started_at:%Y-%m-%d %H:%M} · {run.id}"


def samples_table(samples: list[MetricSample]) -> dict[str, list[float]]:
    """Columns of the metric samples (time_s plus SERIES), and p95 latency over SLO of the worst service."""
    table: dict[str, list[float]] = {"time_s": [s.time_s for s in samples]}
    for name in SERIES:
        table[name] = [float(getattr(s, name)) for s in samples]
    worst = []
    for s in samples:
        services = json.loads(s.snapshot_json).get("services", [])
        ratios = [sv["p95_latency_ms"] / sv["slo_ms"] for sv in services if sv.get("slo_ms")]
        worst.append(max(ratios) if ratios else 0.0)
    table["p95_over_slo"] = worst
    return table


def latest_snapshot(samples: list[MetricSample]) -> dict[str, Any] | None:
    return json.loads(samples[-1].snapshot_json) if samples else None


def weights_history(decisions: list[Decision]) -> list[tuple[float, dict[str, float], str]]:
    """(time_s, weights, why) for every weight change the manager applied, oldest first, starting from the defaults."""
    history = [(0.0, RewardWeights().as_dict(), "defaults")]
    for d in sorted(decisions, key=lambda d: (d.time_s, d.id)):
        if d.actor == "manager" and d.action == "set_reward_weights" and d.status == "applied":
            weights = json.loads(d.args_json).get("weights")
            if isinstance(weights, dict):
                history.append((d.time_s, {k: float(weights.get(k, 0.0)) for k in REWARD_COMPONENTS}, d.explanation))
    return history


def incidents(decisions: list[Decision]) -> list[tuple[float, str, str]]:
    """(time_s, incident id, what it was about) of each incident, from the first manager decision that names it."""
    first: dict[str, Decision] = {}
    for d in sorted(decisions, key=lambda d: (d.time_s, d.id)):
        if d.actor == "manager" and d.incident_id and d.incident_id not in first:
            first[d.incident_id] = d
    return [(d.time_s, i, _diagnosis(d.explanation)) for i, d in first.items()]


def _diagnosis(explanation: str) -> str:
    """The diagnosis part of a manager explanation ("Incident inc-x: traffic spike on api: ...")."""
    marker = explanation.find("Incident ")
    text = explanation[marker:] if marker >= 0 else explanation
    return text.split(". What-if", 1)[0][:300]


def decision_details(log: DecisionLog, decision: Decision) -> dict[str, Any]:
    """What the Decisions page shows when one opens: the weights in force, the telemetry at that tick (the node's and
    service's rows of the nearest earlier sample), and for the manager its diagnosis, preview and approvals."""
    samples = log.samples(decision.run_id, since_tick=max(decision.tick - 50, 0))
    before = [s for s in samples if s.tick <= decision.tick] or samples[:1]
    telemetry: dict[str, Any] = {}
    if before:
        snap = json.loads(before[-1].snapshot_json)
        telemetry = {k: snap[k] for k in ("tick", "time_s", "arrivals_rps", "violation_rate", "cost_per_h", "power_w") if k in snap}
        telemetry["node"] = next((n for n in snap.get("nodes", []) if n["name"] == decision.node), None)
        telemetry["service"] = next((s for s in snap.get("services", []) if s["name"] == decision.service), None)
    details: dict[str, Any] = {
        "weights_in_force": json.loads(decision.weights_json) if decision.weights_json else None,
        "arguments": json.loads(decision.args_json or "{}"),
        "telemetry": telemetry,
        "result": json.loads(decision.result_json) if decision.result_json else None,
    }
    if decision.actor == "manager":
        details["diagnosis"] = _diagnosis(decision.explanation)
        details["approvals"] = [
            {"operator": a.operator, "decision": a.decision, "reason": a.reason, "at": f"{a.decided_at:%Y-%m-%d %H:%M:%S}"}
            for a in log.approvals(decision.id)
        ]
    return details


def preview_of(decision: Decision) -> dict[str, Any] | None:
    """The what-if preview the guard attached to a high-risk proposal, if any."""
    if not decision.result_json:
        return None
    preview = json.loads(decision.result_json).get("preview")
    return preview if isinstance(preview, dict) else None
