"""End to end in a real headless Chromium: a real ``ama run`` (the rule manager proposes nodes for a spike and waits
at the gate), a real ``ama console`` on the same database; an operator signs in, opens the approvals page and clicks
approve; the runtime applies the action once and the decision log says who approved it. Saves a screenshot (also to
$AMA_SCREENSHOTS when set). Needs Debian's chromium and chromium-driver (.ci/run installs them on CI)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.spike import spike_scenario
from tools.decision_log import DecisionLog
from ui.console import browser

pytestmark = pytest.mark.skipif(browser.available() is not None, reason=f"no headless browser: {browser.available()}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition, timeout_s: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        process.terminate()
    for process in started:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_an_operator_approves_in_the_browser_and_the_runtime_applies_it(tmp_path: Path, processes: list[subprocess.Popen]) -> None:
    scenario = spike_scenario(tmp_path, duration_s=1800, spike_s=1200)  # long enough for a browser to answer
    (tmp_path / "token").write_text("e2e-token\n")
    url = f"sqlite:///{tmp_path / 'log.db'}"
    ama = [sys.executable, "-m", "ui.cli"]
    run_log = (tmp_path / "run.log").open("w")
    console_log = (tmp_path / "console.log").open("w")
    processes.append(
        subprocess.Popen(
            [*ama, "run", "--scenario", str(scenario), "--db", url, "--checkpoints", str(tmp_path / "cp.db"),
             "--controller", "kpa", "--manager", "rule", "--candidates", "0", "--speed", "15", "--approval-timeout-s", "1500"],
            stdout=run_log, stderr=subprocess.STDOUT,
        )
    )  # fmt: skip
    port = free_port()
    processes.append(
        subprocess.Popen(
            [*ama, "console", "--db", url, "--port", str(port), "--token-file", str(tmp_path / "token")],
            stdout=console_log, stderr=subprocess.STDOUT,
        )
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    log = DecisionLog(url)
    driver = None
    try:
        wait_until(lambda: healthy(base), 90, "the console to serve")
        proposal = wait_until(lambda: log.pending_approvals(), 120, "the manager's proposal")[0]
        driver = browser.start_browser()
        browser.open_page(driver, base, "approvals")
        browser.sign_in(driver, "e2e-operator", "e2e-token")
        browser.type_into(driver, "Reason", "spike: add capacity")
        driver.save_screenshot(str(tmp_path / "approvals-before.png"))
        browser.click_button(driver, "Approve")
        applied = lambda: (r := log.decision(proposal.id)) is not None and r.status == "applied" and r  # noqa: E731
        row = wait_until(applied, 120, "the action to be applied")
        driver.save_screenshot(str(tmp_path / "approvals-after.png"))
        assert row.approved_by == "e2e-operator"
        (approval,) = log.approvals(proposal.id)
        assert (approval.operator, approval.decision, approval.reason) == ("e2e-operator", "approved", "spike: add capacity")
        time.sleep(3)  # a few more ticks: applied once, never again
        rows = [d for d in log.decisions(run_id=proposal.run_id, actor="manager", limit=5000) if d.id == proposal.id]
        assert [d.status for d in rows] == ["applied"]
        assert (tmp_path / "approvals-after.png").stat().st_size > 10_000
        if os.environ.get("AMA_SCREENSHOTS"):
            folder = Path(os.environ["AMA_SCREENSHOTS"])
            folder.mkdir(parents=True, exist_ok=True)
            for name in ("approvals-before.png", "approvals-after.png"):
                shutil.copy(tmp_path / name, folder / f"e2e-{name}")
    except BaseException:
        print((tmp_path / "run.log").read_text()[-3000:], (tmp_path / "console.log").read_text()[-3000:], sep="\n----\n")
        raise
    finally:
        if driver is not None:
            driver.quit()
        log.close()
        run_log.close()
        console_log.close()
