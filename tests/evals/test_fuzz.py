"""Fuzz: generated scenarios (simulators.generator) under every kind of local controller, with the manager off, with
the rule planner and with the LLM planner against a fake OpenAI-compatible server whose replies are by turns valid,
not JSON, empty and out of bounds. Zero crashes, and every incident the runtime opened ends applied, failed with a
record, or waiting for an operator."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest

from evals.runner import run_controller
from local_agents.registry import make_controller
from manager.loop import Runtime, RuntimeSettings
from manager.verify import VerifySettings
from simulators.generator import generate_spec, scenario_yaml, split_seed
from simulators.scenarios import load_scenario
from tests.manager.fake_openai import FakeOpenAI
from tools.decision_log import DecisionLog

CONTROLLERS = ("hpa", "kpa", "node-rule", "marl")
REPLIES = [
    {"content": json.dumps({"weights": {"sla": 0.6, "energy": 0.05}, "expires_in_s": 300, "explanation": "protect the SLO"})},
    {"content": "the cluster looks fine to me"},
    {"content": json.dumps({"weights": {}, "explanation": "nothing to do"})},
    {"content": json.dumps({"weights": {"sla": 50.0}, "explanation": "all in on the SLA"})},
    {"content": json.dumps({"weights": {"cost": 0.3}, "actions": [{"name": "add_nodes", "arguments": {"count": 2}}], "explanation": "x"})},
]


def small_generated(count: int, max_nodes: int = 16, max_duration_s: float = 600.0) -> list[dict[str, Any]]:
    """The first ``count`` training-split scenarios small and short enough for CI, each with anomalies."""
    found, index = [], 0
    while len(found) < count:
        spec = generate_spec(split_seed("train", index), with_traces=False)
        index += 1
        nodes = sum(group["count"] for group in spec["cluster"]["nodes"])
        if nodes <= max_nodes and spec["duration_s"] <= max_duration_s and spec["events"]:
            found.append(spec)
    return found


SCENARIOS = small_generated(3)


@pytest.fixture(scope="module")
def scenario_files() -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for spec in SCENARIOS:
            path = Path(tmp) / f"{spec['name']}.yaml"
            path.write_text(scenario_yaml(spec))
            paths.append(path)
        yield paths


def run_with_manager(path: Path, controller: str, manager: str, tmp: Path) -> tuple[Runtime, DecisionLog]:
    log = DecisionLog(f"sqlite:///{tmp / 'log.db'}")
    quick = VerifySettings(candidates=4, horizon_s=30.0, futures=2, finalists=2)  # every verification path, a quarter of the ticks
    settings = RuntimeSettings(
        scenario=path, controller=controller, manager=manager, checkpoints=tmp / "checkpoints.db", auto_approve="fuzz", verify=quick
    )
    runtime = Runtime(settings, log)
    runtime.run()
    return runtime, log


def check_incidents(runtime: Runtime, log: DecisionLog) -> None:
    rows = log.decisions(run_id=runtime.run_id, actor="manager", limit=100_000)
    assert runtime.incidents_failed == 0, [r.explanation for r in rows if r.action == "incident"]
    for incident in runtime.opened:
        mine = [r for r in rows if r.incident_id == incident]
        assert mine, f"incident {incident} left no record"
        ended = {r.status for r in mine if r.action != "note"}
        waiting = incident in runtime.waiting
        assert waiting or ended & {"applied", "failed", "expired", "rejected"}, [(r.action, r.status, r.explanation[:80]) for r in mine]


@pytest.mark.parametrize("controller", CONTROLLERS)
def test_generated_scenarios_never_crash_any_controller_or_manager(controller: str, scenario_files: list[Path], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    opened, asked, fell_back = 0, 0, 0
    for path in scenario_files:
        scenario = load_scenario(path)
        recorder, _ = run_controller(scenario, make_controller(controller, seed=scenario.spec.seed), keep_series=False)
        assert recorder.ticks == scenario.ticks
        with tempfile.TemporaryDirectory() as tmp:
            runtime, log = run_with_manager(path, controller, "rule", Path(tmp))
            check_incidents(runtime, log)
            opened += len(runtime.opened)
            log.close()
        with tempfile.TemporaryDirectory() as tmp, FakeOpenAI(REPLIES * 20) as server:
            monkeypatch.setenv("AMA_LLM_BASE_URL", server.base_url)
            monkeypatch.setenv("AMA_LLM_RESPONSE_FORMAT", "json_object")
            runtime, log = run_with_manager(path, controller, "llm", Path(tmp))
            check_incidents(runtime, log)
            asked += len(server.requests)
            notes = [r.explanation for r in log.decisions(run_id=runtime.run_id, actor="manager", limit=100_000) if r.action == "note"]
            fell_back += sum("llm planner failed" in n for n in notes)
            log.close()
    assert opened and asked, "the fuzz scenarios opened no incident: nothing was tested"
    assert fell_back or asked < 2, "the invalid replies after the first were not recorded as planner failures"
