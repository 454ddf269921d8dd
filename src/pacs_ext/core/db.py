"""Engine and sessionmaker; one session per request, committed or rolled back by its owner."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, ClassVar

import asyncpg  # type: ignore[import-untyped]  # no type information
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect, ExceptionContext, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry

from .config import Settings
from .private_files import private_dirs


class NoAnswer(TimeoutError):
    """The database did not answer in time; the message names the setting."""


class _Connection(asyncpg.Connection):  # type: ignore[misc]  # untyped base
    """asyncpg raises a bare TimeoutError when `command_timeout` passes. SQLAlchemy's pool
    check (pre-ping) and BEGIN run through `fetchrow` and `execute` and understand only driver
    errors: there the timeout closes the connection and says so, so the pool replaces it."""

    async def execute(self, query: str, *args: Any, **kwargs: Any) -> str:
        try:
            status: str = await super().execute(query, *args, **kwargs)
            return status
        except TimeoutError:
            reason = self._no_answer()
        raise asyncpg.InterfaceError(f"connection is closed: {reason}") from reason

    async def fetchrow(self, query: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().fetchrow(query, *args, **kwargs)
        except TimeoutError:
            reason = self._no_answer()
        raise asyncpg.InterfaceError(f"connection is closed: {reason}") from reason

    def _no_answer(self) -> NoAnswer:
        self.terminate()  # what it was doing is unknown: never use it again
        timeout = self._config.command_timeout
        return NoAnswer(f"no answer within {timeout:g} s (database.statement_timeout_seconds)")


class TimedPool(AsyncAdaptedQueuePool):
    """The async engine's default pool, timing each checkout (pacs_db_pool_wait_seconds): the
    part of a request's time spent queueing for a connection, which the pool's use alone
    does not tell. The server sets `record_wait` (observability/waits.py): this module does
    not import the metrics, as that creates Prometheus value files, which a command-line
    process run with PROMETHEUS_MULTIPROC_DIR must not (its folder may not exist yet)."""

    record_wait: ClassVar[Callable[[float], None] | None] = None

    def _do_get(self) -> ConnectionPoolEntry:
        record = TimedPool.record_wait
        if record is None:
            return super()._do_get()
        t0 = time.perf_counter()
        try:
            return super()._do_get()
        finally:
            record(time.perf_counter() - t0)


def create_engine(settings: Settings, *, statement_timeout: bool = True) -> AsyncEngine:
    """The engine; `statement_timeout=False` for migrations, whose statements may be long."""
    url = settings.database_url()
    db = settings.database
    kwargs: dict[str, Any] = {"echo": db.echo, "pool_timeout": db.pool_timeout_seconds}
    if url.startswith("sqlite"):
        _private_sqlite_file(settings, url)
        kwargs["connect_args"] = {"timeout": db.statement_timeout_seconds}
    else:
        # pre_ping: a connection dropped by the server is replaced, not handed to a request.
        kwargs.update(
            poolclass=TimedPool, pool_size=db.pool_size, max_overflow=10, pool_pre_ping=True
        )
        connect_args: dict[str, Any] = {"timeout": db.connect_timeout_seconds}
        if statement_timeout:
            connect_args["command_timeout"] = db.statement_timeout_seconds
            connect_args["connection_class"] = _Connection
        kwargs["connect_args"] = connect_args
    engine = create_async_engine(url, **kwargs)
    if url.startswith("sqlite"):
        busy_ms = int(db.statement_timeout_seconds * 1000)
        event.listen(engine.sync_engine, "connect", lambda c, r: _sqlite_pragmas(c, busy_ms))
    else:
        event.listen(
            engine.sync_engine, "do_connect", _connect_or_say_why(db.connect_timeout_seconds)
        )
        event.listen(
            engine.sync_engine, "handle_error", _statement_timed_out(db.statement_timeout_seconds)
        )
    return engine


def _connect_or_say_why(
    timeout: float,
) -> Callable[[Dialect, ConnectionPoolEntry, list[Any], dict[str, Any]], Any]:
    """A connection that cannot be made (asyncpg reports a bare TimeoutError or OSError, or a
    plain Error for a refusal) becomes the driver's OperationalError with the reason, which
    callers treat as "database unavailable"."""

    def connect(
        dialect: Dialect, _record: ConnectionPoolEntry, cargs: list[Any], cparams: dict[str, Any]
    ) -> Any:
        errors = dialect.loaded_dbapi
        try:
            return dialect.connect(*cargs, **cparams)
        except TimeoutError as exc:
            reason = NoAnswer(f"no answer within {timeout:g} s (database.connect_timeout_seconds)")
            raise errors.OperationalError(str(reason), exc) from reason
        except OSError as exc:
            raise errors.OperationalError(str(exc) or type(exc).__name__, exc) from exc
        except errors.OperationalError:
            raise
        except errors.Error as exc:
            # The server refused the connection ("too many clients already", "the database
            # system is starting up", a database's CONNECTION LIMIT): the driver reports it
            # as a plain Error, which would be a 500; it is the database being unavailable.
            refused = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
            raise errors.OperationalError(str(refused) or type(refused).__name__, refused) from exc

    return connect


def _statement_timed_out(timeout: float) -> Callable[[ExceptionContext], BaseException | None]:
    def handle(ctx: ExceptionContext) -> BaseException | None:
        if not isinstance(ctx.original_exception, TimeoutError) or ctx.sqlalchemy_exception:
            return None
        # The connection's protocol state is unknown after a timeout: never hand it out again.
        ctx.is_disconnect = True
        ctx.invalidate_pool_on_disconnect = False
        reason = NoAnswer(f"no answer within {timeout:g} s (database.statement_timeout_seconds)")
        return sa_exc.OperationalError(
            ctx.statement, ctx.parameters, reason, connection_invalidated=True
        )

    return handle


def no_answer(exc: BaseException) -> NoAnswer | None:
    """The NoAnswer behind a database error (its `orig` or cause), if one of ours timed out."""
    pending: list[BaseException] = [exc]
    for _ in range(8):
        if not pending:
            break
        current = pending.pop(0)
        if isinstance(current, NoAnswer):
            return current
        for behind in (getattr(current, "orig", None), current.__cause__):
            if isinstance(behind, BaseException):
                pending.append(behind)
    return None


def database_error_reason(exc: BaseException) -> str:
    """One line saying why the database could not be used (for messages and logs)."""
    timed_out = no_answer(exc)
    if timed_out is not None:
        return str(timed_out)
    orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else ""
    return text or type(orig).__name__


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


def _sqlite_pragmas(dbapi_conn: Any, busy_ms: int) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA busy_timeout={busy_ms:d}")
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
