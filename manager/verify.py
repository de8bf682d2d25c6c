"""Propose, verify, then act. Called by manager.graph's verify node (the runtime binds ``ManagerContext.twin`` to its
cluster and local controller) and by evals.planner_bench; feeds the graph the plan it applies (or none) and the
verification record the decision log keeps on the incident's ``verify`` row and on each high-risk proposal.

For each incident the planner's proposal is one of up to K candidates (``candidate_proposals``): the planner's own
and neighbours of it (the weight change halved and doubled, with and without its actions) and three generic stances
(protect the SLA, save cost, avoid churn); under the LLM planner, its answer on top of the rule's K, and one refined
answer after it has seen the twin's verdicts (manager.graph). The guard clips each one. A
``Twin`` (the simulator forked from the current state, manager.whatif's past-only fork) runs each distinct guarded
plan and the status quo over ``horizon_s`` on ``futures`` arrival futures forecast from the observed past, the same
futures for every plan (common random numbers: the differences are what matter, and they are much less noisy than
the outcomes).

Each plan is scored under the **operator's objective**: the sum over the horizon of the cluster's reward terms
(simulators.rewards.cluster_terms, the MARL trainer's team reward) weighted by the operator's baseline weights
(not the candidate's own: a candidate that changes the agents' weights must not also change what it is judged by).
Higher is better. ``select`` puts the SLA first (VerifySettings.sla_first): the candidate that cuts violation minutes
the most, by more than the spread (standard deviation over the futures) of that cut and within the cost budget, is
applied; failing one, the candidate with the largest mean objective gain over the status quo, larger than its spread
and ``min_gain``, that is predicted to raise neither violation minutes nor the violation rate; failing both, the
status quo stays. A candidate
with actions that improve on the same weights without them by no more than the spread loses its actions: an action
whose preview shows no benefit is not proposed (high-risk actions would also cost an operator's attention).

The twin checks a plan over ``horizon_s`` only, so the graph holds the chosen weights for no longer than ``hold_s``
(the horizon by default); the runtime plans an incident again when its change expires while its anomalies are still
in force (receding horizon).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from local_agents.controllers import Controller
from manager.forecast import sample_future
from manager.planners import busiest_tier_with_off_nodes, describe_actions, describe_changes, describe_duration
from manager.state import GuardedPlan, Proposal, ToolRequest
from simulators.cluster import Cluster
from simulators.metrics import VIOLATION_MINUTE_THRESHOLD
from simulators.rewards import RewardWeights, cluster_terms, reward_terms
from tools.catalog import parse_call
from tools.sim_actuator import SimActuator

OUTCOME_KEYS = ("objective", "sla_violation_minutes", "cost", "energy_kwh", "drops")
"""What the twin predicts for each plan over the horizon (objective: higher is better; the rest: lower is)."""

Outcomes = list[dict[str, float]]
"""One outcome (OUTCOME_KEYS) per sampled future."""


@dataclass(frozen=True)
class VerifySettings:
    candidates: int = 8
    """K: the most candidates verified per incident (the status quo aside); 0 switches verification off (the
    planner's plan is applied as the guard leaves it)."""
    horizon_s: float = 120.0
    """Simulated seconds each plan runs in the twin."""
    futures: int = 3
    """Arrival futures sampled from the past per plan (the same ones for every plan)."""
    min_gain: float = 0.0
    """Smallest mean objective gain over the status quo worth acting on (on top of the spread)."""
    finalists: int = 3
    """With more candidates than this, all run half the horizon and only this many of the best run to its end."""
    sla_first: bool = True
    """The SLA comes first (lexicographic): a candidate predicted to cut violation minutes by more than their spread,
    at no more than ``1 + cost_budget`` times the status quo's cost, is chosen before any other (the largest cut);
    failing one, the objective chooses among the candidates predicted to raise neither violation minutes nor the
    share of requests over their SLO (the rate shows a rise too small to cross a minute's threshold). The
    objective weighs cost every tick and violations only on the ticks that have them: on the generated test suite
    its choices without this rule saved cost at the SLA's expense (BENCHMARKS.md). False: the objective alone."""
    hold_s: float | None = 120.0
    """The longest a chosen weight change is held before its incident plans again (None: as long as its planner
    asked). The twin checks a plan over ``horizon_s`` only; holding it longer acts on what nobody verified."""
    cost_budget: float = 0.05
    """How much more than the status quo (a fraction of its cost over the horizon) a violation cut may cost."""
    seed: int = 0


@dataclass
class Candidate:
    name: str
    proposal: Proposal
    plan: GuardedPlan
    outcomes: Outcomes = field(default_factory=list)
    baseline: Outcomes | None = None
    """The status quo's outcomes over the same ticks when they are not the whole horizon's (a screened candidate)."""
    screened_s: float | None = None
    """Set when the candidate was screened out after this many simulated seconds (it ran no further)."""


# ---------------------------------------------------------------------------------------------- candidates
def candidate_proposals(
    planned: Proposal, rule: Proposal | None, weights: RewardWeights, k: int, snapshot: dict | None = None
) -> list[tuple[str, Proposal]]:
    """Named proposals: the planner's own first, then neighbours of it and the stances, ``k`` in all. Under another
    planner (the LLM), its own answer comes on top of the rule's ``k`` (the rule's answer, its neighbours and the
    stances), so what the LLM adds can only widen the choice the rule manager has. With a ``snapshot`` that has a
    powered-off node, and a plan that adds none, one stance adds a node (the agents' weights barely move their
    replica counts; capacity does). Duplicates are left for ``distinct`` to drop after the guard."""
    if rule is not None and planned.planner != "rule":
        return [(planned.planner, planned), *candidate_proposals(rule, None, weights, k, snapshot)]
    name = planned.planner
    named: list[tuple[str, Proposal]] = [(name, planned)]
    if planned.actions and planned.weights:
        named.append((f"{name}, weights only", planned.model_copy(update={"actions": []})))
    named.append((f"{name}, half the change", _scaled(planned, weights, 0.5)))
    named.append((f"{name}, twice the change", _scaled(planned, weights, 2.0)))
    if planned.actions and planned.weights:
        named.append((f"{name}, actions only", planned.model_copy(update={"weights": {}})))
    current = weights.as_dict()
    stances = {
        "protect the SLA": {"sla": current["sla"] + 0.2, "latency": current["latency"] + 0.1, "cost": max(current["cost"] - 0.05, 0.0)},
        "save cost": {"cost": current["cost"] + 0.15, "utilization": current["utilization"] + 0.05, "sla": max(current["sla"] - 0.05, 0.0)},
        "avoid churn": {"churn": current["churn"] + 0.1, "utilization": max(current["utilization"] - 0.05, 0.0)},
    }
    for stance, values in stances.items():
        named.append((stance, Proposal(weights=values, expires_in_s=600.0, explanation=f"{stance}: {_moves(current, values)} for 10 min",
                                       planner="rule")))  # fmt: skip
        if stance == "protect the SLA" and (capacity := _add_a_node(planned, snapshot)) is not None:
            named.append(("add a node", capacity))
    return named[: max(k, 1)]


def _add_a_node(planned: Proposal, snapshot: dict | None) -> Proposal | None:
    """One node of the busiest tier that has one off, when ``planned`` adds none (None otherwise)."""
    tier = busiest_tier_with_off_nodes(snapshot) if snapshot else None
    if tier is None or any(a.name == "add_nodes" for a in planned.actions):
        return None
    call = ToolRequest(name="add_nodes", arguments={"count": 1, "tier": tier})
    return Proposal(weights={}, actions=[call], explanation=f"add capacity: power on 1 {tier} node (needs approval)", planner="rule")


def _scaled(proposal: Proposal, weights: RewardWeights, factor: float) -> Proposal:
    current = weights.as_dict()
    scaled = {k: round(max(current[k] + factor * (v - current[k]), 0.0), 6) for k, v in proposal.weights.items()}
    return proposal.model_copy(update={"weights": scaled})


def explain_plan(name: str, anomaly: str, plan: GuardedPlan, current: RewardWeights) -> str:
    """The sentence of a chosen neighbour, from what the guard let through (its values, not the ones asked for)."""
    changes = describe_changes(current, plan.weights) if plan.weights is not None else "keep the weights"
    calls = [ToolRequest(name=c["name"], arguments=c["arguments"]) for c in plan.low_risk + plan.high_risk]
    return f"{anomaly}: {changes}{describe_duration(plan.expires_in_s)}{describe_actions(calls)} (the {name} candidate)."


def _moves(current: dict[str, float], values: dict[str, float]) -> str:
    return ", ".join(f"{k} {current[k]:.2f} -> {v:.2f}" for k, v in values.items())


def distinct(candidates: Sequence[Candidate]) -> list[Candidate]:
    """The candidates whose guarded plans differ from each other and change something (the first of equals wins:
    the planner's own before its neighbours)."""
    seen: set[str] = set()
    kept = []
    for candidate in candidates:
        plan = candidate.plan
        if plan.weights is None and not plan.low_risk and not plan.high_risk:
            continue  # the status quo itself
        key = plan_key(plan)
        if key not in seen:
            seen.add(key)
            kept.append(candidate)
    return kept


# ---------------------------------------------------------------------------------------------- the twin
@dataclass
class _Run:
    """One plan on one future, resumable: the fork, its controller and the running totals."""

    fork: Cluster
    local: Controller
    terms: np.ndarray
    ticks: int = 0
    objective: float = 0.0
    cost: float = 0.0
    energy_j: float = 0.0
    drops: float = 0.0
    violations: float = 0.0
    finished: float = 0.0
    requests: float = 0.0
    violation_ticks: int = 0


class Twin:
    """The cluster and its local controller forked now, with ``futures`` arrival futures forecast from the past;
    ``outcomes(plan, ticks)`` runs a guarded plan (its weights into the controller, its actions on the fork, as if
    an operator approved the high-risk ones at once) for ``ticks`` (the whole horizon by default) and returns one
    outcome per future. Runs are kept and resumed: asking for more ticks of a plan continues where it stopped."""

    def __init__(self, cluster: Cluster, controller: Controller, objective: RewardWeights, settings: VerifySettings) -> None:
        self.ticks = max(1, min(round(settings.horizon_s / cluster.tick_s), cluster.horizon - cluster.t))
        self.tick_s = cluster.tick_s
        self.horizon_s = self.ticks * cluster.tick_s
        self.objective_weights = objective
        self.objective = objective.as_array()
        self.controller, self.settings = controller, settings
        rng = np.random.default_rng([settings.seed, cluster.t])
        past, work = cluster.workload.arrivals[: cluster.t], cluster.workload.work_scale[: cluster.t]  # type: ignore[index]
        if work.shape[0] == 0:
            work = np.ones((1, past.shape[1]))
        self.futures = [cluster.twin(*sample_future(past, work, self.ticks, cluster.tick_s, rng)) for _ in range(settings.futures)]
        self.max_price = float(cluster.base_price_per_h.max())
        self._runs: dict[str, list[_Run]] = {}

    @property
    def ticks_run(self) -> int:
        """Simulated ticks run so far over every plan and future (what verification costs, machine aside)."""
        return sum(run.ticks for runs in self._runs.values() for run in runs)

    def status_quo(self, ticks: int | None = None) -> Outcomes:
        return self.outcomes(GuardedPlan(), ticks)

    def outcomes(self, plan: GuardedPlan, ticks: int | None = None) -> Outcomes:
        key = plan_key(plan)
        if key not in self._runs:
            self._runs[key] = [self._start(future, plan) for future in self.futures]
        target = self.ticks if ticks is None else max(1, min(ticks, self.ticks))
        return [self._advance(run, target) for run in self._runs[key]]

    def _start(self, future: Cluster, plan: GuardedPlan) -> _Run:
        fork, local = copy.deepcopy(future), copy.deepcopy(self.controller)
        if hasattr(local, "explain"):
            local.explain = False  # type: ignore[attr-defined]  # nobody reads the twin's reasons: a third of a MARL tick
        if plan.weights is not None and hasattr(local, "set_weights"):
            local.set_weights(RewardWeights.from_mapping(plan.weights))  # type: ignore[attr-defined]
        actuator = SimActuator(fork)
        for k, call in enumerate([*plan.low_risk, *plan.high_risk]):
            actuator.apply(parse_call(call["name"], call["arguments"]), f"twin:{k}")
        return _Run(fork, local, np.zeros((fork.n_nodes, self.objective.size)))

    def _advance(self, run: _Run, target: int) -> dict[str, float]:
        fork = run.fork
        while run.ticks < target:
            run.local.act(fork).apply(fork)
            o = fork.out
            violations, finished = float(o.violations.sum()), float(o.served.sum() + o.drops.sum())
            run.violation_ticks += finished > 0 and violations / finished > VIOLATION_MINUTE_THRESHOLD
            run.violations += violations
            run.finished += finished
            run.requests += float(o.requests.sum())
            run.objective += float(cluster_terms(fork, reward_terms(fork, self.max_price, into=run.terms)) @ self.objective)
            run.cost += float(o.replica_cost.sum())
            run.energy_j += float(o.node_power_w.sum()) * fork.tick_s
            run.drops += float(o.drops.sum())
            run.ticks += 1
        if run.ticks > target:
            raise ValueError(f"a twin run is {run.ticks} ticks in; it cannot report {target}")
        return {
            "objective": run.objective,
            "sla_violation_minutes": run.violation_ticks * fork.tick_s / 60.0,
            "cost": run.cost,
            "energy_kwh": run.energy_j / 3.6e6,
            "drops": run.drops,
            "sla_violation_rate": run.violations / run.finished if run.finished > 0 else 0.0,
            "requests": run.requests,
        }


def plan_key(plan: GuardedPlan) -> str:
    """What makes two guarded plans the same in the twin: their weights and their calls."""
    calls = [(c["name"], sorted(c["arguments"].items())) for c in plan.low_risk + plan.high_risk]
    return repr((sorted((plan.weights or {}).items()), calls))


# ---------------------------------------------------------------------------------------------- choosing
def gain(outcomes: list[dict[str, float]], baseline: list[dict[str, float]], key: str = "objective") -> tuple[float, float]:
    """Mean and spread (standard deviation over the futures) of ``outcomes - baseline`` for ``key``."""
    diffs = np.array([a[key] - b[key] for a, b in zip(outcomes, baseline, strict=True)])
    return float(diffs.mean()), float(diffs.std())


def verify(candidates: Sequence[Candidate], twin: Twin, finalists: int | None = None) -> list[Candidate]:
    """Run every distinct candidate in the twin; the candidates with their outcomes. With more than ``finalists``
    (VerifySettings.finalists), all first run the first half of the horizon and only the best ``finalists`` by their
    gain so far run on to its end (successive halving: the rest keep their half-horizon outcomes, ``screened_s``,
    and are not chosen)."""
    finalists = twin.settings.finalists if finalists is None else finalists
    kept = distinct(candidates)
    fresh = [c for c in kept if not c.outcomes]
    if 0 < finalists < len(fresh):
        screen = max(1, twin.ticks // 2)
        baseline = twin.status_quo(screen)
        for candidate in fresh:
            candidate.outcomes, candidate.baseline = twin.outcomes(candidate.plan, screen), baseline
        fresh.sort(key=lambda c: gain(c.outcomes, baseline)[0], reverse=True)
        finals = fresh[:finalists]
        if twin.settings.sla_first:  # and the one that cuts violation minutes the most, whatever its objective
            cut = min(fresh, key=lambda c: gain(c.outcomes, baseline, "sla_violation_minutes")[0])
            if gain(cut.outcomes, baseline, "sla_violation_minutes")[0] < 0 and cut not in finals:
                finals.append(cut)
        finals += [bare for c in finals if (bare := _bare(c, fresh)) is not None and bare not in finals]  # to judge the actions
        for candidate in fresh:
            if candidate not in finals:
                candidate.screened_s = screen * twin.tick_s
    for candidate in fresh:
        if candidate.screened_s is None:
            candidate.outcomes, candidate.baseline = twin.outcomes(candidate.plan), None
    twin.status_quo()
    return kept


def select(
    candidates: Sequence[Candidate], status_quo: Outcomes, settings: VerifySettings | None = None
) -> tuple[Candidate | None, dict[str, str]]:
    """The candidate to apply (None: the status quo stays) and a verdict per candidate name (VerifySettings.sla_first
    says how they are ranked)."""
    settings = settings or VerifySettings()
    verdicts: dict[str, str] = {}
    cuts: list[Candidate] = []  # cut violation minutes beyond their spread, within the cost budget
    eligible: list[Candidate] = []  # gain on the objective beyond its spread, no more violation minutes
    for candidate in candidates:
        base = candidate.baseline or status_quo
        mean, spread = gain(candidate.outcomes, base)
        if candidate.screened_s is not None:
            verdicts[candidate.name] = f"screened out after {candidate.screened_s:.0f} s (gain {mean:+.2f} ± {spread:.2f} by then)"
            continue
        more_violations, violation_spread = gain(candidate.outcomes, base, "sla_violation_minutes")
        rate_up, _ = gain(candidate.outcomes, base, "sla_violation_rate")  # finer than minutes: a rise under the threshold
        cost = _cost_ratio(candidate.outcomes, base)
        on_objective = f"{mean:+.2f} ± {spread:.2f} on the objective"
        if _cuts_violations(candidate.outcomes, base, settings):
            cut = f"cuts violation minutes by {-more_violations:.2f} ± {violation_spread:.2f} at {cost:.2f}x the cost"
            if _within_budget(candidate.outcomes, base, settings):
                cuts.append(candidate)
                verdicts[candidate.name] = cut
            else:
                verdicts[candidate.name] = f"{cut}: over the {1.0 + settings.cost_budget:.2f}x cost budget"
                if mean > max(spread, settings.min_gain):
                    eligible.append(candidate)
                    verdicts[candidate.name] += f"; gains {on_objective}"
        elif settings.sla_first and mean > max(spread, settings.min_gain) and (more_violations > 1e-9 or rate_up > 1e-9):
            raised = f"violation minutes by {more_violations:.2f}" if more_violations > 1e-9 else f"the violation rate by {rate_up:.2%}"
            verdicts[candidate.name] = f"gains {on_objective} but raises {raised}: the SLA comes first"
        elif mean > max(spread, settings.min_gain):
            eligible.append(candidate)
            verdicts[candidate.name] = f"gains {on_objective}"
        elif mean > 0:
            verdicts[candidate.name] = f"gains {on_objective}: not more than its spread"
        else:
            verdicts[candidate.name] = f"worse than the status quo ({on_objective})"
    ranked, key = (cuts, "sla_violation_minutes") if cuts else (eligible, "objective")
    best = max(ranked, key=lambda c: _improvement(c.outcomes, status_quo, key)[0], default=None)
    if best is not None and (best.plan.low_risk or best.plan.high_risk):
        best = _without_useless_actions(best, ranked, verdicts, key)
    for candidate in ranked:
        if best is not None and candidate is not best:
            verdicts[candidate.name] += f", less than {best.name}"
    if best is not None:
        verdicts[best.name] = f"chosen: {verdicts[best.name]}"
    return best, verdicts


def _improvement(outcomes: Outcomes, baseline: Outcomes, key: str) -> tuple[float, float]:
    """Mean and spread of how much better ``outcomes`` are than ``baseline`` on ``key`` (the objective: higher is
    better; the rest: lower is)."""
    mean, spread = gain(outcomes, baseline, key)
    return (mean, spread) if key == "objective" else (-mean, spread)


def _cuts_violations(outcomes: Outcomes, baseline: Outcomes, settings: VerifySettings) -> bool:
    """Whether the SLA comes first and ``outcomes`` cut violation minutes by more than the cut's spread."""
    cut, spread = _improvement(outcomes, baseline, "sla_violation_minutes")
    return settings.sla_first and cut > max(spread, 1e-9)


def _within_budget(outcomes: Outcomes, baseline: Outcomes, settings: VerifySettings) -> bool:
    return _cost_ratio(outcomes, baseline) <= 1.0 + settings.cost_budget


def _cost_ratio(outcomes: Outcomes, baseline: Outcomes) -> float:
    before = float(np.mean([o["cost"] for o in baseline]))
    after = float(np.mean([o["cost"] for o in outcomes]))
    return after / before if before > 0 else (1.0 if after <= 0 else float("inf"))


def _bare(candidate: Candidate, among: Sequence[Candidate]) -> Candidate | None:
    """The candidate among ``among`` with ``candidate``'s weights and no actions (None when it has none, or is one)."""
    plan = candidate.plan
    if plan.weights is None or not (plan.low_risk or plan.high_risk):
        return None
    return next((c for c in among if c.plan.weights == plan.weights and not c.plan.low_risk and not c.plan.high_risk), None)


def _without_useless_actions(best: Candidate, ranked: Sequence[Candidate], verdicts: dict[str, str], key: str) -> Candidate:
    """``best`` itself, or the ranked candidate with its weights and no actions when the actions improve ``key`` by
    no more than their spread over it."""
    bare = _bare(best, ranked)
    if bare is None:
        return best
    mean, spread = _improvement(best.outcomes, bare.outcomes, key)
    if mean > spread:
        return best
    what = "the objective" if key == "objective" else "violation minutes"
    verdicts[best.name] += f"; its actions improve {what} only {mean:+.2f} ± {spread:.2f} over {bare.name}, so they are not proposed"
    return bare


def record(
    candidates: Sequence[Candidate], status_quo: Outcomes, chosen: Candidate | None, verdicts: dict[str, str], twin: Twin
) -> dict[str, Any]:
    """The verification as the decision log keeps it (JSON: see the console's Approvals and Decisions pages)."""
    baseline = _means(status_quo)
    rows = []
    for c in candidates:
        delta, spread = {}, {}
        for key in OUTCOME_KEYS:
            delta[key], spread[key] = gain(c.outcomes, c.baseline or status_quo, key)
        rows.append({
            "name": c.name, "planner": c.proposal.planner, "weights": c.plan.weights, "expires_in_s": c.plan.expires_in_s,
            "actions": [{"name": a["name"], "arguments": a["arguments"]} for a in c.plan.low_risk + c.plan.high_risk],
            "predicted": _means(c.outcomes), "delta": delta, "spread": spread, "verdict": verdicts.get(c.name, ""),
            "horizon_s": c.screened_s if c.screened_s is not None else twin.horizon_s,
        })  # fmt: skip
    return {
        "horizon_s": twin.horizon_s,
        "futures": len(twin.futures),
        "objective_weights": twin.objective_weights.as_dict(),
        "status_quo": baseline,
        "candidates": rows,
        "chosen": chosen.name if chosen is not None else None,
        "reason": reason(chosen, candidates, status_quo, twin),
        "realized": None,
    }


def reason(chosen: Candidate | None, candidates: Sequence[Candidate], status_quo: list[dict[str, float]], twin: Twin) -> str:
    """One sentence: what was chosen, by which of ``select``'s rules, and what it changes (each candidate's gain
    and spread are in its verdict, which the decision's explanation lists beside this)."""
    futures = f"{len(twin.futures)} futures forecast from the past"
    head = f"Verified {len(candidates)} candidate(s) in the twin over {twin.horizon_s:.0f} s ({futures})"
    before = _means(status_quo)
    if chosen is None:
        return f"{head}: none beats the status quo by more than its spread, so nothing changes."
    after = _means(chosen.outcomes)
    settings = twin.settings
    if _cuts_violations(chosen.outcomes, status_quo, settings) and _within_budget(chosen.outcomes, status_quo, settings):
        why = f"the largest cut in violation minutes within {1.0 + settings.cost_budget:.2f}x the cost"
    elif settings.sla_first:
        why = "the largest gain on the objective of those that raise no violations"
    else:
        why = "the largest gain on the objective"
    return (
        f"{head}: chose {chosen.name}, {why}: "
        f"violation minutes {before['sla_violation_minutes']:.2f} -> {after['sla_violation_minutes']:.2f}, "
        f"cost {before['cost']:.3f} -> {after['cost']:.3f} $."
    )


def _means(outcomes: list[dict[str, float]]) -> dict[str, float]:
    return {key: float(np.mean([o[key] for o in outcomes])) for key in OUTCOME_KEYS}
