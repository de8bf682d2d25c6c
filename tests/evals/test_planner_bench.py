"""The planner judgement benchmark with a tiny budget: incident states from MARL runs, the rule planner's regret is
never negative (its answer is in the fixed set), and an LLM planner's every answer goes to the server (the fake one
over HTTP), counted valid only when it is a plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evals.planner_bench import main
from tests.manager.fake_openai import FakeOpenAI


def test_rule_random_and_llm_are_scored_on_the_same_states(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reply = {"content": json.dumps({"weights": {"sla": 0.5}, "expires_in_s": 300, "explanation": "more SLA"})}
    with FakeOpenAI([reply, {"content": "not json"}] * 5) as server:
        out = tmp_path / "scores.json"
        main(["--planners", "rule,random,llm", "--base-url", server.base_url, "--model", "fake-model", "--states", "2",
              "--per-scenario", "1", "--suites", "smoke", "--out", str(out)])  # fmt: skip
        asked = [r for r in server.requests if "messages" in r]
    report = json.loads(out.read_text())
    assert report["states"] == 2 and json.loads(capsys.readouterr().out) == report
    scores = {s["planner"]: s for s in report["scores"]}
    assert scores["rule"]["regret_mean"] >= 0 and scores["rule"]["valid_share"] == 1.0
    assert 0 <= scores["random"]["direction_accuracy"] <= 1
    assert len(asked) == 2 and scores["llm"]["valid_share"] == 0.5  # one plan, one reply that is not JSON
    assert sum(scores["llm"]["failures"].values()) == 1
