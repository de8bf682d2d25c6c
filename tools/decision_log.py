"""The decision log: AMA's system of record. Written by the runtime and ``ama sim --db`` (every decision and action
with its explanation, approvals, metric samples, chat), read by ``ama decisions``, the manager's read-only tools and
the operator console. SQLModel tables on SQLite by default (one file, WAL mode, so the console's readers never block
the writer) or PostgreSQL when the URL is a postgres one (``AMA_DATABASE_URL``).

Writes are batched: ``record`` and ``sample`` only append to an in-memory buffer, and ``flush`` (called by the
caller's loop, and on ``close``) inserts it in one transaction. If the database goes away (file removed or made
read-only, server stopped) the flush fails, the rows stay buffered, the outage is reported once through
``on_event``, and later flushes retry with backoff until the database is back; then everything buffered is written.
Status changes and approvals go the same way (``set_status`` and ``decide_approval`` stage them and flush), and
every read of the log (``decision``, ``decisions``) sees what is buffered as well as what is written, so a runtime
waiting on an approval reads the same answer whether the database is there or not. The buffer is bounded
(``max_buffered`` rows): past it, recording raises ``LogFullError`` after writing the buffered rows to a JSON-lines
file beside the database (``<db>.unwritten-<time>.jsonl``, when the disk takes it), and the run stops with that one
line; nothing already written is touched. ``close`` with the database still away writes the same file.
Row ids are made by the writer, so a batch retried after an ambiguous failure is never written twice (an insert
with an id already there is skipped): ``<run>-<sequence>`` in a run the writer started, ``<run>-w<writer>-<sequence>``
in a run another writer started (a restarted runtime finishing an incident of the run it paused in, while that run's
runtime may still be writing), so two writers never make the same id.

Decision status: ``proposed -> approved | rejected``, ``approved -> applied | failed``, ``proposed -> expired``;
low-risk actions are recorded directly as ``applied`` or ``failed``.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Index, event, func, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Field, Session, SQLModel, create_engine, select

from simulators.errors import ConfigError, InputError, TransientError

DEFAULT_DB_PATH = Path(os.environ.get("AMA_HOME", ".ama")) / "ama.db"
STATUSES = ("proposed", "approved", "rejected", "applied", "failed", "expired")
TRANSITIONS = {
    "proposed": {"approved", "rejected", "expired", "failed"},
    "approved": {"applied", "failed"},
    "rejected": set(),
    "applied": set(),
    "failed": set(),
    "expired": set(),
}
RISKS = ("low", "high")


def utcnow() -> datetime:
    """Now, timezone-aware in UTC (SQLModel stores aware datetimes as UTC and returns them aware)."""
    return datetime.now(UTC)


class Run(SQLModel, table=True):
    id: str = Field(primary_key=True)
    scenario: str
    controller: str
    manager: str = "off"
    seed: int = 0
    started_at: datetime = Field(default_factory=utcnow)
    ended_at: datetime | None = None
    status: str = "running"
    settings_json: str = "{}"
    summary_json: str | None = None


class Decision(SQLModel, table=True):
    """One decision or action. Indexed for the console's filters (run and tick, time, actor, node, status); every
    index costs write throughput, so service and action are filtered within those."""

    __table_args__ = (
        Index("ix_decision_run_tick", "run_id", "tick"),
        # most rows are applied at once; the lifecycle queries look for the others, so only those are indexed
        Index("ix_decision_open", "status", sqlite_where=text("status != 'applied'"), postgresql_where=text("status != 'applied'")),
    )
    id: str = Field(primary_key=True)
    run_id: str
    tick: int
    time_s: float
    created_at: datetime = Field(default_factory=utcnow, index=True)
    updated_at: datetime = Field(default_factory=utcnow)
    actor: str = Field(index=True)
    action: str
    node: str | None = Field(default=None, index=True)
    service: str | None = None
    args_json: str = "{}"
    explanation: str
    weights_json: str | None = None
    risk: str = "low"
    status: str = "applied"
    approved_by: str | None = None
    request_id: str | None = None
    incident_id: str | None = None
    result_json: str | None = None
    deadline_at: datetime | None = None


class Approval(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    decision_id: str = Field(index=True)
    operator: str
    decision: str
    """``approved`` or ``rejected``."""
    reason: str = ""
    decided_at: datetime = Field(default_factory=utcnow)


class MetricSample(SQLModel, table=True):
    id: str = Field(primary_key=True)
    run_id: str = Field(index=True)
    tick: int = Field(index=True)
    time_s: float
    arrivals_rps: float
    served_rps: float
    violation_rate: float
    drops: float
    cold_starts: float
    cost_per_h: float
    power_w: float
    nodes_on: int
    nodes_failed: int
    replicas: int
    snapshot_json: str
    """The snapshot's per-service and per-node telemetry (``ClusterSnapshot.to_dict``)."""


