"""The runtime: the two loops together. Called by ``ama run``, ``ama demo`` and the evals; steps the simulated
cluster, lets the local controller act every tick, feeds every snapshot to the anomaly detectors, and runs the
manager graph on incidents. It
resumes incidents paused at the approval gate once the decision log holds an operator's answer (or their deadline
passed, which expires them), applies the weight changes operators asked for in the chat (manager.chat) once they
are approved, reverts weight changes when they expire, and logs everything.

Incidents match anomalies: anomalies that start on the same tick open one incident (one graph thread), and each
anomaly belongs to one incident until it clears. An incident is planned when it opens and planned again (same thread)
only when what it answers changes: one of its anomalies clears while others stay, or is reported again with a new
severity (a further price change). When all its anomalies have cleared it is closed with a note. A node the manager
drained for being slow is probed while it is off, and offered back (a ``restore_node`` proposal) once its probe shows
it at full speed again.

Containment: an incident whose graph run raises is recorded as failed (action ``incident``, the error in its
explanation), the weights in force stay, and the run goes on; so does an incident whose resume raises.

Restarts: the graph's threads live in a SQLite checkpoint and the proposals in the decision log, so a runtime
started again on the same checkpoint and database picks up the incidents still waiting at the gate and applies an
approved action once.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from local_agents.registry import make_controller
from manager import whatif
from manager.anomalies import Anomaly, Detectors, priority
from manager.forecast import outlook
from manager.graph import ManagerContext, build_graph, close_graph, invoke_incident, verdicts_from_log
from manager.guard import SloWatch, WeightSchedule
from manager.planners import Planner, RulePlanner, reward_statistics
from manager.state import PLANNING_NODE_FIELDS
from manager.verify import OUTCOME_KEYS, Twin, VerifySettings
from simulators.errors import ConfigError, InputError
from simulators.metrics import RunRecorder
from simulators.rewards import RewardWeights, reward_terms
from simulators.scenarios import load_scenario
from simulators.snapshot import take_snapshot
from tools.catalog import ToolArgumentError, parse_call
from tools.decision_log import Decision, DecisionLog, LogFullError
from tools.recorder import DecisionRecorder
from tools.sim_actuator import SimActuator

CHAT_EVERY = 5
"""Ticks between looks for operators' chat requests (approved ones to apply, unanswered ones to expire) and for
drained nodes to offer back."""
RESTORE_SLOWDOWN = 1.2
"""A node drained for being slow is offered back once its probe shows it at most this much slower than nominal."""

Key = tuple[str, str]
"""An anomaly's (type, target)."""


def pin_to_cpu(cpu: int) -> None:
    """Keep this process, every thread it has and every thread it starts, on one CPU core (``ama run --cpu``,
    ``python -m manager.bench --cpu``). Every manager run hands work to a thread LangGraph starts for its checkpoint
    and back; on a VM, each hand-off to a thread on another vCPU wakes that vCPU through the hypervisor (on the
    2-vCPU VM of BENCHMARKS.md, pinned runs stayed at 2.7-4.7 ms of graph overhead while unpinned ones ranged
    3.7-7.5 ms). ConfigError naming the choice when this process may not run there or the system cannot pin."""
    import os

    if not hasattr(os, "sched_setaffinity"):
        raise ConfigError(f"--cpu {cpu}: this system cannot pin a process to a CPU (Linux only)")
    allowed = sorted(os.sched_getaffinity(0))
    if cpu not in allowed:
        raise ConfigError(f"--cpu {cpu}: this process may run on CPUs {', '.join(map(str, allowed))}")
    threads = [int(task) for task in os.listdir("/proc/self/task")] if os.path.isdir("/proc/self/task") else [0]
    for thread in threads:  # Linux sets one thread's affinity at a time; threads started later inherit it
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.sched_setaffinity(thread, {cpu})


