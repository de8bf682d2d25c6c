"""The manager's checkpointers, as ``manager.graph.checkpointer`` configures them (SQLite in WAL mode; PostgreSQL over
one autocommit connection), through LangGraph's own conformance suite (``langgraph-checkpoint-conformance``).

The suite drives a saver's async methods; the manager runs the synchronous savers, so a thin adapter forwards each
async method to the synchronous one it stands for (nothing else) and reports as capabilities exactly the methods the
synchronous saver implements. Every capability the saver has must pass; none may be skipped for convenience."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES

from manager.graph import checkpointer
from tests.tools.conftest import PostgresDatabase


class AsyncFacade(BaseCheckpointSaver):
    """The suite's async calls, answered by the synchronous saver the manager uses."""

    def __init__(self, saver: BaseCheckpointSaver) -> None:
        super().__init__(serde=saver.serde)
        self.saver = saver

    async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        return self.saver.put(config, checkpoint, metadata, new_versions)

    async def aput_writes(self, config: Any, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = "") -> None:
        self.saver.put_writes(config, writes, task_id, task_path)

    async def aget_tuple(self, config: Any) -> Any:
        return self.saver.get_tuple(config)

    async def alist(self, config: Any, *, filter: Any = None, before: Any = None, limit: int | None = None) -> AsyncIterator[Any]:
        for item in self.saver.list(config, filter=filter, before=before, limit=limit):
            yield item

    async def adelete_thread(self, thread_id: str) -> None:
        self.saver.delete_thread(thread_id)

    async def adelete_for_runs(self, run_ids: Any) -> None:
        self.saver.delete_for_runs(run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self.saver.copy_thread(source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Any, *, strategy: str = "keep_latest") -> None:
        self.saver.prune(thread_ids, strategy=strategy)

    def get_next_version(self, current: Any, channel: Any) -> Any:
        return self.saver.get_next_version(current, channel)


def unimplemented(saver: BaseCheckpointSaver) -> set[str]:
    """Capabilities (named as their synchronous methods) whose synchronous method the saver leaves to BaseCheckpointSaver (which raises)."""
    base = BaseCheckpointSaver
    return {cap.value for cap in ALL_CAPABILITIES if getattr(type(saver), cap.value) is getattr(base, cap.value)}


def conform(target: str | Path) -> tuple[dict[str, Any], set[str]]:
    probe = checkpointer(target)
    skipped = unimplemented(probe)
    probe.conn.close()

    async def factory() -> Any:
        saver = checkpointer(target)
        try:
            yield AsyncFacade(saver)
        finally:
            saver.conn.close()

    registered = checkpointer_test(name=type(probe).__name__, skip_capabilities=skipped)(factory)
    report = asyncio.run(validate(registered))
    return {name: result for name, result in report.results.items()}, skipped


def assert_conforms(results: dict[str, Any], skipped: set[str]) -> None:
    failures = {name: r.failures for name, r in results.items() if r.passed is False}
    assert not failures, failures
    ran = {name for name, r in results.items() if r.passed}
    assert {"put", "put_writes", "get_tuple", "list", "delete_thread"} <= ran  # the base capabilities, all run
    assert ran | skipped == {cap.value for cap in ALL_CAPABILITIES}


def test_the_sqlite_checkpointer_conforms(tmp_path: Path) -> None:
    results, skipped = conform(tmp_path / "checkpoints.db")
    assert_conforms(results, skipped)


def test_the_postgres_checkpointer_conforms(postgres_db: PostgresDatabase) -> None:
    results, skipped = conform(postgres_db.url)
    assert_conforms(results, skipped)