class ChatMessage(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    thread_id: str = Field(index=True)
    run_id: str | None = Field(default=None, index=True)
    role: str
    """``operator`` or ``manager``."""
    author: str
    content: str
    created_at: datetime = Field(default_factory=utcnow, index=True)


def database_url(url: str | None = None) -> str:
    """The URL to use: the argument, else ``AMA_DATABASE_URL``, else the default SQLite file."""
    url = url or os.environ.get("AMA_DATABASE_URL") or f"sqlite:///{DEFAULT_DB_PATH}"
    if url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgres://")
    elif url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if not (url.startswith("sqlite:") or url.startswith("postgresql+")):
        raise ConfigError(f"database URL must be sqlite:///PATH or postgresql://..., got {url!r}")
    return url


def sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite:///"):
        return None
    path = url.removeprefix("sqlite:///")
    return None if path in ("", ":memory:") else Path(path)


def make_engine(url: str) -> Engine:
    """An engine with SQLite in WAL mode (readers never block the writer) or PostgreSQL with pre-ping."""
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 5.0, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=5000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 3})


DECISION_COLUMNS = tuple(c.name for c in Decision.__table__.columns)  # type: ignore[attr-defined]
assert DECISION_COLUMNS == (
    "id", "run_id", "tick", "time_s", "created_at", "updated_at", "actor", "action", "node", "service", "args_json",
    "explanation", "weights_json", "risk", "status", "approved_by", "request_id", "incident_id", "result_json", "deadline_at",
), "DecisionLog.record builds rows in this order"  # fmt: skip


