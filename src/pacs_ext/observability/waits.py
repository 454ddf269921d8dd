"""Where a request waits inside the server, for /metrics: the event loop (busy with other
requests' CPU work, or the process waiting for a core), the database pool, and the database
server itself. A probe task wakes every 0.1 s and records how late it woke and how many
connections are checked out (pacs_event_loop_lag_seconds, pacs_db_pool_in_use); engine
events time each SQL statement (pacs_db_statement_duration_seconds), each wait for a pooled
connection (core/db.py, pacs_db_pool_wait_seconds) and how long each is held. bench/load.py prints
them next to the storage operations' own latencies."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from ..core import metrics
from ..core.db import TimedPool

PERIOD = 0.1


def start(engine: AsyncEngine) -> asyncio.Task[None]:
    TimedPool.record_wait = metrics.DB_POOL_WAIT.observe
    _time_statements(engine)
    return asyncio.create_task(_loop(engine), name="wait-probe")


_VERBS = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "WITH"})


def _time_statements(engine: AsyncEngine) -> None:
    """pacs_db_statement_duration_seconds for every statement: the time a request's database
    work waits on the database server (locks, a busy machine). COMMITs are not cursor
    executions and are not in it."""
    sync = engine.sync_engine

    def before(conn: Any, *_: Any) -> None:
        conn.info["pacs_t0"] = time.perf_counter()

    def after(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        t0 = conn.info.pop("pacs_t0", None)
        if t0 is not None:
            verb = statement.lstrip()[:6].split(" ", 1)[0].upper()
            verb = verb if verb in _VERBS else "other"
            metrics.DB_STATEMENT_DURATION.labels(statement=verb).observe(time.perf_counter() - t0)

    event.listen(sync, "before_cursor_execute", before)
    event.listen(sync, "after_cursor_execute", after)

    # How long each connection stays out of the pool (pacs_db_connection_held_seconds): a
    # request holding one across a slow call (storage, say) starves the others.
    def checkout(_dbapi: Any, record: Any, _proxy: Any) -> None:
        record.info["pacs_out"] = time.perf_counter()

    def checkin(_dbapi: Any, record: Any) -> None:
        t0 = record.info.pop("pacs_out", None) if record is not None else None
        if t0 is not None:
            metrics.DB_CONNECTION_HELD.observe(time.perf_counter() - t0)

    event.listen(sync, "checkout", checkout)
    event.listen(sync, "checkin", checkin)


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _loop(engine: AsyncEngine) -> None:
    pool = engine.sync_engine.pool
    in_use = getattr(pool, "checkedout", None)  # SQLite's pool has no such count
    while True:
        t0 = time.perf_counter()
        await asyncio.sleep(PERIOD)
        metrics.EVENT_LOOP_LAG.observe(max(0.0, time.perf_counter() - t0 - PERIOD))
        if in_use is not None:
            metrics.DB_POOL_IN_USE.observe(in_use())
