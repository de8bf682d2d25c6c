"""``ama llm serve``'s plan through manager.serve.plan_server: the command line it would start and the settings it
hands the manager. No server is launched: a fake ``vllm`` on PATH stands in for an installed vLLM."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from manager.serve import VLLM_DEFAULT_MODEL, plan_server
from simulators.errors import ConfigError

VLLM_IMPORTS = importlib.util.find_spec("vllm") is not None
"""With vLLM importable the plan runs it with this interpreter instead of the ``vllm`` script on PATH."""


@pytest.fixture
def fake_vllm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    script = tmp_path / "vllm"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    return script


def served(argv: list[str]) -> list[str]:
    """What follows ``serve`` on a vLLM command line."""
    return argv[argv.index("serve") + 1 :]


def flags(argv: list[str]) -> dict[str, str | None]:
    """``--name value`` pairs of a command line; a flag followed by another flag (or nothing) maps to None."""
    found: dict[str, str | None] = {}
    for index, arg in enumerate(argv):
        if arg.startswith("--"):
            value = argv[index + 1] if index + 1 < len(argv) and not argv[index + 1].startswith("--") else None
            found[arg] = value
    return found


def test_the_vllm_plan_serves_the_recommended_model_with_tool_calling_and_structured_outputs(fake_vllm: Path) -> None:
    plan = plan_server(host="127.0.0.1", port=8123, prefer="vllm")
    assert plan.kind == "vllm" and plan.model == VLLM_DEFAULT_MODEL == "Qwen/Qwen2.5-7B-Instruct"
    launcher = [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve"] if VLLM_IMPORTS else [str(fake_vllm), "serve"]
    assert plan.argv[: len(launcher)] == launcher
    assert served(plan.argv)[0] == "Qwen/Qwen2.5-7B-Instruct"  # vllm serve <model>: positional, no --model
    assert flags(plan.argv) == {
        "--host": "127.0.0.1",
        "--port": "8123",
        "--served-model-name": "Qwen/Qwen2.5-7B-Instruct",
        "--max-model-len": "8192",
        "--enable-auto-tool-choice": None,
        "--tool-call-parser": "hermes",
        "--structured-outputs-config.backend": "guidance",
    }
    assert plan.environment() == {
        "AMA_LLM_BASE_URL": "http://127.0.0.1:8123/v1",
        "AMA_LLM_MODEL": "Qwen/Qwen2.5-7B-Instruct",
        "AMA_LLM_RESPONSE_FORMAT": "json_schema",
    }


def test_a_model_without_hermes_tool_calls_gets_no_hermes_parser(fake_vllm: Path) -> None:
    plan = plan_server(port=8000, model="mistralai/Ministral-8B-Instruct-2410", prefer="vllm")
    found = flags(plan.argv)
    assert served(plan.argv)[0] == "mistralai/Ministral-8B-Instruct-2410" and found["--served-model-name"] == plan.model
    assert "--tool-call-parser" not in found and "--enable-auto-tool-choice" not in found
    assert found["--structured-outputs-config.backend"] == "guidance"
    assert flags(plan_server(model="Qwen/Qwen3-8B", prefer="vllm").argv)["--tool-call-parser"] == "hermes"


@pytest.mark.skipif(VLLM_IMPORTS, reason="vLLM is installed here")
def test_asking_for_vllm_without_it_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="vLLM is not installed"):
        plan_server(prefer="vllm")


def test_without_a_gpu_auto_plans_llama_cpp(fake_vllm: Path) -> None:
    try:
        plan = plan_server(port=8124, prefer="auto")
    except ConfigError as exc:
        pytest.skip(f"no local LLM: {exc}")
    if plan.kind == "vllm":
        pytest.skip("a GPU is present: auto plans vLLM")
    assert plan.kind == "llama.cpp" and plan.response_format == "json_object" and plan.model == "smollm2-135m-instruct"
    assert plan.argv[1:3] == ["-m", "llama_cpp.server"] and flags(plan.argv)["--port"] == "8124"