@dataclass
class _Buffer:
    decisions: list[tuple[Any, ...]] = field(default_factory=list)
    """Rows in DECISION_COLUMNS order, values already as the database stores them."""
    samples: list[dict[str, Any]] = field(default_factory=list)
    runs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Decision id -> the columns a status change sets (applied to a buffered row, or as an UPDATE)."""
    approvals: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.decisions) + len(self.samples) + len(self.runs) + len(self.changes) + len(self.approvals)

    def then(self, later: _Buffer) -> _Buffer:
        """This buffer's rows followed by ``later``'s (used to put back a batch that failed to write)."""
        changes = dict(self.changes)
        for decision_id, columns in later.changes.items():
            changes[decision_id] = {**changes.get(decision_id, {}), **columns}
        return _Buffer(
            self.decisions + later.decisions,
            self.samples + later.samples,
            self.runs + later.runs,
            changes,
            self.approvals + later.approvals,
        )


class DecisionLog:
    """Batched writer and reader of the decision log. ``on_event`` receives one line when the database becomes
    unavailable and one when it is back (not one per failed retry)."""

    def __init__(
        self,
        url: str | None = None,
        batch_size: int = 5000,
        flush_interval_s: float = 1.0,
        max_backoff_s: float = 30.0,
        on_event: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        background: bool = False,
        max_buffered: int = 1_000_000,
    ) -> None:
        """``background=True`` starts a writer thread that flushes whenever rows are waiting, so the caller's loop
        never waits on the database (SQLite and psycopg release the GIL while they write). Without it the caller's
        ``record`` flushes when the batch is full or the interval passed."""
        self.url = database_url(url)
        self._sqlite_path = sqlite_path(self.url)
        self.batch_size = batch_size
        self.max_buffered = max_buffered
        """Rows held while the database is away; past it, recording raises LogFullError."""
        self.flush_interval_s = flush_interval_s
        self.max_backoff_s = max_backoff_s
        self.on_event = on_event or (lambda line: None)
        self.clock = clock
        self.engine = make_engine(self.url)
        self._buffer = _Buffer()
        self._sequences: dict[str, int] = {}
        """run id -> the last sequence this writer gave a decision row of that run."""
        self._own_runs: set[str] = set()
        """The runs this writer started (their rows are numbered ``<run>-<sequence>``)."""
        self._writer_name = uuid.uuid4().hex[:8]
        """Names this writer in the ids of rows it writes to runs it did not start."""
        self._stored_time = Decision.__table__.c.created_at.type._cached_bind_processor(self.engine.dialect) or (lambda value: value)  # type: ignore[attr-defined]
        self._now_at, self._now_value = -1.0, self._stored_time(utcnow())
        self._last_flush = clock()
        self._outage_since: float | None = None
        self._last_problem = ""
        self._next_retry = 0.0
        self._backoff = 0.5
        self.outages = 0
        self._lock = threading.Lock()
        """Guards the buffer swap between the caller and the writer thread."""
        self._flushing = threading.Lock()
        """One flush at a time."""
        try:
            SQLModel.metadata.create_all(self.engine)
        except SQLAlchemyError as exc:
            raise TransientError(f"decision log at {self._safe_url()} is not reachable: {_first_line(exc)}") from None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._writer: threading.Thread | None = None
        if background:
            self._writer = threading.Thread(target=self._write_loop, name="ama-decision-log", daemon=True)
            self._writer.start()

    # ------------------------------------------------------------------------------------------ writing
    def start_run(self, scenario: str, controller: str, manager: str = "off", seed: int = 0, settings: dict[str, Any] | None = None) -> str:
        run_id = uuid.uuid4().hex[:12]
        self._own_runs.add(run_id)
        row = {"id": run_id, "scenario": scenario, "controller": controller, "manager": manager, "seed": seed, "started_at": utcnow()}
        row["settings_json"] = json.dumps(settings or {})
        with self._lock:
            self._buffer.runs.append(("insert", row))
        self.flush(force=True)
        return run_id

    def end_run(self, run_id: str, summary: dict[str, Any], status: str = "finished") -> None:
        with self._lock:
            self._buffer.runs.append(
                ("update", {"id": run_id, "ended_at": utcnow(), "status": status, "summary_json": json.dumps(summary)})
            )
        self.flush(force=True)

    def record(
        self,
        run_id: str,
        tick: int,
        time_s: float,
        actor: str,
        action: str,
        explanation: str,
        *,
        node: str | None = None,
        service: str | None = None,
        args: dict[str, Any] | None = None,
        weights: dict[str, float] | str | None = None,
        risk: str = "low",
        status: str = "applied",
        request_id: str | None = None,
        incident_id: str | None = None,
        result: dict[str, Any] | None = None,
        deadline_at: datetime | None = None,
    ) -> str:
        """Buffer one decision row and return its id (written at the next flush). ``weights`` may be given already
        as JSON, which callers logging many rows under the same weights do once per tick."""
        if status not in STATUSES:
            raise InputError(f"unknown decision status {status!r}; one of {', '.join(STATUSES)}")
        if risk not in RISKS:
            raise InputError(f"unknown risk {risk!r}; one of {', '.join(RISKS)}")
        decision_id = self._next_id(run_id)
        now = self._now()
        row = (  # DECISION_COLUMNS order
            decision_id,
            run_id,
            tick,
            time_s,
            now,
            now,
            actor,
            action,
            node,
            service,
            "{}" if not args else json.dumps(args),
            explanation,
            weights if weights is None or isinstance(weights, str) else json.dumps(weights),
            risk,
            status,
            None,
            request_id,
            incident_id,
            None if result is None else json.dumps(result),
            None if deadline_at is None else self._stored_time(deadline_at),
        )
        self._check_room()
        with self._lock:
            self._buffer.decisions.append(row)
        self.maybe_flush()
        return decision_id

    def sample(self, run_id: str, snapshot: Any) -> None:
        """Buffer one metric sample from a ClusterSnapshot."""
        data = snapshot.to_dict()
        row = {
            "id": f"{run_id}-{snapshot.tick:09d}",
            "run_id": run_id,
            "tick": snapshot.tick,
            "time_s": snapshot.time_s,
            "arrivals_rps": snapshot.arrivals_rps,
            "served_rps": snapshot.served_rps,
            "violation_rate": snapshot.violation_rate,
            "drops": snapshot.drops,
            "cold_starts": snapshot.cold_starts,
            "cost_per_h": snapshot.cost_per_h,
            "power_w": snapshot.power_w,
            "nodes_on": snapshot.nodes_on,
            "nodes_failed": snapshot.nodes_failed,
            "replicas": sum(s.replicas_warm + s.replicas_booting for s in snapshot.services),
            "snapshot_json": json.dumps(data),
        }
        self._check_room()
        with self._lock:
            self._buffer.samples.append(row)
        self.maybe_flush()

    def _next_id(self, run_id: str) -> str:
        sequence = self._sequences.get(run_id, 0) + 1
        self._sequences[run_id] = sequence
        if run_id in self._own_runs:
            return f"{run_id}-{sequence:09d}"
        return f"{run_id}-w{self._writer_name}-{sequence:09d}"  # another writer's run: ids of this writer's own

    def _now(self) -> Any:
        """utcnow as the database stores it, reused within a millisecond (converting a datetime per row would cost
        more than writing it)."""
        tick = time.monotonic()
        if tick - self._now_at > 0.001:
            self._now_at, self._now_value = tick, self._stored_time(utcnow())
        return self._now_value

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def available(self) -> bool:
        return self._outage_since is None

    def maybe_flush(self) -> None:
        """Flush when the buffer is large or the flush interval passed (and, during an outage, the backoff); with a
        writer thread, wake it instead."""
        if len(self._buffer) >= self.batch_size or self.clock() - self._last_flush >= self.flush_interval_s:
            if self._writer is not None:
                self._wake.set()
            else:
                self.flush()

    def _write_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            self.flush()

    def flush(self, force: bool = False) -> bool:
        """Write everything buffered in one transaction. Returns True when the buffer is empty afterwards. During an
        outage a flush only tries again once the backoff has passed (``force`` tries at once)."""
        with self._flushing:
            now = self.clock()
            self._last_flush = now
            if not len(self._buffer):
                return True
            if self._outage_since is not None and not force and now < self._next_retry:
                return False
            with self._lock:
                batch, self._buffer = self._buffer, _Buffer()
            try:
                self._write(batch)
            except (SQLAlchemyError, OSError, TransientError) as exc:
                with self._lock:
                    self._buffer = batch.then(self._buffer)
                self._outage(now, exc)
                return False
            self._recovered(now, len(batch))
            return not len(self._buffer)

    def _write(self, batch: _Buffer) -> None:
        self._check_file()
        with self.engine.begin() as conn:
            for kind, row in batch.runs:
                if kind == "insert":  # a retried batch may hold a run its failed try already wrote: skip it, do not fail
                    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
                    conn.execute(dialect_insert(Run).values(**row).on_conflict_do_nothing(index_elements=["id"]))
                else:
                    conn.execute(update(Run).where(Run.id == row["id"]).values(**{k: v for k, v in row.items() if k != "id"}))
            rows = batch.decisions
            if batch.changes:
                rows = [_changed(row, batch.changes.get(row[0]), self._stored_time) for row in rows]
            _insert_tuples(conn, Decision, rows)
            _bulk_insert(conn, MetricSample, batch.samples)
            inserted = {row[0] for row in batch.decisions} if batch.changes else set()
            for decision_id, columns in batch.changes.items():
                if decision_id not in inserted:
                    conn.execute(update(Decision).where(Decision.id == decision_id).values(**columns))
            if batch.approvals:
                conn.execute(Approval.__table__.insert(), batch.approvals)  # type: ignore[attr-defined]

    def _recovered(self, now: float, written: int) -> None:
        if self._outage_since is not None:
            self.on_event(f"decision log back after {now - self._outage_since:.0f} s: wrote {written} buffered rows")
            self._outage_since = None
            self._backoff = 0.5

    def close(self) -> None:
        """Stop the writer, final flush (one forced try), dispose of connections. Rows left unwritten are reported."""
        if self._writer is not None:
            self._stop.set()
            self._wake.set()
            self._writer.join()
            self._writer = None
        if not self.flush(force=True):
            where = self._dump_unwritten()
            self.on_event(f"decision log still unavailable at exit: {self.buffered} rows could not be written; {where}")
        self.engine.dispose()

    def _check_room(self) -> None:
        """Past ``max_buffered`` rows during an outage: write them to a file if the disk allows, and stop (LogFullError)."""
        if len(self._buffer) < self.max_buffered or self.flush(force=True):
            return
        since = self.clock() - (self._outage_since if self._outage_since is not None else self.clock())
        where = self._dump_unwritten()
        raise LogFullError(
            f"decision log at {self._safe_url()} unavailable for {since:.0f} s ({self._last_problem}) with {self.buffered} rows "
            f"buffered, the bound (max_buffered): stopping; everything written before is kept, and {where}"
        )

    def _dump_unwritten(self) -> str:
        """Write the buffered rows as JSON lines beside the database (or in $AMA_HOME); the sentence saying where."""
        folder = self._sqlite_path.parent if self._sqlite_path is not None else Path(os.environ.get("AMA_HOME", ".ama"))
        name = (self._sqlite_path.name if self._sqlite_path is not None else "decision-log") + f".unwritten-{int(time.time())}.jsonl"
        path = folder / name
        with self._lock:
            folder.mkdir(parents=True, exist_ok=True)
            batch = self._buffer
        try:
            with path.open("w") as out:
                for row in batch.decisions:
                    out.write(json.dumps({"table": "decision", **_changed_dict(row, batch.changes.get(row[0]))}, default=str) + "\n")
                for decision_id, columns in batch.changes.items():
                    out.write(json.dumps({"table": "decision_change", "id": decision_id, **columns}, default=str) + "\n")
                for table, rows in (("approval", batch.approvals), ("metric_sample", batch.samples)):
                    for item in rows:
                        out.write(json.dumps({"table": table, **item}, default=str) + "\n")
                for kind, item in batch.runs:
                    out.write(json.dumps({"table": f"run_{kind}", **item}, default=str) + "\n")
        except OSError as exc:
            return f"the buffered rows could not be saved either ({exc.strerror or exc})"
        return f"the buffered rows are in {path}"

    def _check_file(self) -> None:
        """A SQLite file removed under an open connection would swallow writes: treat it as an outage until it is
        back (recreating it would split the log)."""
        if self._sqlite_path is not None and not self._sqlite_path.exists():
            self.engine.dispose()
            raise TransientError(f"{self._sqlite_path} was removed")

    def _outage(self, now: float, exc: Exception) -> None:
        self._last_problem = _first_line(exc)
        if self._outage_since is None:
            self._outage_since = now
            self.outages += 1
            self.on_event(f"decision log unavailable ({_first_line(exc)}); buffering {len(self._buffer)} rows and retrying")
        self.engine.dispose()
        self._next_retry = now + self._backoff
        self._backoff = min(self._backoff * 2, self.max_backoff_s)

    def _safe_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    # ------------------------------------------------------------------------------------------ status and approvals
    def set_status(self, decision_id: str, status: str, result: dict[str, Any] | None = None, approved_by: str | None = None) -> None:
        """Move a decision along its lifecycle; an illegal transition is an InputError naming both states. Staged and
        flushed like every write: during an outage it waits in the buffer, and reads see it at once."""
        row = self.decision(decision_id)
        if row is None:
            raise InputError(f"no decision {decision_id!r}")
        if status in ("approved", "rejected"):
            raise InputError(f"decision {decision_id}: approvals go through decide_approval, which records the operator")
        if status not in TRANSITIONS[row.status]:
            raise InputError(f"decision {decision_id} is {row.status}; it cannot become {status}")
        columns: dict[str, Any] = {"status": status, "updated_at": utcnow()}
        if result is not None:
            earlier = json.loads(row.result_json) if row.result_json else {}
            columns["result_json"] = json.dumps({**earlier, **result})  # a proposal's what-if preview stays beside its outcome
        if approved_by is not None:
            columns["approved_by"] = approved_by
        self._stage_change(decision_id, columns)
        self.flush(force=True)

    def add_result(self, decision_id: str, result: dict[str, Any]) -> None:
        """Merge ``result`` into a decision's result whatever its status (the runtime adds what happened over the
        twin's horizon next to what the twin predicted); staged and flushed like every write."""
        row = self.decision(decision_id)
        if row is None:
            raise InputError(f"no decision {decision_id!r}")
        earlier = json.loads(row.result_json) if row.result_json else {}
        self._stage_change(decision_id, {"result_json": json.dumps({**earlier, **result}), "updated_at": utcnow()})
        self.flush(force=True)

    def decide_approval(self, decision_id: str, operator: str, approve: bool, reason: str = "") -> None:
        """An operator approves or rejects a proposed high-risk decision; the approval row records who and why."""
        if not operator.strip():
            raise InputError("an approval needs the operator's name")
        verdict = "approved" if approve else "rejected"
        row = self.decision(decision_id)
        if row is None:
            raise InputError(f"no decision {decision_id!r}")
        if row.status != "proposed":
            raise InputError(f"decision {decision_id} is {row.status}, not waiting for approval")
        columns: dict[str, Any] = {"status": verdict, "updated_at": utcnow()}
        if approve:
            columns["approved_by"] = operator
        approval = {"decision_id": decision_id, "operator": operator, "decision": verdict, "reason": reason, "decided_at": utcnow()}
        with self._lock:
            self._buffer.approvals.append(approval)
        self._stage_change(decision_id, columns)
        self.flush(force=True)

    def _stage_change(self, decision_id: str, columns: dict[str, Any]) -> None:
        with self._lock:
            changes = self._buffer.changes
            changes[decision_id] = {**changes.get(decision_id, {}), **columns}

    def _seen(self, row: Decision | None) -> Decision | None:
        """A row as it stands with the changes still buffered."""
        if row is None:
            return None
        with self._lock:
            columns = self._buffer.changes.get(row.id)
        if not columns:
            return row
        return row.model_copy(update=columns)

    def add_chat(self, thread_id: str, role: str, author: str, content: str, run_id: str | None = None) -> None:
        with Session(self.engine) as session:
            session.add(ChatMessage(thread_id=thread_id, run_id=run_id, role=role, author=author, content=content))
            session.commit()

    # ------------------------------------------------------------------------------------------ reading
    def decisions(
        self,
        run_id: str | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        status: str | None = None,
        node: str | None = None,
        service: str | None = None,
        limit: int = 200,
    ) -> list[Decision]:
        """Decisions, newest first, filtered by any of the arguments: the written ones and the buffered ones, each as
        it stands with its buffered status changes. With the database away, the buffered ones alone."""
        filters = {"run_id": run_id, "actor": actor, "status": status, "node": node, "service": service}
        query = select(Decision)
        for name, value in filters.items():
            if value is not None and name != "status":
                query = query.where(getattr(Decision, name) == value)
        raw = [(DECISION_COLUMNS.index(name), value) for name, value in filters.items() if value is not None and name != "status"]
        with self._lock:
            changed = set(self._buffer.changes)
            buffered = [_decision(row) for row in self._buffer.decisions if all(row[i] == value for i, value in raw)]
        if status is not None:  # a row whose buffered change makes it match (or not) is read whatever its written status
            query = query.where((Decision.status == status) | Decision.id.in_(changed))  # type: ignore[attr-defined]
        if since is not None:
            query = query.where(Decision.created_at >= since)
        query = query.order_by(Decision.created_at.desc(), Decision.id.desc()).limit(limit + len(changed))
        try:
            with Session(self.engine) as session:
                written = list(session.exec(query).all())  # type: ignore[call-overload]
        except SQLAlchemyError as exc:
            self._outage(self.clock(), exc)
            written = []
        unwritten = {row.id for row in buffered}
        rows = [self._seen(row) for row in [*(w for w in written if w.id not in unwritten), *buffered]]
        since_aware = None if since is None else _aware(since)
        matching = [
            r
            for r in rows
            if r is not None and (status is None or r.status == status) and (since_aware is None or _aware(r.created_at) >= since_aware)
        ]
        matching.sort(key=lambda r: (_aware(r.created_at), r.id), reverse=True)
        return matching[:limit]

    def decision(self, decision_id: str) -> Decision | None:
        """One decision as it stands (written or buffered, with its buffered changes); None if there is none, or the
        database is away and it is not buffered."""
        with self._lock:
            buffered = next((row for row in reversed(self._buffer.decisions) if row[0] == decision_id), None)
        if buffered is not None:
            return self._seen(_decision(buffered))
        try:
            with Session(self.engine) as session:
                return self._seen(session.get(Decision, decision_id))
        except SQLAlchemyError as exc:
            self._outage(self.clock(), exc)
            return None

    def pending_approvals(self) -> list[Decision]:
        return self.decisions(status="proposed", limit=1000)

    def approvals(self, decision_id: str | None = None) -> list[Approval]:
        query = select(Approval)
        if decision_id is not None:
            query = query.where(Approval.decision_id == decision_id)
        with Session(self.engine) as session:
            return list(session.exec(query.order_by(Approval.decided_at)).all())  # type: ignore[call-overload]

    def runs(self, limit: int = 50) -> list[Run]:
        with Session(self.engine) as session:
            return list(session.exec(select(Run).order_by(Run.started_at.desc()).limit(limit)).all())  # type: ignore[call-overload]

    def samples(self, run_id: str, since_tick: int = 0) -> list[MetricSample]:
        query = select(MetricSample).where(MetricSample.run_id == run_id, MetricSample.tick >= since_tick).order_by(MetricSample.tick)
        with Session(self.engine) as session:
            return list(session.exec(query).all())  # type: ignore[call-overload]

    def chat(self, thread_id: str) -> list[ChatMessage]:
        query = select(ChatMessage).where(ChatMessage.thread_id == thread_id).order_by(ChatMessage.created_at, ChatMessage.id)
        with Session(self.engine) as session:
            return list(session.exec(query).all())  # type: ignore[call-overload]

    def count(self, table: type[SQLModel], run_id: str | None = None) -> int:
        """Rows in a table (of one run where the table has run_id)."""
        query = select(func.count()).select_from(table)
        if run_id is not None:
            query = query.where(table.run_id == run_id)  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())