@dataclass
class RuntimeSettings:
    scenario: Path
    """Scenario file to run."""
    controller: str = "kpa"
    """Local controller (any name of local_agents.registry)."""
    manager: str = "rule"
    """``rule``, ``llm`` (the LLM planner of manager.llm, falling back to rule whenever it fails; refused with one
    line when no LLM server answers) or ``off``."""
    seed: int | None = None
    ticks: int | None = None
    """Stop after this many ticks (default: the whole scenario)."""
    review_every: int = 60
    """Ticks between reviews of an incident still in force."""
    approval_timeout_s: float = 600.0
    """Simulated seconds a proposal waits for an operator before it expires."""
    auto_approve: str | None = None
    """Operator name that approves every proposal at once (demo mode); None waits for a real operator."""
    checkpoints: Path | str = Path(".ama/checkpoints.db")
    """The graph's durable state: a SQLite file, or a postgresql:// URL."""
    sample_every: int = 5
    keep_series: bool = False
    """Keep per-tick series in the run's metrics (the evals need them for recovery times and plots)."""
    preview_horizon_s: float = 300.0
    """Simulated seconds a what-if preview of a high-risk proposal looks ahead."""
    reward_window: int = 60
    """Ticks of per-node reward terms summarised for the planner (its "reward reflection")."""
    verify: VerifySettings = field(default_factory=VerifySettings)
    """Propose, verify, then act (manager.verify); ``VerifySettings(candidates=0)`` applies plans unverified."""


