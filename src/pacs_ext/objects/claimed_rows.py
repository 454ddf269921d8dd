"""Claims on outbox rows (metadata_outbox, recovery_outbox): how a writer makes a document
from committed state without holding a lock or a connection across its storage PUT.

A writer claims the row (`claimed_by`, `claimed_at`, committed) and reads committed state in
one short transaction, PUTs holding nothing, then removes the row only if its token did not
move (a change committed meanwhile moves it, and the writer writes the newer state). Another
process's claim is waited for, or taken over once its lease has passed (its writer died).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar, cast

import structlog
from sqlalchemy import ColumnElement, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..models import MetadataOutbox, RecoveryOutbox
from ..models.base import utcnow

log = structlog.get_logger(__name__)

T = TypeVar("T")
SessionFactory = Callable[[], AsyncSession]
Outbox = type[MetadataOutbox] | type[RecoveryOutbox]
Where = tuple[ColumnElement[bool], ...]

# A claim older than this is abandoned (its writer died); a writer's PUT is cut off well
# before it, so two writers of one row never overlap.
LEASE_SECONDS = 120.0
PUT_TIMEOUT_SECONDS = LEASE_SECONDS / 2
# How long a request waits for another process's claim (it writes the newer state too, as
# its token moved) before leaving the write to it; the janitor does not wait.
WAIT_SECONDS = 10.0
POLL_SECONDS = 0.05


class ClaimedElsewhere(Exception):
    """Another writer (another process) holds the outbox row: it writes the newest state, or
    its claim ends with its lease."""


def take_claim(row: MetadataOutbox | RecoveryOutbox, claim: str) -> bool:
    """Claim an outbox row locked for this transaction, unless another writer's claim is
    still within its lease (False)."""
    now = utcnow()
    if (
        row.claimed_by is not None
        and row.claimed_at is not None
        and row.claimed_at > now - timedelta(seconds=LEASE_SECONDS)
    ):
        return False
    row.claimed_by, row.claimed_at = claim, now
    return True


async def claim_row(
    new_session: SessionFactory,
    model: Outbox,
    where: Where,
    claim: str,
    read: Callable[[AsyncSession], Awaitable[T]],
    *,
    wait_seconds: float,
    busy: str,
    lock_first: Callable[[AsyncSession], Awaitable[Any]] | None = None,
) -> tuple[str, T] | None:
    """Claim the row and `read` committed state, in one short transaction: (the row's token,
    what `read` returned); None when no row asks for a write. `lock_first` takes rows that
    writers of the state lock before the outbox row, in that order. Raises ClaimedElsewhere
    (`busy`) when another writer still holds the row after `wait_seconds`."""
    deadline = time.monotonic() + wait_seconds
    while True:
        async with new_session() as session:
            if (await session.connection()).dialect.name == "sqlite":
                # A write first: it takes SQLite's write lock (even when no row matches),
                # which other writers (other processes too) wait for.
                await session.execute(update(model).where(*where).values(token=model.token))
            if lock_first is not None:
                await lock_first(session)
            row = cast(
                "MetadataOutbox | RecoveryOutbox | None",
                await session.scalar(select(model).where(*where).with_for_update()),
            )
            if row is None:
                await session.rollback()
                return None
            if take_claim(row, claim):
                token = row.token
                # Read after the row is ours: a change committed from now on moves the token.
                result = await read(session)
                await session.commit()
                return token, result
            await session.rollback()
        if time.monotonic() >= deadline:
            raise ClaimedElsewhere(busy)
        await asyncio.sleep(POLL_SECONDS)


async def remove_if_unmoved(
    session: AsyncSession, model: Outbox, where: Where, token: str, claim: str
) -> bool:
    """The row removed if it still carries our token and claim (True); else our claim given
    back, for the newer state to be written. The caller commits."""
    removed = await session.execute(
        delete(model).where(*where, model.token == token, model.claimed_by == claim)
    )
    done: bool = removed.rowcount == 1  # type: ignore[attr-defined]  # a DML result
    if not done:
        await release(session, model, where, claim)
    return done


async def release(session: AsyncSession, model: Outbox, where: Where, claim: str) -> None:
    await session.execute(
        update(model)
        .where(*where, model.claimed_by == claim)
        .values(claimed_by=None, claimed_at=None)
    )


async def release_quietly(
    new_session: SessionFactory, model: Outbox, where: Where, claim: str
) -> None:
    """After a failed write: the row stays requested, free for a retry (else its lease ends)."""
    try:
        async with new_session() as session:
            await release(session, model, where, claim)
            await session.commit()
    except Exception as exc:  # the write's own error is the one to report
        log.warning("outbox.unclaim_failed", table=model.__tablename__, error=type(exc).__name__)
