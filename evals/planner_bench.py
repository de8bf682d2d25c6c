"""The planner judgement benchmark: ``python -m evals.planner_bench [--planners rule,random,llm] [--base-url URL --model
NAME]``. Run by hand, recorded in BENCHMARKS.md; it scores what a planner proposes, not the runtime around it.

Incident states are taken from real runs: the MARL controller (manager off, so the states do not depend on any
planner) runs scenarios of the standard suite and the generated test suite, the runtime's detectors watch, and
every tick on which a new anomaly starts is an incident state (up to ``--per-scenario`` per scenario) until there are
``--states``. For each state a past-only twin (manager.verify.Twin, the one the manager verifies with) runs a fixed
candidate set, the status quo and the rule playbook's answer with its neighbours and the three stances
(manager.verify.candidate_proposals), on the same sampled futures. Each planner then answers the state (the same
diagnosis, weights, reward statistics and snapshot the manager graph would give it); its answer, guarded as the
manager would guard it, runs in the same twin.

Scores per planner:

- **regret**: the best outcome of the fixed set (status quo included) minus the planner's answer's, in objective
  units (the team reward under the operator's weights over the horizon; 0 is as good as the best, negative is
  better than every fixed candidate). A reply that is not a valid plan counts as the status quo and as invalid.
- **direction accuracy**: over every weight component the best candidate moves, the share the planner moved the
  same way (an unmoved component counts as wrong).
- **valid**: the share of states with a valid, guarded plan.

Planners: ``rule`` (manager.planners.RulePlanner), ``random`` (1-3 random weight moves of up to the guard's step; a
floor), ``llm`` (manager.llm.LLMPlanner at ``--base-url`` serving ``--model``; llama.cpp's server takes
``--response-format json_object``, vLLM ``json_schema``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from local_agents.registry import make_controller
from manager.anomalies import Detectors
from manager.forecast import outlook
from manager.graph import diagnose
from manager.guard import WeightBounds, guard
from manager.planners import Planner, RulePlanner, reward_statistics
from manager.state import PLANNING_NODE_FIELDS, Diagnosis, GuardedPlan, Proposal
from manager.verify import Twin, VerifySettings, candidate_proposals, plan_key
from simulators.errors import InputError
from simulators.rewards import REWARD_COMPONENTS, RewardWeights, reward_terms
from simulators.scenarios import load_scenario, scenario_files
from simulators.snapshot import take_snapshot
from tools.catalog import RiskBounds

SUITES = "standard,generated-test"
MAX_NODES = 100
"""Scenarios larger than this are left out (a 600-node twin costs seconds per candidate; the states would not differ
in kind)."""


class RandomPlanner:
    """The floor: 1-3 random components, each moved by up to the guard's step either way, for 10 minutes."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def plan(self, diagnosis: Diagnosis, weights: RewardWeights, reward_stats: dict, snapshot: dict) -> Proposal:
        current = weights.as_dict()
        names = self.rng.choice(REWARD_COMPONENTS, size=int(self.rng.integers(1, 4)), replace=False)
        moves = {str(n): round(max(current[str(n)] + float(self.rng.uniform(-0.25, 0.25)), 0.0), 4) for n in names}
        return Proposal(weights=moves, expires_in_s=600.0, explanation="random moves", planner="rule")


@dataclass
class State:
    scenario: str
    tick: int
    diagnosis: Diagnosis
    weights: RewardWeights
    reward_stats: dict[str, dict[str, float]]
    snapshot: dict[str, Any]
    twin: Twin
    fixed: dict[str, tuple[GuardedPlan, float]]
    """Name -> (guarded plan, mean objective over the futures), the status quo included."""


def collect_states(count: int, per_scenario: int, suites: str, settings: VerifySettings, progress: bool) -> list[State]:
    """Up to ``count`` incident states, each with its twin and the fixed candidates' outcomes."""
    states: list[State] = []
    files = [f for suite in suites.split(",") for f in scenario_files(suite.strip())]
    for path in files:
        try:
            scenario = load_scenario(path)
        except InputError as exc:  # e.g. a trace this machine does not have: said in one line, the rest go on
            print(f"\nskipped {path.stem}: {str(exc).splitlines()[0]}", file=sys.stderr)
            continue
        if len(scenario.config.nodes) > MAX_NODES:
            continue
        states += _scenario_states(scenario, per_scenario, settings)
        if progress:
            print(f"\r{len(states)} incident states ({path.stem})", end="", file=sys.stderr, flush=True)
        if len(states) >= count:
            break
    if progress:
        print(file=sys.stderr)
    return states[:count]


def _scenario_states(scenario: Any, limit: int, settings: VerifySettings) -> list[State]:
    cluster = scenario.make_cluster()
    controller = make_controller("marl", seed=scenario.spec.seed)
    controller.reset(cluster)
    detectors, seen, terms = Detectors(), set(), []
    max_price = float(cluster.base_price_per_h.max())
    states: list[State] = []
    weights = RewardWeights()
    while cluster.t < cluster.horizon - 1 and len(states) < limit:
        controller.act(cluster).apply(cluster)
        terms = [*terms[-59:], reward_terms(cluster, max_price)]
        snapshot = take_snapshot(cluster)
        started = detectors.observe(snapshot)
        fresh = [a for a in started if (a.type, a.target) not in seen]
        seen = set(detectors.active)
        if not fresh or cluster.horizon - cluster.t < settings.horizon_s / cluster.tick_s:
            continue
        data = {**snapshot.to_dict(PLANNING_NODE_FIELDS), "forecast": outlook(cluster.workload.arrivals[: cluster.t], cluster.tick_s,
                                                                             list(cluster.service_names))}  # fmt: skip
        anomalies = [{**a.as_dict(), "own": (a.type, a.target) in {(f.type, f.target) for f in fresh}} for a in detectors.active.values()]
        diagnosis = diagnose(f"bench-{scenario.name}-{cluster.t}", anomalies, data)
        stats = reward_statistics(np.stack(terms))
        twin = Twin(cluster, controller, RewardWeights(), settings)
        rule = RulePlanner().plan(diagnosis, weights, stats, data)
        fixed = {"status quo": (GuardedPlan(), _mean(twin.status_quo()))}
        for name, proposal in candidate_proposals(rule, None, weights, settings.candidates, data):
            plan = _guarded(proposal, weights, data)
            fixed[name] = (plan, _mean(twin.outcomes(plan)))
        states.append(State(scenario.name, cluster.t, diagnosis, weights, stats, data, twin, fixed))
    return states


