"""What the operator console reads: runs, metric samples, decisions, weights, incidents and approvals from the decision
log, shaped for its pages (ui/console/views), and the twin's verification of an incident's candidates
(manager.verify's record on the decision rows) as the table the Approvals and Decisions pages show, with what the
twin predicted beside what happened. Called by the console's pages only; it never steps a simulator, and its only
writes are the operator's approvals and chat messages (through DecisionLog and manager.chat).

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

from manager.planners import describe_changes, describe_duration
from simulators.rewards import REWARD_COMPONENTS, RewardWeights
from tools.catalog import ToolArgumentError, parse_call
from tools.decision_log import Decision, DecisionLog, MetricSample, Run, database_url

STATUS_QUO = "status quo"
"""The name the candidates table and the predicted-vs-realized comparison give the plan that changes nothing."""
OUTCOMES = (("sla_violation_minutes", "SLA violation minutes"), ("cost", "cost $"), ("energy_kwh", "energy kWh"), ("drops", "drops"))
"""The twin's predicted measures that the runtime also realizes (manager.loop), in the order the console lists them."""
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
    service's rows of the nearest earlier sample), the twin's verification if the row carries one, and for the
    manager its diagnosis and approvals."""
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
        "verification": verification_of(decision),
    }
    if decision.actor == "manager":
        details["diagnosis"] = _diagnosis(decision.explanation)
        details["approvals"] = [
            {"operator": a.operator, "decision": a.decision, "reason": a.reason, "at": f"{a.decided_at:%Y-%m-%d %H:%M:%S}"}
            for a in log.approvals(decision.id)
        ]
    return details


def _result_part(decision: Decision, key: str) -> dict[str, Any] | None:
    result = json.loads(decision.result_json) if decision.result_json else None
    part = result.get(key) if isinstance(result, dict) else None
    return part if isinstance(part, dict) else None


def preview_of(decision: Decision) -> dict[str, Any] | None:
    """The what-if preview the guard attached to a high-risk proposal (rows from before verification), if any."""
    return _result_part(decision, "preview")


def verification_of(decision: Decision) -> dict[str, Any] | None:
    """The twin's verification of the incident's candidates (manager.verify.record), on the incident's ``verify`` row
    and on each high-risk proposal it led to; None on other rows and on rows from before verification."""
    return _result_part(decision, "verification")


def candidates_table(verification: dict[str, Any]) -> list[dict[str, str]]:
    """One row per plan the twin ran, the status quo first (its predicted outcome in the verdict column): the chosen
    mark, the candidate and its planner, the weights it sets against the operator's, its actions in words, and what
    it changes against the status quo (mean over the futures ± their spread, for the objective and the violation
    minutes), and the verdict."""
    chosen = verification.get("chosen")
    base = verification.get("status_quo") or {}
    baseline = RewardWeights().as_dict() | {k: float(v) for k, v in (verification.get("objective_weights") or {}).items()}
    kept = "kept: no candidate beats it by more than its spread. " if chosen is None else ""
    rows = [{
        "chosen": "✓" if chosen is None else "", "candidate": STATUS_QUO, "planner": "", "weights": "keep the weights",
        "actions": "none", "Δobjective": "0", "Δviolation min": "0", "Δcost $": "0", "Δenergy kWh": "0",
        "verdict": f"{kept}predicted: objective {_number(base.get('objective'), '.2f')}, "
        f"{_number(base.get('sla_violation_minutes'), '.2f')} violation min, {_number(base.get('cost'), '.3f')} $, "
        f"{_number(base.get('energy_kwh'), '.3f')} kWh",
    }]  # fmt: skip
    for c in verification.get("candidates") or []:
        delta, spread = c.get("delta") or {}, c.get("spread") or {}
        rows.append({
            "chosen": "✓" if c.get("name") == chosen else "", "candidate": str(c.get("name", "")),
            "planner": str(c.get("planner", "")), "weights": _weights_text(c.get("weights"), baseline, c.get("expires_in_s")),
            "actions": "; ".join(_action_text(a) for a in c.get("actions") or []) or "none",
            "Δobjective": _plus_minus(delta.get("objective"), spread.get("objective"), ".2f"),
            "Δviolation min": _plus_minus(delta.get("sla_violation_minutes"), spread.get("sla_violation_minutes"), ".2f"),
            "Δcost $": _number(delta.get("cost"), "+.3f"), "Δenergy kWh": _number(delta.get("energy_kwh"), "+.3f"),
            "verdict": str(c.get("verdict", "")),
        })  # fmt: skip
    return rows


def predicted_vs_realized(verification: dict[str, Any]) -> tuple[str, list[dict[str, Any]]] | None:
    """What the twin predicted for the plan the incident went with (the chosen candidate, or the status quo when none
    was chosen) beside what happened over the same horizon: (that plan's name, one row per measure); None until the
    runtime has written the realized outcome."""
    realized = verification.get("realized")
    if not isinstance(realized, dict):
        return None
    name = verification.get("chosen")
    chosen = next((c for c in verification.get("candidates") or [] if name and c.get("name") == name), None)
    predicted = (chosen.get("predicted") if chosen else verification.get("status_quo")) or {}
    rows = []
    for key, label in OUTCOMES:
        before, after = predicted.get(key), realized.get(key)
        if isinstance(before, int | float) and isinstance(after, int | float):
            rows.append({"measure": label, "predicted": round(before, 3), "realized": round(after, 3), "error": round(after - before, 3)})
    return (str(name) if chosen else STATUS_QUO), rows


def _weights_text(weights: Any, baseline: dict[str, float], expires_in_s: Any) -> str:
    """The weights a candidate sets, in the manager's words against the operator's weights (manager.planners)."""
    if not isinstance(weights, dict) or not weights:
        return "keep the weights"
    try:
        text = describe_changes(RewardWeights.from_mapping(baseline), {k: float(v) for k, v in weights.items() if k in baseline})
    except (TypeError, ValueError):
        text = ", ".join(f"{k} {v}" for k, v in weights.items())
    return text + (describe_duration(float(expires_in_s)) if isinstance(expires_in_s, int | float) else "")


def _action_text(action: dict[str, Any]) -> str:
    """A call in the catalog's words ("add 2 cloud node(s)"); one the catalog refuses as its name and arguments."""
    try:
        return parse_call(str(action.get("name")), action.get("arguments") or {}).explanation
    except ToolArgumentError:
        return f"{action.get('name')} {json.dumps(action.get('arguments') or {})}"


def _number(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, int | float) else "n/a"


def _plus_minus(value: Any, spread: Any, spec: str) -> str:
    return f"{_number(value, '+' + spec)} ± {_number(spread, spec)}"