ROWS_PER_STATEMENT = 400
"""Rows per multi-row INSERT: one statement step per 400 rows instead of per row (fewer round trips to PostgreSQL,
and SQLite's B-tree work runs without the GIL for the whole chunk, so a writer thread overlaps the caller)."""


def _insert_sql(conn: Connection, model: type[SQLModel], rows: int = 1) -> str:
    table = model.__table__  # type: ignore[attr-defined]
    marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    columns = ", ".join(c.name for c in table.columns)
    values = ", ".join([f"({', '.join([marker] * len(table.columns))})"] * rows)
    # ids are the writer's own: a row already there was written by a try that failed after its commit, so skip it
    return f"INSERT INTO {table.name} ({columns}) VALUES {values} ON CONFLICT (id) DO NOTHING"


def _insert_tuples(conn: Connection, model: type[SQLModel], rows: list[tuple[Any, ...]]) -> None:
    """Insert rows already in column order and stored form, ROWS_PER_STATEMENT to a statement."""
    if not rows:
        return
    full, rest = divmod(len(rows), ROWS_PER_STATEMENT)
    if full:
        chunk_sql = _insert_sql(conn, model, ROWS_PER_STATEMENT)
        chunks = [tuple(value for row in rows[k * ROWS_PER_STATEMENT : (k + 1) * ROWS_PER_STATEMENT] for value in row) for k in range(full)]
        conn.exec_driver_sql(chunk_sql, chunks)
    if rest:
        conn.exec_driver_sql(_insert_sql(conn, model, rest), [tuple(value for row in rows[full * ROWS_PER_STATEMENT :] for value in row)])


