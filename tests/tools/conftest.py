"""Fixtures for the tools tests (tests/tools/test_decision_log.py): a real, throwaway PostgreSQL server started
from Debian's binaries for the session (``postgres_server``, ``postgres_url``), a ``db_url`` parametrized over
SQLite and PostgreSQL (a fresh database for every test), a ``database`` handle that can take either one away and
bring it back mid-run (outage tests), a fake clock for deterministic backoff, and ``no_root_override`` so that
file permissions bind even when the suite runs as root (the CI machine does).
"""

from __future__ import annotations

import ctypes
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

PG_GLOB = "/usr/lib/postgresql/*/bin/initdb"
PG_USER = "ama"
PG_TIMEZONE = "America/New_York"
"""The throwaway server runs in a non-UTC zone on purpose: stored times must not depend on the server's zone."""


def postgres_bindir() -> Path | None:
    """The bin directory of the highest PostgreSQL version Debian installed, or None."""
    found = [Path(p).parent for p in glob.glob(PG_GLOB)]
    found = [p for p in found if (p / "pg_ctl").exists() and (p / "postgres").exists()]
    if not found:
        return None

    def version(bindir: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in bindir.parent.name.split(".") if part.isdigit())

    return max(found, key=version)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory, listening on 127.0.0.1:``port`` (and a unix socket in the
    same directory). As root, initdb and pg_ctl run as the ``postgres`` system user (initdb refuses root)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="ama-pg-"))
        self.data = self.root / "data"
        self.logfile = self.root / "server.log"
        self.port = free_port()
        self.running = False
        self.url = ""
        """The session database's URL, set by ``init``."""
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            self._make_traversable(self.root.parent)
            self.as_user = ["runuser", "-u", "postgres", "--"]

    @staticmethod
    def _make_traversable(directory: Path) -> None:
        """The postgres user must reach the temp dir: add o+x to any parent that lacks it."""
        for parent in (directory, *directory.parents):
            mode = parent.stat().st_mode
            if not mode & 0o001:
                parent.chmod(mode | 0o001)

    def _run(self, *args: str) -> None:
        result = subprocess.run([*self.as_user, *args], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            log = self.logfile.read_text(errors="replace")[-2000:] if self.logfile.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed ({result.returncode}): {result.stderr.strip()}\n{log}")

    def init(self) -> None:
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", PG_USER, "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync"
        )
        self.start()
        self.url = self.url_for(self.create_database())

    def start(self) -> None:
        """Start (or restart) the server on the same port and wait until it accepts connections."""
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
            f"-c full_page_writes=off -c shared_buffers=16MB -c max_connections=40 -c timezone={PG_TIMEZONE}"
        )
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.logfile), "-o", options, "-w", "-t", "30", "start")
        self.running = True

    def stop(self) -> None:
        """Stop the server (fast shutdown: open connections are cut, as in a real outage)."""
        if self.running:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop")
            self.running = False

    def url_for(self, database: str) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str) -> None:
        """Run one statement outside a transaction (CREATE/DROP DATABASE) in the maintenance database."""
        import psycopg

        with psycopg.connect(self.url_for("postgres"), autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def create_database(self) -> str:
        name = f"ama_{uuid.uuid4().hex[:10]}"
        self.execute(f"CREATE DATABASE {name}")
        return name

    def drop_database(self, name: str) -> None:
        if self.running:
            self.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip(f"PostgreSQL binaries not found (install Debian's postgresql): no {PG_GLOB}")
    server = PostgresServer(bindir)
    try:
        server.init()
        yield server
    finally:
        server.destroy()


class PostgresDatabase:
    """What a test gets from ``postgres_db``: the URL of a fresh database, and the server to stop and restart."""

    def __init__(self, server: PostgresServer, name: str) -> None:
        self.server = server
        self.name = name
        self.url = server.url_for(name)

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self.server.start()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """``postgresql://ama@127.0.0.1:PORT/DBNAME``: the session database on the throwaway server (shared by the
    tests that ask for it; tests that count rows use ``postgres_db``'s fresh database instead)."""
    return postgres_server.url


@pytest.fixture
def postgres_db(postgres_server: PostgresServer) -> Iterator[PostgresDatabase]:
    """A fresh database on the session's server (so row counts are exact), dropped afterwards. A test that stopped
    the server gets it restarted here even when it failed half-way."""
    name = postgres_server.create_database()
    try:
        yield PostgresDatabase(postgres_server, name)
    finally:
        if not postgres_server.running:
            postgres_server.start()
        postgres_server.drop_database(name)


class Database:
    """A database under test that can be taken away and brought back: SQLite by moving its file away and back,
    PostgreSQL by stopping and restarting the server."""

    def __init__(self, kind: str, url: str, path: Path | None = None, postgres: PostgresDatabase | None = None) -> None:
        self.kind = kind
        self.url = url
        self.path = path
        self.postgres = postgres
        self.down = False

    def take_down(self) -> None:
        if self.postgres is not None:
            self.postgres.stop()
        else:
            assert self.path is not None
            self.path.rename(self.path.with_name(self.path.name + ".away"))
        self.down = True

    def bring_back(self) -> None:
        if self.postgres is not None:
            self.postgres.start()
        else:
            assert self.path is not None
            assert not self.path.exists(), f"{self.path} was recreated while it was away"
            self.path.with_name(self.path.name + ".away").rename(self.path)
        self.down = False


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A fresh database, once SQLite (``tmp_path/ama.db``) and once PostgreSQL (a new database on the session's
    server), that the test may take down and bring back; it is back in place after the test either way."""
    if request.param == "sqlite":
        path = tmp_path / "ama.db"
        db = Database("sqlite", f"sqlite:///{path}", path=path)
        yield db
        if db.down:
            db.bring_back()
    else:
        pg: PostgresDatabase = request.getfixturevalue("postgres_db")
        yield Database("postgresql", pg.url, postgres=pg)


@pytest.fixture
def db_url(database: Database) -> str:
    """A fresh database's URL, once SQLite (a file in tmp_path) and once PostgreSQL (the throwaway server)."""
    return database.url


class FakeClock:
    """An injectable monotonic clock that only moves when the test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


_CAP_VERSION_3 = 0x20080522
_CAP_DAC_OVERRIDE = 1


@contextmanager
def no_root_override() -> Iterator[None]:
    """Make file permissions bind in this thread even as root: drop CAP_DAC_OVERRIDE from the calling thread's
    effective capabilities (Linux capabilities are per thread) and raise it again afterwards. A no-op for other
    users, whom permissions bind anyway."""
    if os.geteuid() != 0:
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    header, data = _CapHeader(_CAP_VERSION_3, 0), (_CapData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget failed")
    effective = data[0].effective
    data[0].effective = effective & ~(1 << _CAP_DAC_OVERRIDE)
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")
    try:
        yield
    finally:
        data[0].effective = effective
        if libc.capset(ctypes.byref(header), data) != 0:
            raise OSError(ctypes.get_errno(), "capset failed restoring CAP_DAC_OVERRIDE")