def _guarded(proposal: Proposal, weights: RewardWeights, snapshot: dict[str, Any]) -> GuardedPlan:
    replicas = {(s["name"], None): int(s.get("replicas_warm", 0)) + int(s.get("replicas_booting", 0)) for s in snapshot.get("services", [])}
    return guard(proposal, weights, WeightBounds(), RiskBounds(), replicas)


def _mean(outcomes: list[dict[str, float]]) -> float:
    return float(np.mean([o["objective"] for o in outcomes]))


def score(planner: Planner, states: list[State]) -> dict[str, Any]:
    """The planner's regret, direction accuracy and valid share over ``states``."""
    regrets, right, moved, valid, seconds = [], 0, 0, 0, []
    failures: dict[str, int] = {}
    for state in states:
        best_name = max(state.fixed, key=lambda n: state.fixed[n][1])
        best_plan, best = state.fixed[best_name]
        start = time.perf_counter()
        try:
            proposal = planner.plan(state.diagnosis, state.weights, state.reward_stats, state.snapshot)
            plan = _guarded(proposal, state.weights, state.snapshot)
            valid += 1
        except Exception as exc:  # a failed reply is scored as the status quo it would leave in force
            plan = GuardedPlan()
            why = str(exc).split(":")[0][:80] or type(exc).__name__
            failures[why] = failures.get(why, 0) + 1
        seconds.append(time.perf_counter() - start)
        known = {plan_key(p): value for p, value in state.fixed.values()}
        value = known.get(plan_key(plan))
        regrets.append(best - (value if value is not None else _mean(state.twin.outcomes(plan))))
        current = state.weights.as_dict()
        for name in REWARD_COMPONENTS:
            want = np.sign(round((best_plan.weights or current)[name] - current[name], 6))
            if want != 0:
                moved += 1
                right += int(np.sign(round((plan.weights or current)[name] - current[name], 6)) == want)
    return {
        "planner": planner.name,
        "states": len(states),
        "valid_share": valid / len(states) if states else None,
        "regret_mean": statistics.mean(regrets) if regrets else None,
        "regret_median": statistics.median(regrets) if regrets else None,
        "regret_p90": float(np.quantile(regrets, 0.9)) if regrets else None,
        "direction_accuracy": right / moved if moved else None,
        "components_moved_by_best": moved,
        "seconds_per_answer": statistics.mean(seconds) if seconds else None,
        "failures": failures,
    }


def make_planner(name: str, args: argparse.Namespace) -> Planner:
    if name == "rule":
        return RulePlanner()
    if name == "random":
        return RandomPlanner(args.seed)
    if name == "llm":
        from manager.llm import LLMPlanner, LLMSettings

        settings = LLMSettings.from_env(
            **{k: v for k, v in {"base_url": args.base_url, "model": args.model, "response_format": args.response_format}.items() if v}
        )
        planner = LLMPlanner(settings)
        planner.check_server()
        return planner
    raise SystemExit(f"unknown planner {name!r}: choose rule, random or llm")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Planner judgement: regret and weight-direction accuracy on incident states.")
    parser.add_argument("--planners", default="rule,random", help="comma-separated: rule, random, llm (default: %(default)s)")
    parser.add_argument("--base-url", default=None, help="the LLM server's OpenAI-compatible API root (default: AMA_LLM_BASE_URL)")
    parser.add_argument("--model", default=None, help="the model the server serves (default: AMA_LLM_MODEL)")
    parser.add_argument("--response-format", default=None, choices=("json_schema", "json_object"), help="json_object for llama.cpp")
    parser.add_argument("--states", type=int, default=50, help="incident states (default: %(default)s)")
    parser.add_argument("--per-scenario", type=int, default=3, help="most states from one scenario (default: %(default)s)")
    parser.add_argument("--suites", default=SUITES, help="where states come from (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="the random planner's seed")
    parser.add_argument("--out", type=Path, default=None, help="also write the scores as JSON here")
    args = parser.parse_args(argv)
    planners = [make_planner(name.strip(), args) for name in args.planners.split(",") if name.strip()]
    settings = VerifySettings()
    states = collect_states(args.states, args.per_scenario, args.suites, settings, progress=True)
    scores = [score(planner, states) for planner in planners]
    kinds: dict[str, int] = {}
    for state in states:
        kinds[state.diagnosis.primary] = kinds.get(state.diagnosis.primary, 0) + 1
    report = {
        "states": len(states), "scenarios": len({s.scenario for s in states}), "anomaly_types": kinds, "horizon_s": settings.horizon_s,
        "futures": settings.futures, "fixed_candidates": settings.candidates, "scores": scores,
    }  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
