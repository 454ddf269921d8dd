"""Engine and sessionmaker; one session per request, committed or rolled back by its owner."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from .config import Settings
from .private_files import private_dirs


def create_engine(settings: Settings) -> AsyncEngine:
    url = settings.database_url()
    kwargs: dict[str, Any] = {"echo": settings.database.echo}
    if url.startswith("sqlite"):
        _private_sqlite_file(settings, url)
        kwargs["connect_args"] = {"timeout": 30}
    else:
        # pre_ping: a connection dropped by the server is replaced, not handed to a request.
        kwargs.update(pool_size=settings.database.pool_size, max_overflow=10, pool_pre_ping=True)
    engine = create_async_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _private_sqlite_file(settings: Settings, url: str) -> None:
    """The database file (and so its -wal and -shm files, which SQLite creates with the same
    mode) readable by the server's user only: it holds patient-related data."""
    private_dirs(settings.server.data_dir)
    path = make_url(url).database
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    db = Path(path)
    if db.exists():
        os.chmod(db, 0o600)
    else:
        private_dirs(db.parent)
        os.close(os.open(db, os.O_WRONLY | os.O_CREAT, 0o600))


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def session_scope(maker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with maker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
