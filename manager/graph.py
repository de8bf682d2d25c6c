"""The manager graph: ``observe -> detect -> diagnose -> plan -> guard -> verify -> apply -> propose -> gate ->
apply_approved -> record``, a LangGraph StateGraph with JSON-only state, compiled with a durable checkpointer (SQLite
by default) and one thread per incident. Built by the runtime (manager.loop) and the tests; invoked with a snapshot and the anomalies the
detectors just reported, it feeds the actuator (new reward weights, low-risk actions at once, high-risk actions
after an operator's approval) and the decision log (every step, with its explanation).

Propose, verify, then act (manager.verify): with a twin (``ManagerContext.twin``, bound by the runtime to its
cluster) ``plan`` makes up to K candidates, ``guard`` clips each, and ``verify`` runs them and the status quo in the
twin, asks the planner for one refinement when it can refine (the LLM planner, Eureka-style, shown the twin's
verdicts), and keeps the candidate manager.verify.select picks (the largest violation cut within the cost budget,
else the largest objective gain that raises no violations, each beyond its spread), held for at most
VerifySettings.hold_s; otherwise nothing changes. Without a twin the planner's plan goes on as the guard leaves it.

Side effects live only in ``apply`` (the low-risk part, at once: a pending approval does not hold back what needs
none), ``propose`` (recording the proposals an operator must see), ``apply_approved`` and ``record``; ``gate`` only
calls ``interrupt()``, because LangGraph re-runs an interrupted node from its start on resume. The
runtime resumes a paused incident with ``Command(resume={decision_id: "approved" | "rejected" | "expired"})``
once the decision log has an answer; ``apply`` uses request ids derived from the incident, and the actuator is
idempotent per request id, so an action is applied once even if ``apply`` runs again after a crash.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from manager.anomalies import ANOMALY_TYPES, priority
from manager.guard import WeightBounds, guard
from manager.planners import Planner, RulePlanner, describe_anomaly, primary_anomaly
from manager.state import Diagnosis, GuardedPlan, Proposal
from manager.verify import Candidate, Twin, VerifySettings, candidate_proposals, explain_plan, select, verify
from manager.verify import record as verification_record
from manager.whatif import describe as whatif_sentence
from simulators.errors import AmaError
from simulators.rewards import RewardWeights
from tools.actuator import Actuator
from tools.catalog import RiskBounds, parse_call
from tools.decision_log import DecisionLog

DURABILITY = "exit"
"""Checkpoint when a run pauses at the gate or ends, not after every node: a crash mid-run re-runs the incident
from its start (the actuator's request ids keep actions single), and the pause an operator waits on is durable."""

RESULT_KEYS = ("diagnosis", "proposed", "verification", "verify_decision")
"""What the runtime reads of an invocation's result (``invoke(..., output_keys=RESULT_KEYS)``; ``__interrupt__`` comes
with them when the run paused at the gate): LangGraph then reads these channels after each step, not the whole state."""

PRIORITY = ANOMALY_TYPES
"""Which anomaly a plan answers first when several are in force (manager.anomalies' registry order)."""


class ManagerState(TypedDict, total=False):
    incident_id: str
    run_id: str
    tick: int
    time_s: float
    snapshot: dict[str, Any]
    """``ClusterSnapshot.to_dict(PLANNING_NODE_FIELDS)``: the cluster, its services, and each node's name, tier, state, utilization."""
    anomalies: list[dict[str, Any]]
    weights: dict[str, float]
    reward_stats: dict[str, dict[str, float]]
    current_replicas: list[list[Any]]
    """[[service, node or None, replicas], ...] (JSON has no tuple keys)."""
    diagnosis: dict[str, Any]
    proposal: dict[str, Any]
    candidates: list[dict[str, Any]]
    """[{"name", "proposal", "plan"}, ...]: what verify weighs (the planner's own first)."""
    plan: dict[str, Any]
    verification: dict[str, Any]
    """manager.verify.record: every candidate, its predicted outcome and verdict, what was chosen and why."""
    verify_decision: str
    """The id of the incident's ``verify`` row in the decision log (the runtime adds the realized outcome to it)."""
    proposed: dict[str, dict[str, Any]]
    """decision id -> the high-risk call waiting for an operator."""
    verdicts: dict[str, str]
    applied: list[dict[str, Any]]
    notes: list[str]


@dataclass
class ManagerContext:
    """What the nodes act with (not state: none of it is JSON or checkpointed)."""

    planner: Planner
    actuator: Actuator
    log: DecisionLog | None = None
    fallback: Planner | None = None
    """Used when the planner fails (the rule planner for the LLM planner)."""
    bounds: WeightBounds | None = None
    risk: RiskBounds | None = None
    on_weights: Callable[[RewardWeights, float | None, str], None] | None = None
    preview: Callable[[list[dict[str, Any]]], dict[str, Any] | None] | None = None
    """Forks the cluster and predicts the high-risk calls' effect (manager.whatif), for the operator; None when there
    is nothing to predict."""
    twin: Callable[[], Twin | None] | None = None
    """Forks the cluster now for verification (manager.verify.Twin); None switches verification off, and a call
    that returns None (no simulated future left) skips it for that incident."""
    verify: VerifySettings | None = None
    node_seconds: dict[str, float] | None = None
    """When set, each node adds the seconds it spent here (the graph's own overhead is the rest; manager.bench)."""


def build_graph(context: ManagerContext, checkpoint_path: str | Path | None = None) -> Any:
    """The compiled manager graph; with ``checkpoint_path`` (a SQLite file, or a postgresql:// URL) its state
    survives restarts."""
    nodes = _Nodes(context)
    graph = wire({name: _timed(name, getattr(nodes, name), context.node_seconds) for name in NODE_NAMES})
    return graph.compile(checkpointer=checkpointer(checkpoint_path) if checkpoint_path else None)


NODE_NAMES = ("observe", "detect", "diagnose", "plan", "guard", "verify", "apply", "propose", "gate", "apply_approved", "record")


def wire(nodes: dict[str, Callable[[ManagerState], dict[str, Any]]]) -> StateGraph:
    """The graph's shape around the given node functions (one per ``NODE_NAMES``); manager.bench also wires no-op
    nodes into it, to measure what LangGraph itself costs per run. The two forks (after ``detect``: an incident or
    nothing; after ``apply``: proposals for the gate or straight to ``record``) are routed by the node itself with a
    ``Command``, which costs LangGraph less per run than a conditional edge's separate routing step."""
    graph = StateGraph(ManagerState)
    for name in NODE_NAMES:
        if name in ROUTES:
            route, destinations = ROUTES[name]
            graph.add_node(name, _routed(nodes[name], route), destinations=destinations)
        else:
            graph.add_node(name, nodes[name])
    graph.add_edge(START, "observe")
    for a, b in (
        ("observe", "detect"),
        ("diagnose", "plan"),
        ("plan", "guard"),
        ("guard", "verify"),
        ("verify", "apply"),
        ("propose", "gate"),
        ("gate", "apply_approved"),
        ("apply_approved", "record"),
    ):
        graph.add_edge(a, b)
    graph.add_edge("record", END)
    return graph


def _after_detect(state: ManagerState, update: dict[str, Any]) -> str:
    return "diagnose" if update.get("anomalies", state.get("anomalies")) else END


def _after_apply(state: ManagerState, update: dict[str, Any]) -> str:
    return "propose" if (state.get("plan") or {}).get("high_risk") else "record"


ROUTES: dict[str, tuple[Callable[[ManagerState, dict[str, Any]], str], tuple[str, ...]]] = {
    "detect": (_after_detect, ("diagnose", END)),
    "apply": (_after_apply, ("propose", "record")),
}
"""Node -> (where it goes next, given the state it read and the update it made; every place it can go)."""


def _routed(node: Callable[[ManagerState], dict[str, Any]], route: Callable[[ManagerState, dict[str, Any]], str]) -> Any:
    def run(state: ManagerState) -> Command:
        update = node(state)
        return Command(update=update, goto=route(state, update))

    return run


def checkpointer(target: str | Path) -> Any:
    """PostgreSQL when ``target`` is a postgres URL, else a SQLite file."""
    text = str(target)
    if text.startswith(("postgres://", "postgresql://", "postgresql+psycopg://")):
        return postgres_checkpointer(text)
    return sqlite_checkpointer(target)


def close_graph(graph: Any) -> None:
    """Close the checkpointer's database connection (SQLite or PostgreSQL), if the graph has one."""
    conn = getattr(getattr(graph, "checkpointer", None), "conn", None)
    if conn is not None:
        conn.close()


def postgres_checkpointer(url: str) -> Any:
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row

    url = "postgresql://" + url.split("://", 1)[1]
    saver = PostgresSaver(psycopg.connect(url, autocommit=True, prepare_threshold=0, row_factory=dict_row))
    saver.setup()
    return saver


def sqlite_checkpointer(path: str | Path) -> SqliteSaver:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")  # as the decision log: a commit is an append, not a journal rewrite
    conn.execute("PRAGMA synchronous=NORMAL")  # survives a crash of the process; the OS's crash may lose the last
    return SqliteSaver(conn)


def _timed(name: str, node: Callable[[ManagerState], dict[str, Any]], sink: dict[str, float] | None) -> Any:
    if sink is None:
        return node

    def timed(state: ManagerState) -> dict[str, Any]:
        start = time.perf_counter()
        try:
            return node(state)
        finally:
            sink[name] = sink.get(name, 0.0) + time.perf_counter() - start

    return timed


class _Nodes:
    def __init__(self, context: ManagerContext) -> None:
        self.c = context

    def observe(self, state: ManagerState) -> dict[str, Any]:
        snapshot = state.get("snapshot") or {}
        return {
            "tick": int(snapshot.get("tick", state.get("tick", 0))),
            "time_s": float(snapshot.get("time_s", state.get("time_s", 0.0))),
            "notes": [],
        }

    def detect(self, state: ManagerState) -> dict[str, Any]:
        return {"anomalies": [a for a in state.get("anomalies", []) if a.get("type") in PRIORITY]}

    def diagnose(self, state: ManagerState) -> dict[str, Any]:
        diagnosis = diagnose(state["incident_id"], state["anomalies"], state.get("snapshot") or {})
        return {"diagnosis": diagnosis.model_dump(mode="json")}

    def plan(self, state: ManagerState) -> dict[str, Any]:
        diagnosis = Diagnosis.model_validate(state["diagnosis"])
        weights = RewardWeights.from_mapping(state.get("weights") or RewardWeights().as_dict())
        args = (diagnosis, weights, state.get("reward_stats") or {}, state.get("snapshot") or {})
        notes = list(state.get("notes", []))
        try:
            proposal = self.c.planner.plan(*args)
            problem = no_op(proposal, weights) if self.c.planner.name != "rule" else None
        except Exception as exc:  # a planner's bug is a planner failure too: the fallback answers
            problem = one_line_error(exc)
        if problem is not None:
            fallback = self.c.fallback or RulePlanner()
            notes.append(f"{self.c.planner.name} planner failed ({problem.splitlines()[0][:400]}); used the {fallback.name} planner")
            proposal = fallback.plan(*args)
        update: dict[str, Any] = {"proposal": proposal.model_dump(mode="json"), "notes": notes, "candidates": []}
        settings = self.c.verify or VerifySettings()
        if self.c.twin is not None and settings.candidates > 0:
            rule = (self.c.fallback or RulePlanner()).plan(*args) if proposal.planner != "rule" else None
            named = candidate_proposals(proposal, rule, weights, settings.candidates, state.get("snapshot") or {})
            update["candidates"] = [{"name": name, "proposal": p.model_dump(mode="json")} for name, p in named]
        return update

    def guard(self, state: ManagerState) -> dict[str, Any]:
        proposal = Proposal.model_validate(state["proposal"])
        weights = RewardWeights.from_mapping(state.get("weights") or RewardWeights().as_dict())
        plan = self._guarded(state, proposal, weights)
        candidates = [{**c, "plan": self._guarded(state, Proposal.model_validate(c["proposal"]), weights).model_dump(mode="json")}
                      for c in state.get("candidates", [])]  # fmt: skip
        return {"plan": plan.model_dump(mode="json"), "notes": [*state.get("notes", []), *plan.notes], "candidates": candidates}

    def verify(self, state: ManagerState) -> dict[str, Any]:
        """Weigh the candidates in the twin and keep the best one that beats the status quo by more than its spread
        (or none); the LLM planner sees the verdicts once and may add one refined candidate."""
        twin = self.c.twin() if self.c.twin is not None and state.get("candidates") else None
        if twin is None:
            return {}
        settings = self.c.verify or VerifySettings()
        weights = RewardWeights.from_mapping(state.get("weights") or RewardWeights().as_dict())
        candidates = verify([_candidate(c) for c in state["candidates"]], twin)
        notes = list(state.get("notes", []))
        refined = self._refined(state, candidates, twin, weights, notes)
        candidates += verify(refined, twin) if refined else []
        chosen, verdicts = select(candidates, twin.status_quo(), settings)
        record = verification_record(candidates, twin.status_quo(), chosen, verdicts, twin)
        if chosen is None:
            plan, proposal = GuardedPlan(notes=[record["reason"]]), Proposal.model_validate(state["proposal"])
        else:
            plan, proposal = _held_as_verified(chosen.plan, settings.hold_s), chosen.proposal
            if chosen.name != state["candidates"][0]["name"] or plan != chosen.plan:  # its sentence from the values it sets
                anomaly = describe_anomaly(primary_anomaly(Diagnosis.model_validate(state["diagnosis"])))
                explanation = explain_plan(chosen.name, anomaly, plan, weights)
                proposal = proposal.model_copy(update={"explanation": explanation[:2000]})
        notes = [n for n in notes if n not in GuardedPlan.model_validate(state["plan"]).notes] + (list(plan.notes) if chosen else [])
        return {"plan": plan.model_dump(mode="json"), "proposal": proposal.model_dump(mode="json"), "verification": record, "notes": notes}

    def _refined(
        self, state: ManagerState, candidates: list[Candidate], twin: Twin, weights: RewardWeights, notes: list[str]
    ) -> list[Candidate]:
        """One refinement round (Eureka-style): a planner that can ``refine`` sees each candidate's predicted outcome
        and proposes once more; a failure is a note, never the incident's end."""
        refine = getattr(self.c.planner, "refine", None)
        if refine is None or not candidates or Proposal.model_validate(state["proposal"]).planner != self.c.planner.name:
            return []  # a planner that cannot refine, or failed this incident already (the fallback answered)
        _, verdicts = select(candidates, twin.status_quo(), twin.settings)
        table = verification_record(candidates, twin.status_quo(), None, verdicts, twin)
        args = (Diagnosis.model_validate(state["diagnosis"]), weights, state.get("reward_stats") or {}, state.get("snapshot") or {})
        try:
            proposal = refine(*args, table)
        except Exception as exc:  # the first round's candidates still stand
            notes.append(f"{self.c.planner.name} planner's refinement failed ({one_line_error(exc)}); its first candidates stand")
            return []
        return [Candidate(f"{proposal.planner}, refined", proposal, self._guarded(state, proposal, weights))]

    def _guarded(self, state: ManagerState, proposal: Proposal, weights: RewardWeights) -> GuardedPlan:
        replicas = {(s, n): int(r) for s, n, r in state.get("current_replicas", [])}
        return guard(proposal, weights, self.c.bounds or WeightBounds(), self.c.risk or RiskBounds(), replicas)

    def propose(self, state: ManagerState) -> dict[str, Any]:
        """Record each high-risk call as a proposed decision an operator can approve (the only side effect before
        the gate; it runs once, its result is checkpointed before the gate pauses)."""
        plan = GuardedPlan.model_validate(state["plan"])
        proposed: dict[str, dict[str, Any]] = {}
        verification = state.get("verification")
        forecast = None
        if verification is None and plan.high_risk and self.c.preview is not None:
            forecast = self.c.preview(plan.high_risk)  # unverified plans still show an operator the twin's preview
        for k, call in enumerate(plan.high_risk):
            explanation = f"{call['explanation']} — waiting for an operator: {call['risk_reason']}. {self._why(state)}"
            if verification is not None:
                explanation += f" {verification['reason']}"
            elif forecast is not None:
                explanation += f" {whatif_sentence(forecast)}"
            result = {"verification": verification} if verification is not None else {"preview": forecast} if forecast else None
            decision_id = self._record(
                state,
                call["name"],
                explanation,
                call["arguments"],
                risk="high",
                status="proposed",
                request=f"{state['incident_id']}:high:{k}",
                result=result,
            )
            proposed[decision_id or f"{state['incident_id']}:high:{k}"] = call
        if proposed and self.c.log is not None:
            self.c.log.flush(force=True)  # an operator must see them before the gate pauses
        return {"proposed": proposed}

    def gate(self, state: ManagerState) -> dict[str, Any]:
        if not state.get("proposed"):
            return {"verdicts": {}}
        verdicts = interrupt({"incident_id": state["incident_id"], "waiting_for": sorted(state["proposed"])})
        return {"verdicts": dict(verdicts or {})}

    def apply(self, state: ManagerState) -> dict[str, Any]:
        """The low-risk part at once (weights and low-risk calls), logged as it happens: a pending approval does not
        hold back what needs none."""
        plan = GuardedPlan.model_validate(state["plan"])
        incident = state["incident_id"]
        applied = []
        if plan.weights is not None:
            call = parse_call("set_reward_weights", {"weights": plan.weights, "expires_in_s": plan.expires_in_s})
            result = self.c.actuator.apply(call, f"{incident}:weights")
            applied.append({"name": call.name, "arguments": call.args_dict(), "explanation": call.explanation, **result.as_dict()})
            if result.ok and self.c.on_weights is not None:
                self.c.on_weights(RewardWeights.from_mapping(plan.weights), plan.expires_in_s, incident)
        for k, raw in enumerate(plan.low_risk):
            applied.append(self._apply_call(raw, f"{incident}:low:{k}"))
        proposal = Proposal.model_validate(state["proposal"])
        verification = state.get("verification")
        update: dict[str, Any] = {"applied": applied}
        if verification is not None:
            update["verify_decision"] = self._record(
                state, "verify", f"{verification['reason']} {weighed(verification)}", {}, risk="low", status="applied",
                request=f"{incident}:verify", result={"verification": verification},
            )  # fmt: skip
        twin = f" {verification['reason']}" if verification is not None else ""
        for outcome in applied:
            failed = "" if outcome["ok"] else f" It failed: {outcome['detail']}."
            explanation = f"{proposal.explanation}{failed} {self._why(state)}{twin}"
            status = "applied" if outcome["ok"] else "failed"
            self._record(
                state, outcome["name"], explanation, outcome["arguments"], risk="low", status=status, request=outcome["request_id"]
            )
        if not applied and not plan.high_risk:  # the guard left nothing to do: that is the incident's outcome, recorded
            why = "; ".join(plan.notes) or "the plan changes nothing in force"
            self._record(state, "no_change", f"No change: {why} {self._why(state)}", {}, risk="low", status="applied",
                         request=f"{incident}:no_change")  # fmt: skip
        if self.c.log is not None:
            self.c.log.flush(force=True)
        return update

    def apply_approved(self, state: ManagerState) -> dict[str, Any]:
        """After the gate: approved calls run (request ids from the incident and decision, so once), the others are
        left rejected or marked expired; each proposed decision gets its outcome."""
        verdicts = state.get("verdicts", {})
        applied = list(state.get("applied", []))
        for decision_id, raw in state.get("proposed", {}).items():
            verdict = verdicts.get(decision_id, "expired")
            if verdict == "approved":
                outcome = self._apply_call(raw, f"{state['incident_id']}:approved:{decision_id}")
                applied.append(outcome)
                self._set_status(decision_id, "applied" if outcome["ok"] else "failed", outcome)
            elif verdict == "expired":
                self._set_status(decision_id, "expired", None)
        return {"applied": applied}

    def record(self, state: ManagerState) -> dict[str, Any]:
        for note in state.get("notes", []):
            self._record(state, "note", note, {}, risk="low", status="applied", request=None)
        if self.c.log is not None:
            self.c.log.flush(force=True)
        return {}

    # ------------------------------------------------------------------------------------------ helpers
    def _apply_call(self, raw: dict[str, Any], request_id: str) -> dict[str, Any]:
        call = parse_call(raw["name"], raw["arguments"])
        result = self.c.actuator.apply(call, request_id)
        return {"name": call.name, "arguments": call.args_dict(), "explanation": call.explanation, **result.as_dict()}

    def _why(self, state: ManagerState) -> str:
        """The evidence the diagnosis rests on (the anomaly itself is named by the plan's own sentence)."""
        anomalies = (state.get("diagnosis") or {}).get("anomalies") or []
        evidence = "; ".join(str(a.get("evidence", "")) for a in anomalies if a.get("evidence"))
        return f"Evidence: {evidence}." if evidence else ""

    def _record(
        self,
        state: ManagerState,
        action: str,
        explanation: str,
        args: dict[str, Any],
        risk: str,
        status: str,
        request: str | None,
        result: dict[str, Any] | None = None,
    ) -> str | None:
        if self.c.log is None or not state.get("run_id"):
            return None
        return self.c.log.record(
            state["run_id"], state.get("tick", 0), state.get("time_s", 0.0), "manager", action, explanation[:4000],
            args=args, weights=state.get("weights"), risk=risk, status=status, request_id=request, incident_id=state["incident_id"],
            result=result,
        )  # fmt: skip

    def _set_status(self, decision_id: str, status: str, outcome: dict[str, Any] | None) -> None:
        if self.c.log is None:
            return
        row = self.c.log.decision(decision_id)
        if row is not None and row.status != status:  # the runtime may already have expired it
            self.c.log.set_status(decision_id, status, result=outcome)


def invoke_incident(
    graph: Any, incident_id: str, state: dict[str, Any] | None = None, verdicts: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run an incident's thread from ``state``, or resume it with the operator's ``verdicts``, the way the runtime
    does: durable at the pause, reading only ``RESULT_KEYS`` (plus ``__interrupt__`` when it paused at the gate).
    Never None: a run that ended before writing a result key (no anomaly to answer) gives ``{}``."""
    payload: Any = Command(resume=verdicts) if verdicts is not None else state
    config = {"configurable": {"thread_id": incident_id}}
    durability = {"durability": DURABILITY} if graph.checkpointer is not None else {}
    return graph.invoke(payload, config, output_keys=RESULT_KEYS, **durability) or {}


def diagnose(incident_id: str, anomalies: list[dict[str, Any]], snapshot: dict[str, Any]) -> Diagnosis:
    """The diagnose node's work (also evals.planner_bench's): the primary anomaly is the most urgent of the
    incident's own (``own``, set by the runtime; all count as its own when none is marked): another incident already
    answers the rest, which are context."""
    ordered = sorted(anomalies, key=lambda a: priority(a["type"]))
    own = [a for a in ordered if a.get("own", True)] or ordered
    ordered = own + [a for a in ordered if a not in own]
    primary = own[0]["type"]
    targets = sorted({a["target"] for a in own if a["type"] == primary})
    summary = "; ".join(a["evidence"] for a in ordered)
    return Diagnosis(
        incident_id=incident_id,
        primary=primary,
        targets=targets,
        anomalies=ordered,
        summary=f"{primary.replace('_', ' ')} on {', '.join(targets)}: {summary}"[:2000],
        violation_rate=float(snapshot.get("violation_rate", 0.0)),
        cost_per_h=float(snapshot.get("cost_per_h", 0.0)),
    )


def one_line_error(exc: BaseException) -> str:
    """An exception as one line for a note: our own errors say what is wrong already, others get their type."""
    text = str(exc) if isinstance(exc, AmaError) else f"{type(exc).__name__}: {exc}"
    return (text.splitlines() or [type(exc).__name__])[0][:400]


def weighed(verification: dict[str, Any]) -> str:
    """The candidates and what the twin predicted for each, one clause apiece."""
    parts = []
    for c in verification["candidates"]:
        d = c["delta"]
        parts.append(
            f"{c['name']}: objective {d['objective']:+.2f} ± {c['spread']['objective']:.2f}, violation minutes "
            f"{d['sla_violation_minutes']:+.2f}, cost {d['cost']:+.3f} $ ({c['verdict']})"
        )
    return f"Weighed against the status quo: {'; '.join(parts)}." if parts else ""


def _held_as_verified(plan: GuardedPlan, hold_s: float | None) -> GuardedPlan:
    """The plan with its weights held no longer than ``hold_s`` (VerifySettings.hold_s; the runtime plans again at
    expiry)."""
    if hold_s is None or plan.weights is None or (plan.expires_in_s is not None and plan.expires_in_s <= hold_s):
        return plan
    return plan.model_copy(update={"expires_in_s": hold_s})


def _candidate(raw: dict[str, Any]) -> Candidate:
    return Candidate(raw["name"], Proposal.model_validate(raw["proposal"]), GuardedPlan.model_validate(raw["plan"]))


def no_op(proposal: Proposal, weights: RewardWeights) -> str | None:
    """Why a proposal changes nothing (no weight that differs from those in force and no action), or None. An LLM
    plan like that is a planner failure: a valid but empty reply would silently switch the manager off."""
    current = weights.as_dict()
    changed = {k: v for k, v in proposal.weights.items() if abs(v - current.get(k, v)) > 1e-9}
    if changed or proposal.actions:
        return None
    return "its plan changes nothing: no weight differs from those in force and it asks for no action"


def verdicts_from_log(log: DecisionLog, decision_ids: list[str]) -> dict[str, str] | None:
    """The operator's answers to an incident's proposals, once every one is answered (approved, rejected or
    expired in the log); None while any is still waiting."""
    verdicts = {}
    for decision_id in decision_ids:
        row = log.decision(decision_id)
        if row is None or row.status == "proposed":
            return None
        verdicts[decision_id] = row.status
    return verdicts
