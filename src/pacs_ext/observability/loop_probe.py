"""A probe of the two queues a request can wait in inside the server: the event loop (busy
with other requests' CPU work, or the process waiting for a core) and the database pool. It
wakes every 0.1 s, records how late it woke and how many connections are checked out
(pacs_event_loop_lag_seconds, pacs_db_pool_in_use); bench/load.py reads both."""

from __future__ import annotations

import asyncio
import contextlib
import time

from sqlalchemy.ext.asyncio import AsyncEngine

from ..core import metrics

PERIOD = 0.1


def start(engine: AsyncEngine) -> asyncio.Task[None]:
    return asyncio.create_task(_loop(engine), name="loop-probe")


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
