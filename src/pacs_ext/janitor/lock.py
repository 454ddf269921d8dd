"""At most one janitor run at a time, across server workers, servers and cron runs."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import AsyncIterator
from pathlib import Path

import anyio.to_thread
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

# pg_advisory_lock key: any fixed 64-bit number unique to this application's use.
ADVISORY_KEY = 0x7061637365787400  # "pacsext\0"


@contextlib.asynccontextmanager
async def single_run(engine: AsyncEngine, data_dir: Path) -> AsyncIterator[bool]:
    """Yield True when this process may run the janitor, False when another run holds it."""
    if engine.dialect.name == "postgresql":
        # Session-level lock on a connection held for the run; it is released when the
        # connection closes, so a crashed run never blocks the next one.
        async with engine.connect() as conn:
            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
            got = bool(
                await auto.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_KEY})
            )
            try:
                yield got
            finally:
                if got:
                    with contextlib.suppress(Exception):
                        await auto.execute(
                            text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_KEY}
                        )
        return
    # SQLite lives on one machine: a file lock next to it is enough.
    fd = await anyio.to_thread.run_sync(_open_lock_file, data_dir)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _open_lock_file(data_dir: Path) -> int:
    data_dir.mkdir(parents=True, exist_ok=True)
    return os.open(data_dir / ".janitor.lock", os.O_RDWR | os.O_CREAT, 0o600)
