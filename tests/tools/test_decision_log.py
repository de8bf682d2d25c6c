"""Tests for tools.decision_log (DecisionLog, database_url, parse_since) and the tools.bench_log benchmark, run by
``make test``. Every test that touches a database runs against SQLite (a file in tmp_path) and PostgreSQL (a
throwaway server from tests/tools/conftest.py) unless it is about the SQLite file itself. Outages use the injected
fake clock, so backoff is checked exactly and nothing sleeps.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from simulators.errors import ConfigError, InputError, TransientError
from simulators.scenarios import load_scenario
from simulators.snapshot import ClusterSnapshot, take_snapshot
from tests.tools.conftest import Database, FakeClock, PostgresDatabase, no_root_override
from tools.decision_log import (
    DEFAULT_DB_PATH,
    STATUSES,
    Approval,
    ChatMessage,
    Decision,
    DecisionLog,
    LogFullError,
    MetricSample,
    Run,
    database_url,
    parse_since,
    rows_to_dicts,
    utcnow,
)

REPO = Path(__file__).resolve().parents[2]
ACTIONS = ("scale_up", "scale_down", "offload")
WEIGHTS = {"latency": 0.5, "cost": 0.3, "power": 0.2}

MakeLog = Callable[..., DecisionLog]


@pytest.fixture
def make_log() -> Iterator[MakeLog]:
    """Opens DecisionLogs and closes every one at the end (close is safe to repeat)."""
    logs: list[DecisionLog] = []

    def make(url: str, **kwargs: Any) -> DecisionLog:
        log = DecisionLog(url, **kwargs)
        logs.append(log)
        return log

    yield make
    for log in logs:
        log.close()


@pytest.fixture(scope="module")
def snapshots() -> list[ClusterSnapshot]:
    """Three real snapshots (ticks 1 to 3) of the shop scenario's cluster."""
    cluster = load_scenario(REPO / "evals/scenarios/shop-csv-replay.yaml").make_cluster()
    taken = []
    for _ in range(3):
        cluster.step()
        taken.append(take_snapshot(cluster))
    return taken


def record_ticks(log: DecisionLog, run_id: str, ticks: range, agents: int = 10) -> list[str]:
    """What the node agents log: one action per agent per tick. Returns the ids."""
    ids = []
    weights = json.dumps(WEIGHTS)
    for tick in ticks:
        for agent in range(agents):
            action = ACTIONS[(tick + agent) % len(ACTIONS)]
            ids.append(
                log.record(
                    run_id, tick, float(tick), "marl", action, f"edge-{agent}: queue grew for {tick} ticks",
                    node=f"edge-{agent}", service="checkout", args={"delta": 1}, weights=weights,
                )
            )  # fmt: skip
    return ids


