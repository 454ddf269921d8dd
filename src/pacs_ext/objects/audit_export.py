"""Audit rows exported to the bucket in batches of JSON lines, so that `reindex` brings the
trail back when the database and its backups are gone.

Which rows are still to go is a queue (`audit_export_queue`): a row's id is queued in the
row's own transaction and removed in the transaction after its batch is stored. There is no
cursor to move past a row: on PostgreSQL ids are taken at insert and transactions commit in
any order, so a row with a lower id can become visible after a higher one was exported, and
it is exported by the next run all the same. Rows wait `settle_seconds` (fewer, larger
batches); a run that dies between storing a batch and emptying its queue rows stores them
again (the same rows and any that joined them: a batch key is only ever rewritten with more
rows), and `reindex` takes each id once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import undefer

from ..models import AuditEvent, AuditExportQueue
from ..storage.base import ObjectStorage
from .keys import audit_batch_key
from .recovery_docs import json_lines

BATCH = 10_000
DELETE_CHUNK = 900  # bound parameters per statement (older SQLite allow 999)


async def export(
    maker: async_sessionmaker[AsyncSession],
    storage: ObjectStorage,
    key_prefix: str,
    now: datetime,
    *,
    settle_seconds: int,
    batch: int = BATCH,
) -> int:
    """Export every settled row not exported yet; returns how many. Raises StorageError."""
    settled = now - timedelta(seconds=settle_seconds)
    total = 0
    while True:
        async with maker() as session:
            rows = list(
                await session.scalars(
                    select(AuditEvent)
                    .join(AuditExportQueue, AuditExportQueue.id == AuditEvent.id)
                    .where(AuditEvent.created_at < settled)
                    .order_by(AuditEvent.id)
                    .limit(batch)
                    # A batch row's keys are deferred in lists; the export carries them all.
                    .options(undefer(AuditEvent.object_keys))
                )
            )
            if not rows:
                return total
            await storage.put_bytes(
                audit_batch_key(key_prefix, rows[0].id, rows[-1].id),
                json_lines(list(rows)),
                "application/x-ndjson",
            )
            # Exactly the rows stored: one queued meanwhile inside the batch's range is not.
            ids = [r.id for r in rows]
            for i in range(0, len(ids), DELETE_CHUNK):
                chunk = ids[i : i + DELETE_CHUNK]
                await session.execute(
                    delete(AuditExportQueue).where(AuditExportQueue.id.in_(chunk))
                )
            await session.commit()
            total += len(rows)
            if len(rows) < batch:
                return total


async def waiting(
    maker: async_sessionmaker[AsyncSession], now: datetime, *, settle_seconds: int
) -> int:
    """Settled rows not exported yet (what a run would export)."""
    settled = now - timedelta(seconds=settle_seconds)
    async with maker() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(AuditExportQueue)
            .join(AuditEvent, AuditEvent.id == AuditExportQueue.id)
            .where(AuditEvent.created_at < settled)
        )
        return int(count or 0)
