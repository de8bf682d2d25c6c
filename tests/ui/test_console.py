"""The operator console through Streamlit's AppTest: every page renders without an exception against a real decision
log (an unverified manager run with a proposal and its what-if preview waiting at the gate, and a verified one whose
twin predictions were realized), approve and reject write the right rows and record the operator, and without the
token everything is read-only. tests/ui/test_candidates.py checks the verification's numbers on hand-made rows."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from manager.loop import Runtime, RuntimeSettings
from manager.verify import VerifySettings
from tests.spike import spike_scenario
from tools.decision_log import DecisionLog
from ui.console.data import check_access

APP = str(Path(__file__).resolve().parents[2] / "ui" / "console" / "app.py")
TOKEN = "open-sesame"
PAGES = ("views/live.py", "views/decisions.py", "views/approvals.py", "views/chat.py", "views/scenarios.py")


@pytest.fixture(scope="module")
def manager_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database holding two finished manager runs of the spike: one verified over the whole scenario (so the
    realized outcome is written after the twin's horizon), then one unverified that leaves its add_nodes proposal with
    a what-if preview waiting for an operator (the newest run: the console opens on it)."""
    folder = tmp_path_factory.mktemp("console")
    url = f"sqlite:///{folder / 'log.db'}"
    log = DecisionLog(url)
    scenario = spike_scenario(folder)
    Runtime(RuntimeSettings(scenario=scenario, controller="kpa", checkpoints=folder / "verified.db"), log).run()
    unverified = RuntimeSettings(
        scenario=scenario, controller="kpa", checkpoints=folder / "cp.db", ticks=200, verify=VerifySettings(candidates=0)
    )
    Runtime(unverified, log).run()
    log.close()
    yield url