def one_line(error: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(error.value)
    assert message and "\n" not in message
    return message


# ---------------------------------------------------------------------------------------------- round trip


def test_round_trip(db_url: str, make_log: MakeLog, snapshots: list[ClusterSnapshot]) -> None:
    log = make_log(db_url)
    run = log.start_run("shop-csv-replay", "marl", manager="llm", seed=7, settings={"tick_s": 1.0})
    other = log.start_run("spike-then-failure", "hpa")
    deadline = datetime(2026, 11, 21, 10, 45, tzinfo=UTC)

    early = record_ticks(log, run, range(1, 3), agents=3)  # weights as a JSON string, as callers do once per tick
    assert log.flush()
    time.sleep(0.002)  # the log reuses a timestamp within 1 ms: make the rows below strictly later than `boundary`
    boundary = utcnow()
    late = [
        log.record(
            run, 3, 3.0, "marl", "scale_up", "edge-0: p95 1.4x SLO", node="edge-0", service="checkout", args={"delta": 1},
            weights=WEIGHTS,
        ),
        log.record(
            run, 3, 3.0, "manager", "offload", "edge-1 is saturated; cloud-0 has headroom", node="edge-1", service="catalog",
            args={"share": 0.25, "to": "cloud-0"}, risk="high", status="proposed", request_id="req-1", incident_id="inc-1",
            deadline_at=deadline,
        ),
        log.record(
            run, 3, 3.0, "operator", "scale_down", "manual", node="cloud-0", service="catalog", status="failed",
            result={"error": "quota"},
        ),
    ]  # fmt: skip
    other_id = log.record(other, 1, 1.0, "hpa", "scale_up", "cpu 90%", node="edge-0", service="checkout")
    for snapshot in snapshots:
        log.sample(run, snapshot)
    log.end_run(run, {"violation_rate": 0.01})
    ids = early + late

    assert log.buffered == 0
    assert log.count(Decision, run) == len(ids)
    assert log.count(Decision) == len(ids) + 1
    assert log.count(Run) == 2

    newest_first = [d.id for d in log.decisions(run_id=run, limit=1000)]
    assert newest_first == ids[::-1]
    assert [d.id for d in log.decisions(run_id=run, limit=2)] == ids[:-3:-1]
    assert {d.id for d in log.decisions(limit=1000)} == {*ids, other_id}
    assert [d.id for d in log.decisions(actor="manager")] == [late[1]]
    assert [d.id for d in log.decisions(status="proposed")] == [late[1]]
    assert [d.id for d in log.decisions(status="failed")] == [late[2]]
    assert [d.id for d in log.decisions(node="edge-0", run_id=run)] == [late[0], early[3], early[0]]
    assert {d.id for d in log.decisions(node="edge-0")} == {late[0], early[3], early[0], other_id}
    assert [d.id for d in log.decisions(service="catalog")] == [late[2], late[1]]
    assert [d.id for d in log.decisions(run_id=run, since=boundary)] == late[::-1]
    assert {d.id for d in log.decisions(since=boundary)} == {other_id, *late}
    assert [d.id for d in log.decisions(run_id=run, since=boundary, actor="marl")] == [late[0]]
    assert log.decisions(run_id=run, actor="nobody") == []

    marl = log.decision(early[0])
    assert marl is not None
    assert (marl.run_id, marl.tick, marl.time_s, marl.actor, marl.action) == (run, 1, 1.0, "marl", "scale_down")
    assert (marl.node, marl.service, json.loads(marl.args_json)) == ("edge-0", "checkout", {"delta": 1})
    assert marl.weights_json == json.dumps(WEIGHTS)
    assert (marl.risk, marl.status, marl.approved_by, marl.result_json, marl.deadline_at) == ("low", "applied", None, None, None)
    assert marl.created_at.tzinfo is not None and abs(marl.created_at - utcnow()) < timedelta(minutes=1)
    assert marl.created_at < boundary
    manager = log.decision(late[1])
    assert manager is not None
    assert json.loads(manager.args_json) == {"share": 0.25, "to": "cloud-0"}
    assert (manager.risk, manager.status, manager.request_id, manager.incident_id) == ("high", "proposed", "req-1", "inc-1")
    assert manager.deadline_at == deadline
    assert manager.weights_json is None
    assert manager.created_at >= boundary
    dict_weights = log.decision(late[0])
    assert dict_weights is not None and json.loads(dict_weights.weights_json or "") == WEIGHTS
    failed = log.decision(late[2])
    assert failed is not None and json.loads(failed.result_json or "") == {"error": "quota"}
    assert log.decision("no-such-id") is None
    assert rows_to_dicts(log.decisions(run_id=run, limit=1))[0]["id"] == late[2]

    runs = {r.id: r for r in log.runs()}
    assert set(runs) == {run, other}
    finished = runs[run]
    assert (finished.scenario, finished.controller, finished.manager, finished.seed) == ("shop-csv-replay", "marl", "llm", 7)
    assert json.loads(finished.settings_json) == {"tick_s": 1.0}
    assert finished.status == "finished" and finished.ended_at is not None and finished.ended_at >= finished.started_at
    assert json.loads(finished.summary_json or "") == {"violation_rate": 0.01}
    assert (runs[other].status, runs[other].ended_at, runs[other].summary_json) == ("running", None, None)
    assert [r.id for r in log.runs(limit=1)] == [other]

    samples = log.samples(run)
    assert [s.tick for s in samples] == [1, 2, 3]
    for stored, snapshot in zip(samples, snapshots, strict=True):
        assert (stored.time_s, stored.nodes_on, stored.nodes_failed) == (snapshot.time_s, snapshot.nodes_on, snapshot.nodes_failed)
        assert stored.served_rps == pytest.approx(snapshot.served_rps)
        assert stored.cost_per_h == pytest.approx(snapshot.cost_per_h)
        assert stored.replicas == sum(s.replicas_warm + s.replicas_booting for s in snapshot.services) > 0
        data = json.loads(stored.snapshot_json)
        assert [n["name"] for n in data["nodes"]] == [n.name for n in snapshot.nodes]
        assert [s["name"] for s in data["services"]] == ["checkout", "catalog"]
    assert [s.tick for s in log.samples(run, since_tick=2)] == [2, 3]
    assert log.samples(other) == []
    assert log.count(MetricSample, run) == 3

    log.add_chat("t1", "operator", "alice", "why offload edge-1?", run_id=run)
    log.add_chat("t2", "operator", "bob", "other thread")
    log.add_chat("t1", "manager", "ama", "edge-1 is saturated", run_id=run)
    log.add_chat("t1", "operator", "alice", "ok, approve it", run_id=run)
    thread = log.chat("t1")
    assert [(m.role, m.author, m.content) for m in thread] == [
        ("operator", "alice", "why offload edge-1?"),
        ("manager", "ama", "edge-1 is saturated"),
        ("operator", "alice", "ok, approve it"),
    ]
    assert {m.run_id for m in thread} == {run}
    assert [m.content for m in log.chat("t2")] == ["other thread"]
    assert log.chat("t3") == []
    assert log.count(ChatMessage) == 4


# ---------------------------------------------------------------------------------------------- lifecycle


def test_approve_then_apply(db_url: str, make_log: MakeLog) -> None:
    log = make_log(db_url)
    run = log.start_run("s", "marl")
    did = log.record(run, 5, 5.0, "manager", "offload", "move 25% to cloud", risk="high", status="proposed")
    assert log.flush()  # readers see what was flushed; record only buffers
    assert [d.id for d in log.pending_approvals()] == [did]

    log.decide_approval(did, "alice", approve=True, reason="the spike is real")
    approved = log.decision(did)
    assert approved is not None
    assert (approved.status, approved.approved_by) == ("approved", "alice")
    assert approved.updated_at >= approved.created_at
    [approval] = log.approvals(did)
    assert (approval.decision_id, approval.operator, approval.decision, approval.reason) == (did, "alice", "approved", "the spike is real")
    assert log.pending_approvals() == []

    log.set_status(did, "applied", result={"moved_rps": 120.0})
    applied = log.decision(did)
    assert applied is not None
    assert (applied.status, applied.approved_by, json.loads(applied.result_json or "")) == ("applied", "alice", {"moved_rps": 120.0})

    failing = log.record(run, 6, 6.0, "manager", "offload", "again", risk="high", status="proposed")
    log.decide_approval(failing, "alice", approve=True)
    log.set_status(failing, "failed", result={"error": "node drained"})
    assert log.decision(failing).status == "failed"  # type: ignore[union-attr]
    assert log.count(Approval) == 2


def test_reject_and_expire(db_url: str, make_log: MakeLog) -> None:
    log = make_log(db_url)
    run = log.start_run("s", "marl")
    rejected = log.record(run, 1, 1.0, "manager", "scale_down", "idle", risk="high", status="proposed")
    expired = log.record(run, 1, 1.0, "manager", "offload", "hot", risk="high", status="proposed")

    log.decide_approval(rejected, "bob", approve=False, reason="peak hour")
    row = log.decision(rejected)
    assert row is not None and (row.status, row.approved_by) == ("rejected", None)  # the approval row names bob
    assert [(a.operator, a.decision, a.reason) for a in log.approvals(rejected)] == [("bob", "rejected", "peak hour")]

    log.set_status(expired, "expired")
    assert log.decision(expired).status == "expired"  # type: ignore[union-attr]
    assert log.approvals(expired) == []
    assert log.pending_approvals() == []
    assert [a.decision_id for a in log.approvals()] == [rejected]


def test_illegal_transitions_are_input_errors(db_url: str, make_log: MakeLog) -> None:
    log = make_log(db_url)
    run = log.start_run("s", "marl")
    applied = log.record(run, 1, 1.0, "marl", "scale_up", "low risk, applied at once")
    rejected = log.record(run, 1, 1.0, "manager", "offload", "x", risk="high", status="proposed")
    log.decide_approval(rejected, "bob", approve=False)
    proposed = log.record(run, 1, 1.0, "manager", "offload", "y", risk="high", status="proposed")

    with pytest.raises(InputError) as error:
        log.set_status(applied, "approved")
    assert one_line(error) == f"decision {applied}: approvals go through decide_approval, which records the operator"
    with pytest.raises(InputError) as error:
        log.set_status(proposed, "approved")  # never an approved decision without an approval row
    assert "decide_approval" in one_line(error)
    with pytest.raises(InputError) as error:
        log.set_status(rejected, "applied")
    assert one_line(error) == f"decision {rejected} is rejected; it cannot become applied"
    with pytest.raises(InputError) as error:
        log.decide_approval(applied, "alice", approve=True)
    assert one_line(error) == f"decision {applied} is applied, not waiting for approval"
    with pytest.raises(InputError) as error:
        log.decide_approval(rejected, "alice", approve=True)
    assert one_line(error) == f"decision {rejected} is rejected, not waiting for approval"
    with pytest.raises(InputError) as error:
        log.decide_approval(proposed, "  ", approve=True)
    assert one_line(error) == "an approval needs the operator's name"
    with pytest.raises(InputError) as error:
        log.set_status(proposed, "done")
    assert one_line(error) == f"decision {proposed} is proposed; it cannot become done"
    with pytest.raises(InputError) as error:
        log.set_status("nope-000000001", "applied")
    assert one_line(error) == "no decision 'nope-000000001'"

    # nothing moved: the failed calls left no trace
    assert [(d.id, d.status) for d in log.decisions(run_id=run)] == [(proposed, "proposed"), (rejected, "rejected"), (applied, "applied")]
    assert [a.decision_id for a in log.approvals()] == [rejected]


def test_record_rejects_unknown_status_and_risk(db_url: str, make_log: MakeLog) -> None:
    log = make_log(db_url)
    run = log.start_run("s", "marl")
    with pytest.raises(InputError) as error:
        log.record(run, 1, 1.0, "marl", "scale_up", "x", status="done")
    assert one_line(error) == f"unknown decision status 'done'; one of {', '.join(STATUSES)}"
    with pytest.raises(InputError) as error:
        log.record(run, 1, 1.0, "marl", "scale_up", "x", risk="medium")
    assert one_line(error) == "unknown risk 'medium'; one of low, high"
    assert log.buffered == 0
    assert log.flush()
    assert log.count(Decision) == 0


# ---------------------------------------------------------------------------------------------- retries and outages


def test_failed_batch_is_retried_without_duplicates(
    db_url: str, make_log: MakeLog, clock: FakeClock, snapshots: list[ClusterSnapshot], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails before its commit and one that fails after it (the commit landed, the client never heard):
    both retries write every row exactly once and the log recovers."""
    events: list[str] = []
    log = make_log(db_url, clock=clock, on_event=events.append, batch_size=100_000)
    write = log._write

    def lost_before_commit(batch: Any) -> None:
        raise OperationalError("INSERT INTO decision ...", {}, Exception("server closed the connection unexpectedly"))

    def lost_after_commit(batch: Any) -> None:
        write(batch)
        raise TransientError("connection lost after COMMIT")

    run = log.start_run("s", "marl")
    ids = record_ticks(log, run, range(3))
    monkeypatch.setattr(log, "_write", lost_before_commit)
    assert not log.flush()
    assert log.buffered == len(ids)
    monkeypatch.setattr(log, "_write", write)
    clock.advance(0.5)
    assert log.flush()
    assert log.count(Decision, run) == len(ids)

    monkeypatch.setattr(log, "_write", lost_after_commit)
    second = log.start_run("s", "marl")  # the run row, decisions and samples all go in the ambiguous batch
    ids += record_ticks(log, run, range(3, 5))
    second_ids = record_ticks(log, second, range(2))
    log.sample(second, snapshots[0])
    assert not log.flush(force=True)
    assert log.buffered == 1 + 20 + 20 + 1
    monkeypatch.setattr(log, "_write", write)
    second_ids += record_ticks(log, second, range(2, 3))
    log.sample(second, snapshots[1])
    clock.advance(1.0)
    assert log.flush()  # with the first try's rows already there

    assert log.buffered == 0
    assert log.count(Decision, run) == len(ids) == 50
    assert log.count(Decision, second) == len(second_ids) == 30
    assert log.count(Decision) == 80
    assert log.count(Run) == 2
    assert log.count(MetricSample) == 2
    assert sorted(d.id for d in log.decisions(limit=1000)) == sorted(ids + second_ids)
    assert events == [
        "decision log unavailable (server closed the connection unexpectedly); buffering 30 rows and retrying",
        "decision log back after 0 s: wrote 30 buffered rows",
        "decision log unavailable (connection lost after COMMIT); buffering 1 rows and retrying",
        "decision log back after 1 s: wrote 53 buffered rows",
    ]


def exercise_outage(
    log: DecisionLog,
    clock: FakeClock,
    events: list[str],
    take_down: Callable[[], None],
    bring_back: Callable[[], None],
    monkeypatch: pytest.MonkeyPatch,
    while_down: Callable[[], None] = lambda: None,
) -> None:
    """Rows before, during and after an outage; checks the guarantees common to every kind of outage: no exception
    escapes record or flush, one event when it starts and one when it ends, backoff 0.5 s doubling up to the cap
    (no try before it has passed), every row written exactly once after the database is back."""
    tries: list[float] = []
    write = log._write

    def counting_write(batch: Any) -> None:
        tries.append(clock())
        write(batch)

    monkeypatch.setattr(log, "_write", counting_write)
    run = log.start_run("outage", "marl")
    recorded = record_ticks(log, run, range(5))
    assert log.flush()
    assert log.count(Decision, run) == 50

    take_down()
    recorded += record_ticks(log, run, range(5, 10))
    clock.advance(1.0)
    down_at = clock()
    assert log.flush() is False
    assert not log.available and log.buffered == 50
    assert len(events) == 1 and events[0].startswith("decision log unavailable ("), events
    assert events[0].endswith("; buffering 50 rows and retrying")

    # retries at +0.5, +1, +2, +4, +4 (max_backoff_s=4): a flush before the next retry time does not try
    # (the clock moves in binary fractions, so the comparisons with the retry time are exact)
    schedule = [0.5, 1.0, 2.0, 4.0, 4.0]
    for wait in schedule:
        tries.clear()
        clock.advance(wait - 1 / 64)
        recorded += record_ticks(log, run, range(10, 11))  # may call flush through maybe_flush: still no try
        assert log.flush() is False and tries == []
        clock.advance(1 / 64)
        assert log.flush() is False and tries == [clock()]
    while_down()
    assert log.buffered == len(recorded) - 50
    assert len(events) == 1, events

    bring_back()
    clock.advance(4.0)
    back_at = clock()
    assert log.flush() is True
    assert log.available
    assert events[1:] == [f"decision log back after {back_at - down_at:.0f} s: wrote {len(recorded) - 50} buffered rows"]
    recorded += record_ticks(log, run, range(11, 13))
    log.end_run(run, {"outages": log.outages})
    assert log.buffered == 0
    assert log.count(Decision, run) == len(recorded) == 50 + 50 + 5 * 10 + 20
    assert len({d.id for d in log.decisions(run_id=run, limit=1000)}) == len(recorded)
    assert log.outages == 1 and len(events) == 2
    assert log.runs()[0].status == "finished"


def test_sqlite_made_read_only_mid_run(tmp_path: Path, make_log: MakeLog, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file, its -wal/-shm and the directory become read-only (root too: see no_root_override). A connection
    already open keeps a writable descriptor (its writes land safely), so the test closes the pool, as any reconnect
    would; from then on every write fails until the permissions are back."""
    path = tmp_path / "db" / "ama.db"
    events: list[str] = []
    log = make_log(f"sqlite:///{path}", clock=clock, on_event=events.append, max_backoff_s=4.0)
    files = [path, path.with_name("ama.db-wal"), path.with_name("ama.db-shm")]

    def take_down() -> None:
        for file in files:
            if file.exists():
                file.chmod(0o444)
        path.parent.chmod(0o555)
        log.engine.dispose()

    def bring_back() -> None:
        path.parent.chmod(0o755)
        for file in files:
            if file.exists():
                file.chmod(0o644)

    def while_down() -> None:
        with pytest.raises(PermissionError):
            path.open("r+b").close()
        assert "readonly database" in events[0] or "unable to open" in events[0], events[0]

    try:
        with no_root_override():
            exercise_outage(log, clock, events, take_down, bring_back, monkeypatch, while_down)
    finally:
        bring_back()


def test_sqlite_file_removed_mid_run(tmp_path: Path, make_log: MakeLog, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file is moved away and back. While it is gone the log must not create a new, empty one (that would split
    the log in two)."""
    path = tmp_path / "ama.db"
    away = tmp_path / "ama.db.away"
    events: list[str] = []
    log = make_log(f"sqlite:///{path}", clock=clock, on_event=events.append, max_backoff_s=4.0)

    def while_down() -> None:
        assert not path.exists()
        assert events[0] == f"decision log unavailable ({path} was removed); buffering 50 rows and retrying"

    try:
        exercise_outage(log, clock, events, lambda: path.rename(away), lambda: away.rename(path), monkeypatch, while_down)
    finally:
        if away.exists():
            away.rename(path)


def test_postgres_stopped_mid_run(
    postgres_db: PostgresDatabase, make_log: MakeLog, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server stops (fast shutdown: the pooled connection is cut) and restarts on the same port."""
    events: list[str] = []
    log = make_log(postgres_db.url, clock=clock, on_event=events.append, max_backoff_s=4.0)

    def while_down() -> None:
        assert "Connection refused" in events[0] or "connection" in events[0].lower(), events[0]

    exercise_outage(log, clock, events, postgres_db.stop, postgres_db.start, monkeypatch, while_down)


# ---------------------------------------------------------------------------------------------- background writer


def test_background_writer_writes_everything_by_close(db_url: str, make_log: MakeLog, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    log = make_log(db_url, background=True, batch_size=500, flush_interval_s=0.05, on_event=events.append)
    writers: list[str] = []
    write = log._write

    def noting_write(batch: Any) -> None:
        writers.append(threading.current_thread().name)
        write(batch)

    monkeypatch.setattr(log, "_write", noting_write)
    run = log.start_run("s", "marl")
    ids = record_ticks(log, run, range(100), agents=50)
    log.close()

    reader = make_log(db_url)
    assert reader.count(Decision, run) == len(ids) == 5000
    assert len({d.id for d in reader.decisions(run_id=run, limit=10_000)}) == 5000
    assert "ama-decision-log" in writers  # the writer thread did the writing, not only close()
    assert events == []


def test_background_close_reports_rows_it_could_not_write(
    database: Database, make_log: MakeLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AMA_HOME", str(tmp_path / "home"))  # where a PostgreSQL log's unwritten rows go
    events: list[str] = []
    log = make_log(database.url, background=True, flush_interval_s=0.05, on_event=events.append)
    run = log.start_run("s", "marl")
    written = record_ticks(log, run, range(3))
    assert log.flush(force=True)

    database.take_down()
    unwritten = record_ticks(log, run, range(3, 7))
    log.close()  # raises nothing
    assert events[-1].startswith(f"decision log still unavailable at exit: {len(unwritten)} rows could not be written; ")
    saved = Path(events[-1].split("the buffered rows are in ")[1])
    lines = [json.loads(line) for line in saved.read_text().splitlines()]
    assert sorted(row["id"] for row in lines if row["table"] == "decision") == sorted(unwritten)  # nothing is lost
    assert [e for e in events if e.startswith("decision log unavailable")] == events[:1]

    database.bring_back()
    reader = make_log(database.url)
    assert reader.count(Decision, run) == len(written) == 30


# ---------------------------------------------------------------------------------------------- SQLite readers


def test_reader_transaction_does_not_block_the_writer(tmp_path: Path, make_log: MakeLog, clock: FakeClock) -> None:
    """WAL mode: a reader holding an open read transaction (the console) does not delay the writer's commit (in
    rollback-journal mode the commit would wait the 5 s busy timeout and then fail)."""
    path = tmp_path / "ama.db"
    log = make_log(f"sqlite:///{path}", batch_size=100_000, clock=clock)  # the fake clock: only the test flushes
    run = log.start_run("s", "marl")
    record_ticks(log, run, range(10))
    assert log.flush()

    reader = sqlite3.connect(path, isolation_level=None)
    try:
        assert reader.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM decision").fetchone() == (100,)
        record_ticks(log, run, range(10, 110))
        started = time.perf_counter()
        assert log.flush() is True
        assert time.perf_counter() - started < 2.0
        assert reader.execute("SELECT count(*) FROM decision").fetchone() == (100,)  # its snapshot is unchanged
        reader.execute("COMMIT")
        assert reader.execute("SELECT count(*) FROM decision").fetchone() == (1100,)
    finally:
        reader.close()
    assert log.count(Decision, run) == 1100


# ---------------------------------------------------------------------------------------------- URLs and --since


def test_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AMA_DATABASE_URL", raising=False)
    assert database_url() == f"sqlite:///{DEFAULT_DB_PATH}"
    assert database_url("sqlite:///tmp/x.db") == "sqlite:///tmp/x.db"
    assert database_url("postgres://u:pw@db:5432/ama") == "postgresql+psycopg://u:pw@db:5432/ama"
    assert database_url("postgresql://u@db/ama") == "postgresql+psycopg://u@db/ama"
    assert database_url("postgresql+psycopg://u@db/ama") == "postgresql+psycopg://u@db/ama"

    monkeypatch.setenv("AMA_DATABASE_URL", "postgresql://env@db/ama")
    assert database_url() == "postgresql+psycopg://env@db/ama"
    assert database_url("sqlite:///given.db") == "sqlite:///given.db"  # an explicit URL wins

    for bad in ("mysql://root@db/ama", "ama.db"):
        with pytest.raises(ConfigError) as error:
            database_url(bad)
        assert repr(bad) in one_line(error)
    monkeypatch.setenv("AMA_DATABASE_URL", "mysql://root@db/ama")
    with pytest.raises(ConfigError, match="mysql://root@db/ama"):
        DecisionLog()


def test_parse_since() -> None:
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    assert parse_since("15m", now) == now - timedelta(minutes=15)
    assert parse_since("2h", now) == now - timedelta(hours=2)
    assert parse_since("1d", now) == now - timedelta(days=1)
    assert parse_since("30s", now) == now - timedelta(seconds=30)
    assert parse_since("1.5h", now) == now - timedelta(minutes=90)
    assert parse_since("2026-11-21T10:42", now) == datetime(2026, 11, 21, 10, 42, tzinfo=UTC)
    assert parse_since("2026-11-21T10:42:00+02:00", now) == datetime(2026, 11, 21, 8, 42, tzinfo=UTC)
    assert abs(parse_since("1h") - (utcnow() - timedelta(hours=1))) < timedelta(seconds=5)
    for bad in ("yesterday", "15x", "m", "-5m", ""):
        with pytest.raises(InputError) as error:
            parse_since(bad, now)
        assert one_line(error) == f"--since must be an ISO time or an age like 15m, 2h, 1d; got {bad!r}"


# ---------------------------------------------------------------------------------------------- benchmark


def test_bench_log_runs_and_prints_json(db_url: str) -> None:
    command = [sys.executable, "-m", "tools.bench_log", "--agents", "50", "--ticks", "5", "--json"]
    if db_url.startswith("postgresql"):
        command += ["--db", db_url]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["agents"], report["ticks"], report["rows"]) == (50, 5, 250)
    expected = [("sqlite", "background"), ("sqlite", "foreground")]
    if db_url.startswith("postgresql"):
        expected += [("postgresql", "background"), ("postgresql", "foreground")]
    assert [(r["db"], r["mode"]) for r in report["results"]] == expected
    for entry in report["results"]:
        assert entry["rows"] == 250
        assert entry["seconds"] > 0 and entry["rows_per_s"] > 0
        assert entry["ticks_per_s"] == pytest.approx(entry["rows_per_s"] / 50, rel=1e-3)
    if db_url.startswith("postgresql"):
        reader = DecisionLog(db_url)
        try:
            assert reader.count(Decision) == 0 and reader.count(Run) == 0  # the bench removed its rows
        finally:
            reader.close()


def test_two_writers_on_one_run_never_make_the_same_id(db_url: str, make_log: MakeLog) -> None:
    """A restarted runtime finishes an incident of a run whose runtime may still be writing: both writers' rows are
    kept, each writer's in its order, and the chat finds the second writer's rows by id."""
    from manager.chat import _DECISION_ID

    first = make_log(db_url)
    run = first.start_run("s", "marl", manager="rule")
    second = make_log(db_url)
    ids = []
    for k in range(3):  # interleaved, each flushing as it goes
        ids.append(first.record(run, k, float(k), "manager", "note", f"first writer {k}"))
        first.flush(force=True)
        ids.append(second.record(run, k, float(k), "manager", "note", f"second writer {k}"))
        second.flush(force=True)
    assert len(set(ids)) == 6 and ids[0] == f"{run}-000000001"
    stored = {d.id: d.explanation for d in second.decisions(run_id=run)}
    assert [stored[i] for i in ids] == [f"{w} writer {k}" for k in range(3) for w in ("first", "second")]
    assert sorted(i for i in ids if stored[i].startswith("second")) == [i for i in ids if stored[i].startswith("second")]
    assert _DECISION_ID.findall(f"why did [{ids[1]}] happen?") == [ids[1]]


# ---------------------------------------------------------------------------------------------- a full disk


def capped(log: DecisionLog, pages: dict[str, int]) -> DecisionLog:
    """Cap the log's SQLite file at ``pages["max"]`` pages (PRAGMA max_page_count: "database or disk is full" past
    it); every new connection reads the current cap, and a failed flush drops the connections."""

    @event.listens_for(log.engine, "connect")
    def _cap(dbapi_connection: Any, _: Any) -> None:
        dbapi_connection.execute(f"PRAGMA max_page_count={pages['max']}")

    log.engine.dispose()
    return log


def page_count(log: DecisionLog) -> int:
    with log.engine.connect() as conn:
        return int(conn.exec_driver_sql("PRAGMA page_count").scalar_one())


def test_a_full_disk_buffers_says_so_once_keeps_answering_and_writes_everything_when_there_is_room(tmp_path: Path) -> None:
    events: list[str] = []
    pages = {"max": 1_000_000}
    log = capped(DecisionLog(f"sqlite:///{tmp_path / 'log.db'}", on_event=events.append), pages)
    run = log.start_run("s", "marl")
    proposal = log.record(run, 1, 1.0, "manager", "add_nodes", "add 2 cloud nodes", risk="high", status="proposed")
    expiring = log.record(run, 1, 1.0, "manager", "drain_node", "drain n-3", risk="high", status="proposed")
    assert log.flush(force=True)
    pages["max"] = page_count(log)  # full from here on
    log.engine.dispose()
    written = record_ticks(log, run, range(20))  # 200 rows: more than the file has room for
    late = log.record(run, 21, 21.0, "manager", "add_nodes", "add 1 edge node", risk="high", status="proposed")
    assert not log.flush(force=True) and not log.available
    log.decide_approval(proposal, "alice", approve=True, reason="real spike")  # the operator's answer, while full
    log.set_status(expiring, "expired", result={"why": "no answer"})
    log.decide_approval(late, "bob", approve=False)
    assert log.decision(proposal).status == "approved" and log.decision(proposal).approved_by == "alice"  # type: ignore[union-attr]
    assert log.decision(late).status == "rejected" and log.decision(expiring).status == "expired"  # type: ignore[union-attr]
    assert {d.id for d in log.decisions(run_id=run, status="proposed")} == set()
    assert {d.id for d in log.decisions(run_id=run, status="approved")} == {proposal}
    assert len(log.decisions(run_id=run, actor="marl", limit=1000)) == len(written)
    full = [e for e in events if "database or disk is full" in e]
    assert len(full) == 1 and full == events  # said once

    pages["max"] = 1_000_000  # room again (the cap is per connection: new ones get it)
    log.engine.dispose()
    assert log.flush(force=True) and log.buffered == 0
    assert events[-1].startswith("decision log back after")
    log.close()
    reader = DecisionLog(f"sqlite:///{tmp_path / 'log.db'}")
    assert reader.count(Decision, run) == len(written) + 3
    assert reader.decision(proposal).status == "approved" and reader.decision(late).status == "rejected"  # type: ignore[union-attr]
    assert reader.decision(expiring).status == "expired" and "no answer" in (reader.decision(expiring).result_json or "")  # type: ignore[union-attr]
    assert [(a.operator, a.decision) for a in reader.approvals(proposal)] == [("alice", "approved")]
    assert [(a.operator, a.decision) for a in reader.approvals(late)] == [("bob", "rejected")]
    reader.close()


def test_past_the_bound_recording_stops_in_one_line_and_saves_the_buffered_rows(tmp_path: Path) -> None:
    pages = {"max": 1_000_000}
    log = capped(DecisionLog(f"sqlite:///{tmp_path / 'log.db'}", max_buffered=50), pages)
    run = log.start_run("s", "marl")
    before = record_ticks(log, run, range(2))
    assert log.flush(force=True)
    pages["max"] = page_count(log)
    log.engine.dispose()
    with pytest.raises(LogFullError) as error:
        record_ticks(log, run, range(2, 20))
    message = str(error.value)
    assert "\n" not in message and "database or disk is full" in message and "50 rows buffered, the bound" in message
    saved = Path(message.split("the buffered rows are in ")[1])
    assert len([line for line in saved.read_text().splitlines() if json.loads(line)["table"] == "decision"]) == 50
    pages["max"] = 1_000_000
    log.engine.dispose()
    reader = DecisionLog(f"sqlite:///{tmp_path / 'log.db'}")
    assert {d.id for d in reader.decisions(run_id=run, limit=1000)} == set(before)  # what was written is intact
    reader.close()


def test_the_runtime_goes_on_through_a_full_disk_and_its_log_is_whole_after(tmp_path: Path) -> None:
    from manager.loop import Runtime, RuntimeSettings
    from tests.spike import spike_scenario

    pages = {"max": 1_000_000}
    log = capped(DecisionLog(f"sqlite:///{tmp_path / 'log.db'}"), pages)
    from manager.verify import VerifySettings

    unverified = VerifySettings(candidates=0)  # the rule's add_nodes proposal is what must pass through the outage
    settings = RuntimeSettings(
        scenario=spike_scenario(tmp_path), controller="kpa", checkpoints=tmp_path / "c.db", auto_approve="op", verify=unverified
    )
    runtime = Runtime(settings, log)

    def fill_then_free(t: int) -> None:
        if t == 100:  # before the spike's incident
            pages["max"] = page_count(log)
            log.engine.dispose()
        elif t == 300:
            pages["max"] = 1_000_000
            log.engine.dispose()

    runtime.on_tick = fill_then_free
    summary = runtime.run()
    assert summary["incidents_failed"] == 0 and log.outages == 1
    log.close()
    reader = DecisionLog(f"sqlite:///{tmp_path / 'log.db'}")
    rows = reader.decisions(run_id=runtime.run_id, actor="manager", limit=1000)
    (added,) = [r for r in rows if r.action == "add_nodes"]
    assert added.status == "applied" and added.approved_by == "op"  # proposed, approved and applied while the disk was full
    assert reader.runs()[0].status == "finished"
    reader.close()
