"""The ama command line and the benchmark, run as a user runs them: subprocesses with tiny budgets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from simulators.scenarios import SCENARIO_DIR

AMA = [sys.executable, "-m", "ui.cli"]
REPO = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AMA, *args], capture_output=True, text=True, cwd=REPO, timeout=120)


def test_help_lists_sim() -> None:
    out = run("--help")
    assert out.returncode == 0
    assert "sim" in out.stdout
    assert "--scenario" in run("sim", "--help").stdout


def test_sim_json_summary() -> None:
    out = run("sim", "--scenario", str(SCENARIO_DIR / "spike-then-failure.yaml"), "--ticks", "30", "--seed", "3", "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["ticks"] == 30 and summary["seed"] == 3 and summary["controller"] == "static"
    for key in ("sla_violation_rate", "p95_latency_ms", "cost", "energy_kwh", "cold_starts", "drops"):
        assert key in summary
    assert summary["requests"] > 0 and summary["cost"] > 0


def test_sim_table_output() -> None:
    out = run("sim", "--scenario", str(SCENARIO_DIR / "edge-cold-start-storm.yaml"), "--ticks", "10")
    assert out.returncode == 0, out.stderr
    assert "sla_violation_rate" in out.stdout


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "file not found"),
        ("name: x\nduration_s: -1\n", "duration_s"),
        ("name: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_scenario_is_one_line_and_exit_code_2(tmp_path: Path, content: str | None, words: str) -> None:
    path = tmp_path / "bad.yaml"
    if content is not None:
        path.write_text(content)
    out = run("sim", "--scenario", str(path), "--json")
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert str(path) in lines[0] and words in lines[0]
    assert "Traceback" not in out.stderr


def test_run_refuses_a_cpu_it_may_not_use_in_one_line() -> None:
    out = run("run", "--scenario", str(SCENARIO_DIR / "traffic-spike-small.yaml"), "--ticks", "5", "--cpu", "4096")
    assert out.returncode == 2 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "--cpu 4096: this process may run on CPUs" in lines[0], out.stderr


def test_bench_json_with_a_tiny_budget() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "simulators.bench", "--json", "--sizes", "10,20", "--seconds", "0.02"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert [r["nodes"] for r in report["results"]] == [10, 20]
    for row in report["results"]:
        assert row["batch_node_steps_per_s"] > 0 and row["batch_env_node_steps_per_s"] > 0 and row["pettingzoo_agent_steps_per_s"] > 0


def test_stopping_ama_console_stops_its_server(tmp_path: Path) -> None:
    """``ama console`` becomes the Streamlit server: a SIGTERM to the command (a container's stop) stops the server,
    instead of leaving it running and holding the port."""
    import socket
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    argv = [sys.executable, "-m", "ui.cli", "console", "--db", f"sqlite:///{tmp_path / 'log.db'}", "--port", str(port)]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not healthy():
            assert process.poll() is None and time.monotonic() < deadline, "the console did not come up"
            time.sleep(0.5)
        process.terminate()
        process.wait(timeout=20)
        assert not healthy(), "the server outlived the command"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def closed_port_url() -> str:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/v1"


@pytest.mark.parametrize(
    ("controllers", "words"),
    [
        ("hpa,marl+llm", "manager llm: no LLM server answers at"),
        ("bound+rule", "'bound' runs no controller, so no manager on top of it"),
    ],
)
def test_eval_refuses_what_it_cannot_run_in_one_line(controllers: str, words: str, tmp_path: Path) -> None:
    """+llm with no server is refused before any run (never rule runs labelled llm); so is a manager above the bound."""
    import os

    env = {**os.environ, "AMA_LLM_BASE_URL": closed_port_url()}
    args = ["eval", "--suite", "smoke", "--controllers", controllers, "--out", str(tmp_path / "eval")]
    out = subprocess.run([*AMA, *args], capture_output=True, text=True, cwd=REPO, timeout=120, env=env)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], out.stderr
    assert not (tmp_path / "eval" / "results.json").exists()


def test_run_with_the_llm_manager_refuses_without_a_server() -> None:
    import os

    env = {**os.environ, "AMA_LLM_BASE_URL": closed_port_url()}
    args = ["run", "--scenario", str(SCENARIO_DIR / "traffic-spike-small.yaml"), "--ticks", "5", "--manager", "llm"]
    out = subprocess.run([*AMA, *args], capture_output=True, text=True, cwd=REPO, timeout=120, env=env)
    assert out.returncode == 2 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "manager llm: no LLM server answers at" in lines[0], out.stderr
