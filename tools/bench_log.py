"""Decision-log throughput benchmark: ``python -m tools.bench_log [--json] [--agents 1000] [--ticks 100] [--db URL]``.
Run by hand (its figures go to BENCHMARKS.md) and smoke-tested by tests/tools/test_decision_log.py. It answers one
question for tools.decision_log: can the log keep up with a fleet of node agents?

The workload is what the runtime logs: ``--agents`` node agents each record one action per tick (actor ``marl``,
``scale_up``/``scale_down``/``offload`` with its node, service, arguments and a ~120-character explanation; the
tick's policy weights serialized once per tick and shared by its rows) for ``--ticks`` ticks. The clock runs from
the first ``record`` to the end of ``close()``, when every row is durable. Reported per database and mode:
``rows_per_s`` and ``ticks_per_s`` = rows_per_s / agents, i.e. how many simulated seconds (ticks of 1 s) per wall
second the log keeps up with at that fleet size. Modes: ``background`` (a writer thread flushes; the caller only
appends) and ``foreground`` (the caller's ``record`` flushes every 5,000 rows).

Always measured: a temporary SQLite file (removed afterwards). ``--db URL`` adds another database, e.g.
``--db postgresql://user@127.0.0.1:5432/scratch``: a PostgreSQL figure needs a running server and a database the
user may create tables in; the benchmark deletes the rows it wrote there afterwards.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete
from sqlalchemy.engine import make_url

from simulators.errors import AmaError
from tools.decision_log import Decision, DecisionLog, Run, database_url

ACTIONS = ("scale_up", "scale_down", "offload")
SERVICES = ("checkout", "catalog", "search", "auth", "cart", "images", "recs", "payments")
TARGET_ROWS_PER_S = 50_000


@dataclass(frozen=True)
class Agent:
    node: str
    service: str
    explanations: tuple[str, str, str]
    """One per action, ~120 characters, as the policy's explainer writes them."""
    args: tuple[dict[str, Any], dict[str, Any], dict[str, Any]]


def make_agents(count: int) -> list[Agent]:
    agents = []
    for i in range(count):
        node = f"edge-{i:04d}" if i % 4 else f"cloud-{i:04d}"
        service = SERVICES[i % len(SERVICES)]
        target = f"cloud-{(i * 7) % max(count, 1):04d}"
        explanations = (
            f"{node}: p95 latency of {service} at 1.4x its SLO for 3 ticks with the queue growing; one more replica fits in memory",
            f"{node}: {service} below 30% utilization for 10 ticks and no queue; removing a replica saves power within the SLO",
            f"{node}: {service} saturated and cold starts pending; sending 25% of its load to {target}, which has spare capacity",
        )
        args = ({"service": service, "delta": 1}, {"service": service, "delta": -1}, {"service": service, "share": 0.25, "to": target})
        agents.append(Agent(node, service, explanations, args))
    return agents


def tick_weights(tick: int) -> str:
    """The policy's objective weights this tick, serialized once for all of the tick's rows."""
    latency = 0.5 + 0.1 * ((tick % 10) / 10)
    return json.dumps({"latency": round(latency, 3), "cost": round((1 - latency) * 0.6, 3), "power": round((1 - latency) * 0.4, 3)})


