"""The bucket's high-water mark of ids: no id above it was ever handed out.

Before a transaction that inserted rows commits, `reserve()` checks their largest id against
the mark reserved so far; past it, a new mark (a block ahead, so this happens once per block)
is written to the bucket *before* the commit. So the bucket is always ahead of every id a
client could have seen, whatever is lost afterwards, and `reindex` moves every sequence past
it: an id is never handed out twice, not even after the database is rebuilt from the bucket.

The mark is also a row (`recovery_marks`), locked while its document is written: writers of
one table's mark are serialized, so the document only ever grows.

The row stays locked until the raising transaction commits, and every transaction whose ids
are past the mark waits for it: on a fresh database, 24-30 of 32 concurrent requests queued
behind the first one. So the mark is raised ahead of need, once half its block is used, by a
transaction that does not wait (SKIP LOCKED: if another one is raising it, its ids are still
covered), and at start-up (`raise_ahead`). Only ids past the mark itself wait, as before.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..models import RecoveryMark
from ..storage.base import ObjectStorage
from .keys import high_water_key
from .recovery_docs import high_water_document

log = structlog.get_logger(__name__)

# Ids reserved ahead of the largest one issued, per table: one bucket write per block. Audit
# rows come one per request that changes something or hands out URLs (a viewer showing a
# study makes one per mask it opens), so they get a block as large as the masks'.
BLOCKS = {"annotations": 1_000, "mask_groups": 1_000, "masks": 100_000, "audit_events": 100_000}
TABLES = tuple(BLOCKS)


def mark_name(table: str) -> str:
    return f"ids:{table}"


async def reserved(session: AsyncSession, table: str, *, lock: bool = False) -> int:
    stmt = select(RecoveryMark.value).where(RecoveryMark.name == mark_name(table))
    value = await session.scalar(stmt.with_for_update() if lock else stmt)
    return int(value or 0)


async def reserve(
    session: AsyncSession, storage: ObjectStorage, key_prefix: str, table: str, largest_id: int
) -> None:
    """Make sure the bucket's mark for `table` is at least `largest_id` (call before commit).
    Raises StorageError: the transaction must then not commit (its ids are not covered)."""
    mark = await reserved(session, table)
    block = BLOCKS[table]
    if largest_id <= mark - block // 2:
        return
    # Past half the block, still covered: raise it now, unless another transaction does.
    await set_mark(session, storage, key_prefix, table, largest_id + block, wait=largest_id > mark)


async def raise_ahead(
    new_session: Callable[[], AsyncSession], storage: ObjectStorage, key_prefix: str
) -> None:
    """At start-up: every table's mark half a block or more ahead of its ids, so the first
    requests (of a fresh database, say) do not all wait for one that raises it. Best effort:
    with the database or storage down, requests raise the marks they need themselves."""
    try:
        for table in TABLES:
            async with new_session() as session:
                largest = await largest_issued(session, table)
                await reserve(session, storage, key_prefix, table, largest)
                await session.commit()
    except Exception as exc:  # a start-up nicety, never a reason not to serve
        log.warning("high_water.not_raised", error=f"{type(exc).__name__}: {exc}"[:300])


async def largest_issued(session: AsyncSession, table: str) -> int:
    """The largest id the database ever handed out for `table` (its sequence, which deleted
    rows do not lower), for the janitor's check that the bucket's mark covers it."""
    dialect = (await session.connection()).dialect.name
    if dialect == "postgresql":
        value = await session.scalar(
            text(
                "SELECT COALESCE(pg_sequence_last_value("
                "pg_get_serial_sequence(:t, 'id')::regclass), 0)"
            ),
            {"t": table},
        )
    else:
        value = await session.scalar(
            text("SELECT seq FROM sqlite_sequence WHERE name = :t"), {"t": table}
        )
    largest = await session.scalar(text(f"SELECT COALESCE(MAX(id), 0) FROM {table}"))  # noqa: S608 - fixed names
    return max(int(value or 0), int(largest or 0))


async def set_mark(
    session: AsyncSession,
    storage: ObjectStorage,
    key_prefix: str,
    table: str,
    value: int,
    *,
    wait: bool = True,
) -> int:
    """Raise the mark to `value` (never lower it), bucket first; returns the mark. With
    `wait=False`, a mark another transaction holds locked is left to it (returns 0)."""
    name = mark_name(table)
    if (await session.connection()).dialect.name == "sqlite":
        # A write first takes SQLite's write lock, so no other writer reads the old mark.
        await session.execute(
            update(RecoveryMark).where(RecoveryMark.name == name).values(value=RecoveryMark.value)
        )
    current = await session.scalar(
        select(RecoveryMark).where(RecoveryMark.name == name).with_for_update(skip_locked=not wait)
    )
    if current is None and not wait:
        return 0  # locked by a transaction raising it (the row exists: it was read)
    if current is not None and current.value >= value:
        return int(current.value)
    await storage.put_bytes(
        high_water_key(key_prefix, table), high_water_document(table, value), "application/json"
    )
    if current is None:
        session.add(RecoveryMark(name=name, value=value))
    else:
        current.value = value
    await session.flush()
    return value
