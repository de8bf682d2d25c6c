"""Fixtures the manager's tests share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from manager.serve import ServerPlan, plan_server, running_server
from simulators.errors import ConfigError


@pytest.fixture
def local_llm(tmp_path: Path) -> Iterator[ServerPlan]:
    """llama.cpp's server with SmolLM2, started as ``ama llm serve`` would for the test and stopped after it; the test
    is skipped where no local LLM is installed."""
    try:
        plan_server(prefer="llama.cpp")
    except ConfigError as exc:
        pytest.skip(f"no local LLM: {exc}")
    with running_server(prefer="llama.cpp", log=tmp_path / "server.log") as plan:
        yield plan