def _bulk_insert(conn: Connection, model: type[SQLModel], rows: list[dict[str, Any]]) -> None:
    """executemany at the driver level with the columns' own bind processors (what SQLAlchemy would send, without
    its per-row overhead): the difference between ~25k and well over 100k rows/s on SQLite."""
    if not rows:
        return
    table = model.__table__  # type: ignore[attr-defined]
    dialect = conn.dialect
    columns = [c.name for c in table.columns]
    processors = [c.type._cached_bind_processor(dialect) for c in table.columns]
    converting = [(i, p) for i, p in enumerate(processors) if p is not None]
    sql = _insert_sql(conn, model)
    memo: dict[tuple[int, Any], Any] = {}
    values = []
    for row in rows:
        tuple_row = [row.get(name) for name in columns]
        for i, process in converting:
            key = (i, tuple_row[i])
            if key not in memo:
                memo[key] = process(tuple_row[i])
            tuple_row[i] = memo[key]
        values.append(tuple(tuple_row))
    conn.exec_driver_sql(sql, values)


class LogFullError(TransientError):
    """The database stayed away until the buffer reached its bound; ``str(e)`` is one line saying what was kept."""


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _stored(value: Any) -> Any:
    """A buffered row's time as a datetime (SQLite's processor stores text)."""
    if isinstance(value, str):
        return _aware(datetime.fromisoformat(value))
    return value


