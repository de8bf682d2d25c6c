"""Propose, verify, then act: the twin's outcomes do not depend on the scenario's future; a candidate whose outcome
is worse than the status quo is never applied, and with a planner that only proposes harm the run equals "manager
off"; a gain within the futures' spread changes nothing; an action that adds nothing over its weights is dropped;
the verify row keeps every candidate, and the realized outcome is added to it after the horizon."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from local_agents.registry import make_controller
from manager.loop import Runtime, RuntimeSettings
from manager.state import Diagnosis, GuardedPlan, Proposal
from manager.verify import Candidate, Twin, VerifySettings, candidate_proposals, select, verify
from simulators.rewards import RewardWeights
from simulators.scenarios import load_scenario
from tests.spike import spike_scenario
from tools.decision_log import DecisionLog


class HarmfulPlanner:
    """Stands in for a bad LLM: every answer tells the agents to care for nothing but cost and churn."""

    name = "harmful"

    def plan(self, diagnosis: Diagnosis, weights: RewardWeights, reward_stats: dict, snapshot: dict) -> Proposal:
        return Proposal(weights={"sla": 0.0, "latency": 0.0, "cost": 1.0, "churn": 1.0}, expires_in_s=600, explanation="save at all costs",
                        planner="llm")  # fmt: skip


def run(tmp_path: Path, manager: str, planner: object | None = None, candidates: int = 8, name: str = "a") -> tuple[dict, DecisionLog]:
    folder = tmp_path / name
    folder.mkdir()
    log = DecisionLog(f"sqlite:///{folder / 'log.db'}")
    settings = RuntimeSettings(
        scenario=spike_scenario(folder), controller="marl", manager=manager, checkpoints=folder / "c.db", auto_approve="op",
        verify=VerifySettings(candidates=candidates),
    )  # fmt: skip
    runtime = Runtime(settings, log, planner=planner)  # type: ignore[arg-type]
    return runtime.run(), log


def test_the_twin_does_not_read_the_future(tmp_path: Path) -> None:
    path = spike_scenario(tmp_path)
    outcomes = []
    for future_factor in (1.0, 20.0):  # the same past, two different futures
        cluster = load_scenario(path).make_cluster()
        controller = make_controller("marl")
        controller.reset(cluster)
        for _ in range(60):
            controller.act(cluster).apply(cluster)
        cluster.workload.arrivals[cluster.t :] *= future_factor
        twin = Twin(cluster, controller, RewardWeights(), VerifySettings(horizon_s=60, futures=2))
        outcomes.append(twin.status_quo())
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0]["cost"] > 0 and outcomes[0][0] != outcomes[0][1]  # it ran, and the two futures differ


def test_a_harmful_planner_changes_nothing_and_the_run_equals_manager_off(tmp_path: Path) -> None:
    verified, log = run(tmp_path, "llm", HarmfulPlanner(), candidates=1, name="verified")
    off, _ = run(tmp_path, "off", name="off")
    rows = log.decisions(actor="manager", limit=1000)
    checks = [json.loads(r.result_json or "{}")["verification"] for r in rows if r.action == "verify"]
    assert checks and all(c["chosen"] is None for c in checks)
    assert all(c["candidates"][0]["delta"]["objective"] < 0 for c in checks)  # the twin saw the harm
    assert not [r for r in rows if r.action == "set_reward_weights"]
    for key in ("sla_violation_minutes", "cost", "energy_kwh", "requests", "ok_requests", "drops", "scale_moves"):
        assert verified[key] == off[key], key


def test_without_verification_the_harmful_plan_is_applied(tmp_path: Path) -> None:
    """The control for the test above: the same planner, unverified, changes the weights and costs SLA."""
    unverified, log = run(tmp_path, "llm", HarmfulPlanner(), candidates=0, name="unverified")
    off, _ = run(tmp_path, "off", name="off")
    assert [r for r in log.decisions(actor="manager", limit=1000) if r.action == "set_reward_weights"]
    assert unverified["sla_violation_minutes"] != off["sla_violation_minutes"] or unverified["cost"] != off["cost"]


def test_verified_runs_keep_every_candidate_and_the_realized_outcome(tmp_path: Path) -> None:
    summary, log = run(tmp_path, "rule")
    rows = log.decisions(actor="manager", limit=1000)
    (first, *_) = sorted((r for r in rows if r.action == "verify"), key=lambda r: r.tick)
    verification = json.loads(first.result_json or "{}")["verification"]
    names = [c["name"] for c in verification["candidates"]]
    assert names[0] == "rule" and "protect the SLA" in names and len(names) == len(set(names)) > 3
    assert all(name in first.explanation for name in names)  # the explanation weighs each one
    chosen = [c for c in verification["candidates"] if c["verdict"].startswith("chosen")]
    assert [c["name"] for c in chosen] == ([verification["chosen"]] if verification["chosen"] else [])
    realized = verification["realized"]
    assert realized is not None and realized["at_s"] == first.time_s + verification["horizon_s"]
    check = next(c for c in summary["twin_checks"] if c["incident"] == first.incident_id)
    assert check["realized"]["cost"] == realized["cost"] > 0
    proposals = [r for r in rows if r.risk == "high"]
    for row in proposals:  # an operator sees the candidates beside each proposal
        assert json.loads(row.result_json or "{}")["verification"]["chosen"] is not None


def outcomes(*objectives: float) -> list[dict[str, float]]:
    keys = {"sla_violation_minutes": 0.0, "sla_violation_rate": 0.0, "cost": 0.0, "energy_kwh": 0.0, "drops": 0.0}
    return [{"objective": o, **keys} for o in objectives]


def candidate(name: str, objectives: tuple[float, ...], weights: dict | None = None, actions: bool = False) -> Candidate:
    calls = [{"name": "add_nodes", "arguments": {"count": 1, "tier": "cloud"}, "explanation": "", "risk_reason": ""}] if actions else []
    plan = GuardedPlan(weights=weights, high_risk=calls)
    return Candidate(name, Proposal(weights={}, explanation=name), plan, outcomes(*objectives))


def test_select_needs_a_gain_beyond_the_spread_and_drops_actions_that_add_nothing() -> None:
    status_quo = outcomes(0.0, 0.0, 0.0)
    noisy = candidate("noisy", (3.0, -2.0, 0.5))  # mean +0.5, spread 2.1
    chosen, verdicts = select([noisy], status_quo)
    assert chosen is None and "not more than its spread" in verdicts["noisy"]
    weights = {"sla": 0.6}
    bare = candidate("weights only", (1.0, 1.1, 0.9), weights)
    with_nodes = candidate("with nodes", (1.1, 1.0, 0.95), weights, actions=True)  # +0.02 ± 0.08 over bare: within its spread
    worse = candidate("worse", (-1.0, -1.0, -1.0), {"sla": 0.1})
    chosen, verdicts = select([with_nodes, bare, worse], status_quo)
    assert chosen is bare and "not proposed" in verdicts["with nodes"] and verdicts["weights only"].startswith("chosen")
    assert verdicts["worse"].startswith("worse than the status quo")
    useful = candidate("useful nodes", (3.0, 3.2, 2.9), weights, actions=True)
    chosen, _ = select([useful, bare], status_quo)
    assert chosen is useful


def test_candidates_are_the_planners_answer_and_its_neighbours() -> None:
    weights = RewardWeights()
    rule = Proposal(weights={"sla": 0.6}, actions=[{"name": "add_nodes", "arguments": {"count": 1, "tier": "cloud"}}], explanation="r")
    llm = Proposal(weights={"cost": 0.3}, explanation="l", planner="llm")
    named = dict(candidate_proposals(llm, rule, weights, 8))
    assert list(named)[:2] == ["llm", "rule"] and len(named) == 9  # the LLM's answer on top of the rule's eight
    assert list(named)[1:] == [name for name, _ in candidate_proposals(rule, None, weights, 8)]
    assert np.isclose(named["rule, half the change"].weights["sla"], 0.5)
    assert named["rule, weights only"].actions == [] and named["rule, weights only"].weights == {"sla": 0.6}
    assert list(dict(candidate_proposals(rule, None, weights, 3))) == ["rule", "rule, weights only", "rule, half the change"]


def test_llm_runs_reach_the_server_for_a_plan_and_a_refinement_and_the_twin_judges_both(tmp_path: Path) -> None:
    from manager.llm import LLMPlanner, LLMSettings
    from tests.manager.fake_openai import FakeOpenAI

    first = {"content": json.dumps({"weights": {"sla": 0.55}, "expires_in_s": 300, "explanation": "more SLA", "confidence": 0.5})}
    refined = {"content": json.dumps({"weights": {"sla": 0.6, "latency": 0.3}, "expires_in_s": 300, "explanation": "a bit more"})}
    with FakeOpenAI([first, refined] * 10) as server:
        planner = LLMPlanner(LLMSettings(base_url=server.base_url, model="fake-model", retries=0))
        summary, log = run(tmp_path, "llm", planner)
        requests = list(server.requests)
    verifications = [
        json.loads(r.result_json or "{}")["verification"] for r in log.decisions(actor="manager", limit=1000) if r.action == "verify"
    ]
    assert summary["incidents_opened"] >= 1 and len(requests) == 2 * len(verifications) > 0
    assert "digital twin ran your plan" in requests[1]["messages"][-1]["content"]  # the second round sees the verdicts
    assert "forecast (from the past only" in requests[0]["messages"][1]["content"]
    names = [c["name"] for c in verifications[0]["candidates"]]
    assert names[:2] == ["llm", "rule"] and "llm, refined" in names


def test_a_candidate_that_raises_violation_minutes_is_not_applied_whatever_it_saves() -> None:
    status_quo = outcomes(0.0, 0.0, 0.0)
    cheaper = candidate("save cost", (2.0, 2.1, 1.9), {"cost": 0.3})
    cheaper.outcomes = [{**o, "sla_violation_minutes": 0.5} for o in cheaper.outcomes]  # saves, at the SLA's expense
    chosen, verdicts = select([cheaper], status_quo)
    assert chosen is None and "the SLA comes first" in verdicts["save cost"]
    chosen, _ = select([cheaper], status_quo, VerifySettings(sla_first=False))
    assert chosen is cheaper
    cheaper.outcomes = [{**o, "sla_violation_minutes": 0.0, "sla_violation_rate": 0.01} for o in cheaper.outcomes]
    chosen, verdicts = select([cheaper], status_quo)  # under a minute's threshold, and still a rise
    assert chosen is None and "raises the violation rate by 1.00%" in verdicts["save cost"]


def test_a_cut_in_violation_minutes_within_the_cost_budget_comes_before_the_objective() -> None:
    status_quo = [{**o, "sla_violation_minutes": 1.0, "cost": 10.0} for o in outcomes(0.0, 0.0, 0.0)]
    cheaper = candidate("save cost", (3.0, 3.1, 2.9), {"cost": 0.3})  # the larger gain on the objective
    cheaper.outcomes = [{**o, "sla_violation_minutes": 1.0, "cost": 9.0} for o in cheaper.outcomes]
    safer = candidate("protect the SLA", (0.5, 0.6, 0.4), {"sla": 0.6})
    safer.outcomes = [{**o, "sla_violation_minutes": v, "cost": 10.4} for o, v in zip(safer.outcomes, (0.5, 0.6, 0.4), strict=True)]
    chosen, verdicts = select([cheaper, safer], status_quo)
    assert chosen is safer and "cuts violation minutes by 0.50" in verdicts["protect the SLA"]
    dearer = candidate("protect it at any price", (0.5, 0.6, 0.4), {"sla": 0.9})
    dearer.outcomes = [{**o, "cost": 12.0} for o in safer.outcomes]  # 1.2x the cost: over the 5% budget
    chosen, verdicts = select([cheaper, dearer], status_quo)
    assert chosen is cheaper and "over the 1.05x cost budget" in verdicts["protect it at any price"]
    chosen, _ = select([cheaper, dearer], status_quo, VerifySettings(cost_budget=0.25))
    assert chosen is dearer


def test_a_verified_change_is_held_as_long_as_the_twin_checked_it_and_the_incident_plans_again(tmp_path: Path, monkeypatch) -> None:
    import manager.graph

    def planners_own(candidates: list[Candidate], status_quo: list, settings: VerifySettings | None = None) -> tuple:
        return candidates[0], {c.name: "chosen" if c is candidates[0] else "" for c in candidates}  # as if it won

    monkeypatch.setattr(manager.graph, "select", planners_own)
    summary, log = run(tmp_path, "rule")
    rows = log.decisions(actor="manager", limit=1000)
    applied = [r for r in rows if r.action == "set_reward_weights" and r.status == "applied"]
    assert applied and all(json.loads(r.args_json)["expires_in_s"] <= 120.0 for r in applied)
    verifications = [r for r in rows if r.action == "verify"]
    per_incident = {r.incident_id: sum(v.incident_id == r.incident_id for v in verifications) for r in applied}
    assert max(per_incident.values()) > 1  # the spike outlasts one hold: its incident planned again when it expired
    assert summary["incidents_opened"] == len({r.incident_id for r in verifications})


def test_with_a_node_off_one_candidate_adds_a_node_unless_the_plan_does() -> None:
    weights = RewardWeights()
    snapshot = {"nodes": [{"name": "cloud-0", "tier": "cloud", "state": "on", "utilization": 0.9},
                          {"name": "cloud-1", "tier": "cloud", "state": "off", "utilization": 0.0}]}  # fmt: skip
    rule = Proposal(weights={"sla": 0.6}, explanation="r")
    named = dict(candidate_proposals(rule, None, weights, 8, snapshot))
    assert [(a.name, a.arguments) for a in named["add a node"].actions] == [("add_nodes", {"count": 1, "tier": "cloud"})]
    assert "add a node" not in dict(candidate_proposals(rule, None, weights, 8))  # no snapshot: no node known to be off
    adds = Proposal(weights={"sla": 0.6}, actions=[{"name": "add_nodes", "arguments": {"count": 2, "tier": "cloud"}}], explanation="r")
    assert "add a node" not in dict(candidate_proposals(adds, None, weights, 8, snapshot))


class ScriptedTwin:
    """Stands in for the twin in ``verify``: each plan's outcome per future is given by its SLA weight."""

    def __init__(self, by_sla: dict[float, tuple[float, float]]) -> None:
        self.settings, self.ticks, self.tick_s = VerifySettings(finalists=1), 120, 1.0
        self.by_sla = by_sla  # sla weight -> (objective, violation minutes); 0.4 is the status quo's

    def outcomes(self, plan: GuardedPlan, ticks: int | None = None) -> list[dict[str, float]]:
        objective, minutes = self.by_sla[(plan.weights or {}).get("sla", 0.4)]
        return [{"objective": objective, "sla_violation_minutes": minutes + k / 100, "cost": 1.0} for k in range(3)]

    def status_quo(self, ticks: int | None = None) -> list[dict[str, float]]:
        return self.outcomes(GuardedPlan(), ticks)


def test_screening_keeps_the_largest_violation_cut_whatever_its_objective() -> None:
    twin = ScriptedTwin({0.4: (0.0, 1.0), 0.3: (5.0, 1.0), 0.5: (1.0, 0.9), 0.9: (-1.0, 0.2)})
    candidates = [Candidate(name, Proposal(weights={}, explanation=name), GuardedPlan(weights={"sla": sla}))
                  for name, sla in (("save cost", 0.3), ("a little SLA", 0.5), ("much SLA", 0.9))]  # fmt: skip
    kept = {c.name: c for c in verify(candidates, twin)}  # type: ignore[arg-type]
    assert kept["save cost"].screened_s is None  # the best objective goes on, one finalist
    assert kept["much SLA"].screened_s is None  # and the largest cut, last on the objective
    assert kept["a little SLA"].screened_s == 60.0