def measure(url: str, mode: str, agents: list[Agent], ticks: int, keep_rows: bool) -> dict[str, Any]:
    """Log ``ticks`` ticks of every agent's action and time it up to a finished ``close()``."""
    log = DecisionLog(url, background=mode == "background")
    run_id = log.start_run("bench-log", "marl", settings={"agents": len(agents), "ticks": ticks, "mode": mode})
    rows = len(agents) * ticks
    gc.collect()
    started = time.perf_counter()
    for tick in range(ticks):
        weights = tick_weights(tick)
        time_s = float(tick)
        for i, agent in enumerate(agents):
            choice = (i + tick) % 3
            log.record(
                run_id, tick, time_s, "marl", ACTIONS[choice], agent.explanations[choice],
                node=agent.node, service=agent.service, args=agent.args[choice], weights=weights,
            )  # fmt: skip
    log.close()
    seconds = time.perf_counter() - started

    check = DecisionLog(url)
    try:
        written = check.count(Decision, run_id)
        if not keep_rows:
            with check.engine.begin() as conn:
                conn.execute(delete(Decision).where(Decision.run_id == run_id))  # type: ignore[arg-type]
                conn.execute(delete(Run).where(Run.id == run_id))  # type: ignore[arg-type]
    finally:
        check.close()
    if written != rows:
        raise SystemExit(f"bench_log: {mode} run wrote {written} of {rows} rows to {safe_url(url)}")
    rows_per_s = rows / seconds
    return {
        "db": "postgresql" if url.startswith("postgres") else "sqlite",
        "url": safe_url(url),
        "mode": mode,
        "rows": rows,
        "seconds": round(seconds, 4),
        "rows_per_s": round(rows_per_s, 1),
        "ticks_per_s": round(rows_per_s / len(agents), 3),
    }


def safe_url(url: str) -> str:
    return make_url(database_url(url)).render_as_string(hide_password=True)


def run_all(agents_count: int, ticks: int, extra_urls: list[str]) -> dict[str, Any]:
    agents = make_agents(agents_count)
    results = []
    with tempfile.TemporaryDirectory(prefix="ama-bench-log-") as tmp:
        # a fresh file per mode, so the second mode does not write into the first one's indexes
        for mode in ("background", "foreground"):
            results.append(measure(f"sqlite:///{Path(tmp) / f'{mode}.db'}", mode, agents, ticks, keep_rows=True))
    for url in extra_urls:
        for mode in ("background", "foreground"):
            results.append(measure(url, mode, agents, ticks, keep_rows=False))
    return {
        "agents": agents_count,
        "ticks": ticks,
        "rows": agents_count * ticks,
        "target_rows_per_s": TARGET_ROWS_PER_S,
        "results": results,
        "python": platform.python_version(),
        "sqlite_version": sqlite3.sqlite_version,
        "machine": platform.machine(),
    }


def print_table(report: dict[str, Any]) -> None:
    print(f"decision log: {report['agents']:,} agents x {report['ticks']:,} ticks = {report['rows']:,} rows per run")
    print(f"{'database':<12}{'mode':<12}{'rows/s':>12}{'ticks/s':>10}{'seconds':>10}")
    for r in report["results"]:
        print(f"{r['db']:<12}{r['mode']:<12}{r['rows_per_s']:>12,.0f}{r['ticks_per_s']:>10,.1f}{r['seconds']:>10.3f}")
    print(f"ticks/s: simulated seconds per wall second the log keeps up with at {report['agents']:,} agents")
    print(f"target: >= {TARGET_ROWS_PER_S:,} rows/s on SQLite")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench_log",
        description="Decision-log write throughput: N node agents log one action per tick through DecisionLog, background "
        "writer thread and foreground flushing, timed from the first record to close() (all rows durable).",
    )
    parser.add_argument("--agents", type=int, default=1000, help="node agents, each logging one action per tick (default 1000)")
    parser.add_argument("--ticks", type=int, default=100, help="simulated ticks of 1 s (default 100)")
    parser.add_argument(
        "--db",
        action="append",
        default=[],
        metavar="URL",
        help="also measure this database (repeatable), e.g. postgresql://user@127.0.0.1:5432/scratch; needs a running "
        "server; the rows written are deleted afterwards. A temporary SQLite file is always measured.",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    if args.agents < 1 or args.ticks < 1:
        parser.error("--agents and --ticks must be at least 1")
    try:
        report = run_all(args.agents, args.ticks, args.db)
    except AmaError as exc:
        print(f"bench_log: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