@pytest.fixture
def db(manager_run: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh copy of the run's database for each test (approvals change it)."""
    source = Path(manager_run.removeprefix("sqlite:///"))
    copy = tmp_path / "log.db"
    copy.write_bytes(source.read_bytes())
    url = f"sqlite:///{copy}"
    monkeypatch.setenv("AMA_DATABASE_URL", url)
    monkeypatch.setenv("AMA_CONSOLE_TOKEN", TOKEN)
    monkeypatch.setenv("AMA_REPLAYS_DIR", str(tmp_path / "replays"))
    monkeypatch.delenv("AMA_LLM_BASE_URL", raising=False)
    return url


def console(page: str, sign_in: tuple[str, str] | None = None) -> AppTest:
    """One page of the console, signed in as ``sign_in`` (name, token) or not."""
    app = AppTest.from_file(str(Path(APP).parent / page), default_timeout=60)
    app.run()
    if sign_in is not None:
        app.text_input(key="operator_name").input(sign_in[0])
        app.text_input(key="operator_token").input(sign_in[1]).run()
    assert not app.exception, [e.message for e in app.exception]
    return app


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_signed_in_and_read_only(db: str, page: str) -> None:
    for who in (("alice", TOKEN), None):
        app = console(page, who)
        assert app.header[0].value
        texts = " ".join(str(e.value) for e in (*app.sidebar.info, *app.sidebar.success))
        assert ("signed in as alice" in texts) == (who is not None)


def test_the_app_opens_on_the_live_page(db: str) -> None:
    app = AppTest.from_file(APP, default_timeout=60)
    app.run()
    assert not app.exception and app.header[0].value == "Live"


def test_the_live_page_shows_the_cluster_and_the_incidents(db: str) -> None:
    app = console("views/live.py")
    labels = [m.label for m in app.metric]
    assert {"load", "SLA violations", "cost", "nodes on / failed"} <= set(labels)
    assert any(s.value == "Incidents" for s in app.subheader)


def test_approve_writes_the_approval_with_the_operator(db: str) -> None:
    log = DecisionLog(db)
    pending = log.pending_approvals()
    assert pending, "the fixture run left nothing waiting"
    target = pending[0]
    app = console("views/approvals.py", ("alice", TOKEN))
    assert {"SLA violations", "cost $", "energy kWh"} <= {m.label for m in app.metric}  # the what-if preview
    app.text_input(key=f"reason-{target.id}").input("capacity for the spike")
    app.button(key=f"approve-{target.id}").click().run()
    assert not app.exception
    row = log.decision(target.id)
    assert row is not None and row.status == "approved" and row.approved_by == "alice"
    (approval,) = log.approvals(target.id)
    assert (approval.operator, approval.decision, approval.reason) == ("alice", "approved", "capacity for the spike")
    log.close()


def test_reject_writes_the_rejection_with_the_operator(db: str) -> None:
    log = DecisionLog(db)
    target = log.pending_approvals()[0]
    app = console("views/approvals.py", ("bob", TOKEN))
    app.button(key=f"reject-{target.id}").click().run()
    row = log.decision(target.id)
    assert row is not None and row.status == "rejected" and row.approved_by is None
    assert [(a.operator, a.decision) for a in log.approvals(target.id)] == [("bob", "rejected")]
    log.close()


def test_without_the_token_nothing_can_be_approved_or_asked(db: str) -> None:
    log = DecisionLog(db)
    target = log.pending_approvals()[0]
    for who in (None, ("mallory", "wrong-token")):
        app = console("views/approvals.py", who)
        assert app.button(key=f"approve-{target.id}").disabled and app.button(key=f"reject-{target.id}").disabled
        chat = console("views/chat.py", who)
        assert len(chat.chat_input) == 0
    assert log.decision(target.id).status == "proposed"  # type: ignore[union-attr]
    assert log.approvals(target.id) == []
    log.close()


def test_the_chat_answers_from_the_log_and_records_the_operator(db: str) -> None:
    app = console("views/chat.py", ("alice", TOKEN))
    app.chat_input[0].set_value("why was add_nodes proposed?").run()
    assert not app.exception
    log = DecisionLog(db)
    messages = log.chat("console-alice")
    assert [(m.role, m.author) for m in messages] == [("operator", "alice"), ("manager", "manager")]
    assert "add_nodes" in messages[1].content
    log.close()


def test_the_decisions_page_filters_and_opens_a_manager_decision(db: str) -> None:
    app = console("views/decisions.py")
    app.multiselect(key="f_actor").select("manager").run()
    frame = app.dataframe[0].value
    assert set(frame["actor"]) == {"manager"}
    app.selectbox(key="f_open").select(frame["id"].iloc[0]).run()
    assert not app.exception
    assert any(m.value == "**Diagnosis**" for m in app.markdown)


def test_the_decisions_page_opens_a_verified_incident_with_its_candidates_and_what_was_realized(db: str) -> None:
    log = DecisionLog(db)
    verified = min(log.runs(), key=lambda r: r.started_at)
    verify_rows = [
        (r, json.loads(r.result_json or "{}")["verification"])
        for r in log.decisions(run_id=verified.id, limit=5000)
        if r.action == "verify"
    ]
    log.close()
    realized = [(r, v) for r, v in verify_rows if v["realized"] is not None]
    assert realized, "no verify row of the verified run has its realized outcome"
    row, verification = realized[0]
    app = console("views/decisions.py")
    app.selectbox(key="run_label").select(next(o for o in app.selectbox(key="run_label").options if verified.id in o)).run()
    app.selectbox(key="f_open").select(row.id).run()
    assert not app.exception, [e.message for e in app.exception]
    (table,) = [d.value for d in app.dataframe if "candidate" in d.value.columns]
    assert list(table["candidate"]) == ["status quo", *(c["name"] for c in verification["candidates"])]
    assert list(table["chosen"]).count("✓") == 1
    (compared,) = [d.value for d in app.dataframe if "realized" in d.value.columns]
    minutes = compared.set_index("measure").loc["SLA violation minutes"]
    assert minutes["realized"] == round(verification["realized"]["sla_violation_minutes"], 3)


def test_access_needs_a_configured_token_a_name_and_the_right_token() -> None:
    assert not check_access("alice", "x", expected="").can_write
    assert not check_access("", TOKEN, expected=TOKEN).can_write
    assert not check_access("alice", "nope", expected=TOKEN).can_write
    assert check_access("alice", TOKEN, expected=TOKEN).can_write


def test_a_replay_starts_from_the_scenarios_page(db: str, tmp_path: Path) -> None:
    app = console("views/scenarios.py", ("alice", TOKEN))
    app.multiselect(key="r_files").set_value(["traffic-spike-small.yaml"])
    app.multiselect(key="r_controllers").set_value(["static"])
    app.number_input(key="r_duration").set_value(30)
    submit = next(b for b in app.button if b.label == "Start replay")
    submit.click().run()
    assert not app.exception
    (replay,) = (tmp_path / "replays").iterdir()
    assert "eval --controllers static" in (replay / "command.txt").read_text() and "alice" in (replay / "command.txt").read_text()
    deadline = time.monotonic() + 180
    while not (replay / "report.md").exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert (replay / "report.md").exists(), (replay / "console.log").read_text()
    app.run()
    assert any("Eval report" in m.value for m in app.markdown)
    assert app.image, "the report's plots are shown"


def test_the_cluster_map_tells_a_sleeping_node_from_a_drained_one() -> None:
    from matplotlib.colors import to_hex

    from ui.console.plots import STATE_EDGE, cluster_map

    nodes = [
        {"name": "a", "tier": "cloud", "state": "off", "asleep": True, "utilization": 0.0},
        {"name": "b", "tier": "cloud", "state": "off", "asleep": False, "utilization": 0.0},
        {"name": "c", "tier": "cloud", "state": "on", "utilization": 0.5},
    ]
    figure = cluster_map({"time_s": 60.0, "nodes": nodes})
    edges = [to_hex(patch.get_edgecolor()) for patch in figure.axes[0].patches]
    assert edges == [STATE_EDGE["asleep"], STATE_EDGE["off"], STATE_EDGE["on"]]
    assert "green = asleep" in figure.axes[0].get_title()