@dataclass
class Runtime:
    settings: RuntimeSettings
    log: DecisionLog
    planner: Planner | None = None
    on_tick: Callable[[int], None] | None = None
    events: list[str] = field(default_factory=list)
    """One line per manager event (incident opened, proposal waiting, approved, applied, reverted)."""

    def __post_init__(self) -> None:
        s = self.settings
        self.scenario = load_scenario(s.scenario, seed=s.seed)
        self.cluster = self.scenario.make_cluster()
        self.controller = make_controller(s.controller, seed=self.scenario.spec.seed)
        self.controller.reset(self.cluster)
        self.run_id = self.log.start_run(self.scenario.name, self.controller.name, manager=s.manager, seed=self.scenario.spec.seed)
        self.recorder = DecisionRecorder(self.log, self.run_id, sample_every=s.sample_every)
        self.metrics = RunRecorder(self.cluster, keep_series=s.keep_series)
        self.reports: list[Anomaly] = []
        """Every anomaly the detectors reported, for scoring them."""
        self.explained = 0
        self.detectors = Detectors()
        self.schedule = WeightSchedule(RewardWeights())
        self.slo_watch = SloWatch()
        self.recent_violations = 0.0
        """EWMA of the cluster's SLA-violation rate over about 30 s."""
        self._before_change: RewardWeights | None = None
        self.actuator = SimActuator(self.cluster)
        if s.manager not in ("rule", "llm", "off"):
            raise ConfigError(f"unknown manager {s.manager!r}; choose rule, llm or off")
        if s.manager == "llm" and self.planner is None:
            from manager.llm import LLMPlanner, LLMSettings

            self.planner = LLMPlanner(LLMSettings.from_env())
        if s.manager == "llm":
            check = getattr(self.planner, "check_server", None)
            if check is not None:
                check()  # a ConfigError naming the server when none answers: never a rule planner labelled llm
        context = ManagerContext(
            planner=self.planner or RulePlanner(),
            actuator=self.actuator,
            log=self.log,
            fallback=RulePlanner(),
            on_weights=self._weights_applied,
            preview=self._preview,
            twin=self._twin if s.verify.candidates > 0 else None,
            verify=s.verify,
        )
        self.graph = build_graph(context, s.checkpoints) if s.manager != "off" else None
        self.waiting: dict[str, tuple[list[str], float]] = self._paused_incidents()
        """incident id -> (its proposed decision ids, the simulated time they expire)."""
        self.incident_of: dict[Key, str] = {}
        """Each anomaly in force -> the incident that answers it."""
        self.planned: dict[str, dict[Key, float]] = {}
        """Each open incident -> its anomalies in force (with their severity) when it last planned."""
        self.opened_at: dict[str, float] = {}
        self.incidents_failed = 0
        self.opened: list[str] = []
        """Every incident this run opened, in order (restore proposals aside)."""
        self.drained: dict[str, tuple[str, str]] = {}
        """Nodes the manager proposed to drain -> (the incident, the proposal's decision id), until offered back."""
        self.restores: dict[str, tuple[str | None, dict[str, Any], float]] = {}
        """Restore proposals waiting: their incident -> (decision id, arguments, deadline)."""
        self._max_price = float(self.cluster.base_price_per_h.max())
        self.recent_terms: deque = deque(maxlen=s.reward_window)
        """Per-node reward terms of the last ticks: what the local agents are being rewarded for, for the planner."""
        self.twin_checks: list[dict[str, Any]] = []
        """Each verified plan's prediction beside what happened over its horizon (evals: the twin's error)."""
        self._due_checks: list[dict[str, Any]] = []
        self.weight_changes = 0

    # ------------------------------------------------------------------------------------------ loop
    def run(self) -> dict[str, Any]:
        total = self.cluster.horizon if self.settings.ticks is None else min(self.settings.ticks, self.cluster.horizon)
        try:
            for _ in range(total):
                self.tick()
                if self.on_tick:
                    self.on_tick(self.cluster.t)
        except LogFullError:  # the decision log was away too long: stop here, cleanly, with its one line
            if self.graph is not None:
                close_graph(self.graph)
            raise
        summary = {
            "run_id": self.run_id,
            "scenario": self.scenario.name,
            "controller": self.controller.name,
            "manager": self.settings.manager,
        }
        summary.update(self.metrics.summary())
        summary["incidents_waiting"] = sorted(self.waiting)
        summary["incidents_opened"] = len(self.opened)
        summary["incidents_failed"] = self.incidents_failed
        summary["twin_checks"] = self.twin_checks
        self.log.end_run(self.run_id, summary)
        self.log.flush(force=True)
        if self.graph is not None:
            close_graph(self.graph)
        return summary

    def tick(self) -> None:
        c = self.cluster
        decision = self.controller.act(c)
        self.explained += len(decision.reasons)
        decision.apply(c)
        self.metrics.record()
        snapshot = take_snapshot(c) if self.graph is not None else None  # one snapshot a tick, shared
        self.recorder.record_tick(c, decision.reasons, snapshot)
        ended = self.schedule.due(c.time_s)
        expired: set[str] = set()  # the incidents whose change just ended
        if ended is not None:
            reverted, reasons = ended
            expired = set(reasons)
            self.actuator.weights = reverted
            self._set_weights(reverted, "the change expired")
        if self.graph is None or snapshot is None:
            return
        self.recent_terms.append(reward_terms(c, self._max_price))
        self.recent_violations += (snapshot.violation_rate - self.recent_violations) / 30.0
        if self.slo_watch.pending and self.slo_watch.check(c.time_s, self.recent_violations) and self._before_change is not None:
            self._revert_worse(self.schedule.baseline)
        started = self.detectors.observe(snapshot)
        self.reports += started
        self._close_cleared(snapshot.time_s)
        fresh = [a for a in started if (a.type, a.target) not in self.incident_of]
        if fresh:
            incident = f"inc-{uuid.uuid4().hex[:10]}"
            self.opened.append(incident)
            self.opened_at[incident] = snapshot.time_s
            for anomaly in fresh:
                self.incident_of[(anomaly.type, anomaly.target)] = incident
            self._run_incident(incident, snapshot, started)
        for incident in self._due_for_replan(c.t, started, expired):
            self._run_incident(incident, snapshot, started)
        self._resume_answered(c.time_s)
        self._check_predictions(c.time_s)
        if c.t % CHAT_EVERY == 0:
            self._apply_operator_requests(c.time_s)
            self._offer_back_drained(snapshot)

    # ------------------------------------------------------------------------------------------ incidents
    def _own(self, incident: str) -> dict[Key, float]:
        """The incident's anomalies in force now, with their severity."""
        active = self.detectors.active
        return {key: active[key].severity for key, owner in self.incident_of.items() if owner == incident and key in active}

    def _due_for_replan(self, tick: int, started: list[Anomaly], expired: set[str]) -> list[str]:
        """Open incidents whose anomalies changed since they planned (one cleared while others stay, or one reported
        again with a new severity), at a review tick or at once when one was reported again, and those whose weight
        change has just expired (``expired``: incident ids) while their anomalies are still in force: what is in
        force changed, and a verified change is held only as long as the twin checked it; never one waiting for an
        operator, nor one that has just planned."""
        again = {self.incident_of.get((a.type, a.target)) for a in started}
        due = []
        for incident, last in self.planned.items():
            if incident in self.waiting:
                continue
            own = self._own(incident)
            changed = own != last and not (tick % self.settings.review_every and incident not in again)
            if own and (incident in expired or changed):
                due.append(incident)
        return due

    def _close_cleared(self, now_s: float) -> None:
        """Forget anomalies that cleared; an incident none of whose anomalies is in force any more is closed with a note."""
        active = self.detectors.active
        for key in [k for k in self.incident_of if k not in active]:
            incident = self.incident_of.pop(key)
            if incident in self.incident_of.values() or incident in self.waiting:
                continue
            self.planned.pop(incident, None)
            opened = self.opened_at.pop(incident, now_s)
            self.events.append(f"t={now_s:.0f}s incident {incident}: closed, its anomalies cleared")
            self.log.record(
                self.run_id, self.cluster.t, now_s, "manager", "note",
                f"incident {incident} closed: {key[0].replace('_', ' ')} on {key[1]} and the rest of its anomalies cleared "
                f"after {now_s - opened:.0f} s", incident_id=incident,
            )  # fmt: skip

    def _run_incident(self, incident: str, snapshot: Any, started: list[Anomaly]) -> None:
        """Plan the incident; if its graph run raises, record it as failed and go on (the weights in force stay)."""
        try:
            self._invoke_incident(incident, snapshot, started)
        except Exception as exc:  # containment: one incident never takes the runtime down
            self._incident_failed(incident, snapshot.time_s, "planning", exc)
        self.planned[incident] = self._own(incident)

    def _incident_failed(self, incident: str, now_s: float, step: str, exc: BaseException) -> None:
        self.incidents_failed += 1
        why = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        self.events.append(f"t={now_s:.0f}s incident {incident}: {step} failed ({why}); weights unchanged, the run goes on")
        self.log.record(
            self.run_id, self.cluster.t, now_s, "manager", "incident",
            f"incident {incident}: {step} failed with {why}; nothing was changed for it and the run went on",
            status="failed", incident_id=incident, result={"error": why, "step": step},
        )  # fmt: skip
        self.log.flush(force=True)

    def _invoke_incident(self, incident: str, snapshot: Any, started: list[Anomaly]) -> None:
        assert self.graph is not None
        in_force = {**self.detectors.active, **{(a.type, a.target): a for a in started}}
        anomalies = []
        for key, anomaly in sorted(in_force.items(), key=lambda item: priority(item[0][0])):
            anomalies.append({**anomaly.as_dict(), "own": self.incident_of.get(key) == incident})
        replicas = [[s.name, None, s.replicas_warm + s.replicas_booting] for s in snapshot.services]
        state = {
            "incident_id": incident,
            "run_id": self.run_id,
            "snapshot": {**snapshot.to_dict(PLANNING_NODE_FIELDS), "forecast": self._outlook()},
            "anomalies": anomalies,
            "weights": self.schedule.current.as_dict(),
            "reward_stats": reward_statistics(np.stack(self.recent_terms)) if self.recent_terms else {},
            "current_replicas": replicas,
        }
        result = invoke_incident(self.graph, incident, state)
        if result.get("verification"):
            self._expect(incident, result, snapshot.time_s)
        summary = str((result.get("diagnosis") or {}).get("summary") or "nothing to answer")
        self.events.append(f"t={snapshot.time_s:.0f}s incident {incident}: {summary[:160]}")
        if result.get("__interrupt__"):  # paused at the gate (the only node that interrupts)
            ids = sorted(result.get("proposed") or {})
            self.waiting[incident] = (ids, snapshot.time_s + self.settings.approval_timeout_s)
            self.events.append(f"t={snapshot.time_s:.0f}s incident {incident}: waiting for an operator on {', '.join(ids)}")
            self._note_drains(incident, result.get("proposed") or {})
            if self.settings.auto_approve:
                for decision_id in ids:
                    self.log.decide_approval(
                        decision_id, self.settings.auto_approve, approve=True, reason="demo mode approves automatically"
                    )

    # ------------------------------------------------------------------------------------------ predicted vs realized
    def _totals(self) -> dict[str, float]:
        m = self.metrics
        return {"sla_violation_minutes": m.violation_ticks * self.cluster.tick_s / 60.0, "cost": m.cost,
                "energy_kwh": m.energy_j / 3.6e6, "drops": m.drops}  # fmt: skip

    def _expect(self, incident: str, result: dict[str, Any], now_s: float) -> None:
        """Remember what the twin predicted for the plan the incident went with (the status quo when none), to set
        beside what happens over the same horizon."""
        verification = result["verification"]
        chosen = next((c for c in verification["candidates"] if c["name"] == verification["chosen"]), None)
        predicted = chosen["predicted"] if chosen is not None else verification["status_quo"]
        self._due_checks.append({
            "incident": incident, "decision": result.get("verify_decision"), "due_s": now_s + verification["horizon_s"],
            "type": str((result.get("diagnosis") or {}).get("primary", "")), "chosen": verification["chosen"],
            "predicted": {k: predicted[k] for k in OUTCOME_KEYS if k != "objective"}, "start": self._totals(),
            "changes": self.weight_changes, "verification": verification,
        })  # fmt: skip

    def _check_predictions(self, now_s: float) -> None:
        """Predictions whose horizon has passed: the realized outcome goes on the incident's verify row and into
        ``twin_checks``; ``other_changes`` counts the weight changes made meanwhile (they confound the comparison)."""
        due = [check for check in self._due_checks if now_s >= check["due_s"]]
        for check in due:
            self._due_checks.remove(check)
            now = self._totals()
            realized = {k: now[k] - check["start"][k] for k in now}
            other = self.weight_changes - check["changes"]
            entry = {"incident": check["incident"], "type": check["type"], "chosen": check["chosen"], "predicted": check["predicted"],
                     "realized": realized, "other_changes": max(other, 0)}  # fmt: skip
            self.twin_checks.append(entry)
            if check["decision"]:
                realized_row = {**realized, "at_s": now_s, "other_changes": entry["other_changes"]}
                with contextlib.suppress(InputError):
                    self.log.add_result(check["decision"], {"verification": {**check["verification"], "realized": realized_row}})

    def _outlook(self) -> dict[str, dict[str, float]]:
        c = self.cluster
        return outlook(c.workload.arrivals[: c.t], c.tick_s, list(c.service_names))

    def _twin(self) -> Twin | None:
        """The cluster and the local controller forked now, for verification; None on the scenario's last tick."""
        if self.cluster.t >= self.cluster.horizon:
            return None
        settings = self.settings.verify
        return Twin(self.cluster, self.controller, self.schedule.initial, replace(settings, seed=settings.seed + self.scenario.spec.seed))

    def _resume_answered(self, now_s: float) -> None:
        assert self.graph is not None
        for incident, (ids, deadline) in list(self.waiting.items()):
            if now_s >= deadline:
                for decision_id in ids:
                    row = self.log.decision(decision_id)
                    if row is not None and row.status == "proposed":
                        self.log.set_status(
                            decision_id, "expired", result={"why": f"no operator answer within {self.settings.approval_timeout_s:g} s"}
                        )
            verdicts = verdicts_from_log(self.log, ids)
            if verdicts is None:
                continue
            del self.waiting[incident]
            try:
                invoke_incident(self.graph, incident, verdicts=verdicts)
            except Exception as exc:  # containment, as for planning
                self._incident_failed(incident, now_s, "resuming after the operator's answer", exc)
                continue
            self.events.append(f"t={now_s:.0f}s incident {incident}: resumed with {', '.join(f'{k} {v}' for k, v in verdicts.items())}")

    def _note_drains(self, incident: str, proposed: dict[str, dict[str, Any]]) -> None:
        for decision_id, call in proposed.items():
            if call.get("name") == "drain_node":
                self.drained.setdefault(str(call["arguments"]["node"]), (incident, decision_id))

    def _offer_back_drained(self, snapshot: Any) -> None:
        """A node the manager drained for being slow, still off, whose probe (``slowdown`` of an off node: what a
        health probe of the idle machine measures) is back near 1: propose powering it on again, once."""
        by_name = {n.name: n for n in snapshot.nodes}
        for node, (incident, decision_id) in list(self.drained.items()):
            row = self.log.decision(decision_id)
            if row is None or row.status in ("rejected", "expired", "failed"):
                del self.drained[node]  # never drained
                continue
            telemetry = by_name.get(node)
            if row.status != "applied" or telemetry is None or telemetry.state != "off" or telemetry.slowdown > RESTORE_SLOWDOWN:
                continue
            del self.drained[node]  # offered once; a later drain of it is offered back again
            self._propose_restore(node, telemetry.slowdown, incident, snapshot.time_s)

    def _propose_restore(self, node: str, slowdown: float, drained_by: str, now_s: float) -> None:
        call = parse_call("restore_node", {"node": node})
        incident = f"restore-{uuid.uuid4().hex[:10]}"
        explanation = (
            f"{call.explanation}: drained by incident {drained_by} for being slow, its probe now shows it {slowdown:.2f}x "
            f"nominal speed (at most {RESTORE_SLOWDOWN:g}x counts as recovered) — waiting for an operator: {call.risk_reason}"
        )
        decision_id = self.log.record(
            self.run_id, self.cluster.t, now_s, "manager", call.name, explanation, args=call.args_dict(),
            weights=self.schedule.current.as_dict(), risk="high", status="proposed", request_id=f"{incident}:restore",
            incident_id=incident,
        )  # fmt: skip
        self.log.flush(force=True)
        self.restores[incident] = (decision_id, call.args_dict(), now_s + self.settings.approval_timeout_s)
        self.events.append(f"t={now_s:.0f}s {incident}: {node} is healthy again; offered back, waiting for an operator")
        if self.settings.auto_approve:
            self.log.decide_approval(decision_id, self.settings.auto_approve, approve=True, reason="demo mode approves automatically")

    def _apply_restores(self, now_s: float) -> None:
        """Restore proposals an operator answered: approved ones are applied once, unanswered ones expire."""
        for incident, (decision_id, args, deadline) in list(self.restores.items()):
            row = self.log.decision(decision_id)
            if row is None:
                continue
            if row.status == "proposed" and now_s >= deadline:
                self.log.set_status(
                    decision_id, "expired", result={"why": f"no operator answer within {self.settings.approval_timeout_s:g} s"}
                )
                del self.restores[incident]
            elif row.status == "approved":
                result = self.actuator.apply(parse_call("restore_node", args), request_id=f"{incident}:restore:apply")
                self.log.set_status(decision_id, "applied" if result.ok else "failed", result=result.as_dict())
                self.events.append(f"t={now_s:.0f}s {incident}: {result.detail}")
                del self.restores[incident]
            elif row.status != "proposed":
                del self.restores[incident]

    def _apply_operator_requests(self, now_s: float) -> None:
        """Weight changes operators asked for in the chat (manager.chat), every CHAT_EVERY ticks: this run's approved
        ones are applied once (the request id makes a retry a replay), those unanswered for approval_timeout_s expire;
        then the answered restore proposals."""
        self._apply_restores(now_s)
        for row in self.log.decisions(status="approved", actor="manager", limit=100):
            if row.run_id == self.run_id and (row.incident_id or "").startswith("chat-"):
                self._apply_chat_request(row)
        timeout = self.settings.approval_timeout_s
        for row in self.log.decisions(status="proposed", actor="manager", limit=100):
            if row.run_id == self.run_id and (row.incident_id or "").startswith("chat-") and now_s - row.time_s >= timeout:
                with contextlib.suppress(InputError):  # answered meanwhile: the answer stands
                    self.log.set_status(row.id, "expired", result={"why": f"no operator answer within {timeout:g} s"})

    def _apply_chat_request(self, row: Decision) -> None:
        incident = row.incident_id or row.id
        try:
            args = json.loads(row.args_json or "{}")
            call = parse_call("set_reward_weights", args)
            weights = RewardWeights.from_mapping(args["weights"])
        except (ToolArgumentError, ValueError, KeyError, TypeError) as exc:
            self.log.set_status(row.id, "failed", result={"why": f"invalid request: {exc}"})
            return
        result = self.actuator.apply(call, request_id=f"{row.id}:apply")
        if result.ok:
            self._weights_applied(weights, args.get("expires_in_s"), incident)
        self.log.set_status(row.id, "applied" if result.ok else "failed", result=result.as_dict())
        outcome = f"applied {call.explanation}" if result.ok else f"failed: {result.detail}"
        self.events.append(f"t={self.cluster.time_s:.0f}s chat request {row.id} approved by {row.approved_by}: {outcome}")

    def _paused_incidents(self) -> dict[str, tuple[list[str], float]]:
        """Incidents left waiting at the gate by an earlier runtime (their proposals still in the log)."""
        if self.graph is None:
            return {}
        waiting: dict[str, tuple[list[str], float]] = {}
        rows = [
            r
            for status in ("proposed", "approved", "rejected", "expired")
            for r in self.log.decisions(actor="manager", status=status, limit=1000)
        ]
        for row in rows:
            if row.incident_id is None or row.risk != "high":
                continue  # answered while no runtime was up: still to be resumed if its thread waits at the gate
            state = self.graph.get_state({"configurable": {"thread_id": row.incident_id}})
            if state.next == ("gate",):
                ids, _ = waiting.get(row.incident_id, ([], 0.0))
                waiting[row.incident_id] = (sorted({*ids, row.id}), row.time_s + self.settings.approval_timeout_s)
        return waiting

    def _preview(self, calls: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The what-if preview of high-risk calls; None on the scenario's last tick (no simulated future to run)."""
        if self.cluster.t >= self.cluster.horizon:
            return None
        return whatif.preview(self.cluster, self.controller, calls, self.settings.preview_horizon_s)

    # ------------------------------------------------------------------------------------------ weights
    def _weights_applied(self, weights: RewardWeights, expires_in_s: float | None, incident: str) -> None:
        self.weight_changes += 1
        self._before_change = self.schedule.current
        self.slo_watch.changed(self.cluster.time_s, self.recent_violations)
        self.schedule.apply(weights, expires_in_s, self.cluster.time_s, incident)
        self._set_weights(weights, f"incident {incident}")

    def _revert_worse(self, previous: RewardWeights) -> None:
        """SLOs got worse after a weight change: go back to the weights beneath every temporary change (not only
        the last one: reverting only the last made the nested ones beneath it permanent), and say so in the log."""
        c = self.cluster
        self.schedule.apply(previous, None, c.time_s, "reverted: SLOs got worse")
        self.actuator.weights = previous
        self._set_weights(previous, "reverted: SLOs got worse after the last change")
        self.log.record(
            self.run_id, c.t, c.time_s, "manager", "set_reward_weights",
            f"reverted the weights to {previous.describe(top=3)}: SLA violations rose to {self.recent_violations:.1%} after the change",
            args={"weights": previous.as_dict()}, weights=previous.as_dict(),
        )  # fmt: skip
        self._before_change = None

    def _set_weights(self, weights: RewardWeights, why: str) -> None:
        self.recorder.set_weights(weights)
        if hasattr(self.controller, "set_weights"):
            self.controller.set_weights(weights)  # non-learned controllers map the weights onto their knobs
        self.events.append(f"t={self.cluster.time_s:.0f}s weights {weights.describe(top=3)} ({why})")