def _decision(row: tuple[Any, ...]) -> Decision:
    """A buffered row (DECISION_COLUMNS order, values as stored) as a Decision."""
    values = dict(zip(DECISION_COLUMNS, row, strict=True))
    for name in ("created_at", "updated_at", "deadline_at"):
        values[name] = _stored(values[name]) if values[name] is not None else None
    return Decision(**values)


def _changed(row: tuple[Any, ...], columns: dict[str, Any] | None, store: Callable[[datetime], Any]) -> tuple[Any, ...]:
    """A buffered row with a buffered status change applied (times in the stored form ``store`` makes)."""
    if not columns:
        return row
    values = list(row)
    for name, value in columns.items():
        values[DECISION_COLUMNS.index(name)] = store(value) if isinstance(value, datetime) else value
    return tuple(values)


def _changed_dict(row: tuple[Any, ...], columns: dict[str, Any] | None) -> dict[str, Any]:
    return {**dict(zip(DECISION_COLUMNS, row, strict=True)), **(columns or {})}


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``--since`` values: an ISO time (``2026-11-21T10:42``) or an age (``15m``, ``2h``, ``30s``, ``1d``)."""
    now = now or utcnow()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in units and text[:-1].replace(".", "", 1).isdigit():
        return now - timedelta(seconds=float(text[:-1]) * units[text[-1]])
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"--since must be an ISO time or an age like 15m, 2h, 1d; got {text!r}") from None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def rows_to_dicts(rows: Iterable[SQLModel]) -> list[dict[str, Any]]:
    return [row.model_dump(mode="json") for row in rows]
