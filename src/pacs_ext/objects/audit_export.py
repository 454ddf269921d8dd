"""Audit rows exported to the bucket in batches of JSON lines, so that `reindex` brings the
trail back when the database and its backups are gone.

Rows are exported in id order once they are `settle_seconds` old: a row is written in its
action's transaction, and waiting lets transactions that took a lower id commit first (a row
committed after a higher id was exported would otherwise be skipped for good). The last id
exported is kept in `recovery_marks`, advanced in the transaction after the batch is stored;
a run that dies between the two writes the same batch again, under the same key.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import undefer

from ..models import AuditEvent, RecoveryMark
from ..storage.base import ObjectStorage
from .keys import audit_batch_key
from .recovery_docs import json_lines

EXPORTED = "audit:exported"
BATCH = 10_000


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
            after = int(
                await session.scalar(
                    select(RecoveryMark.value).where(RecoveryMark.name == EXPORTED)
                )
                or 0
            )
            rows = list(
                await session.scalars(
                    select(AuditEvent)
                    .where(AuditEvent.id > after, AuditEvent.created_at < settled)
                    .order_by(AuditEvent.id)
                    .limit(batch)
                    # A batch row's keys are deferred in lists; the export carries them all.
                    .options(undefer(AuditEvent.object_keys))
                )
            )
            if not rows:
                return total
            first, last = rows[0].id, rows[-1].id
            await storage.put_bytes(
                audit_batch_key(key_prefix, first, last),
                json_lines(list(rows)),
                "application/x-ndjson",
            )
            # Only forward: a concurrent run that got further is not undone.
            await session.execute(
                update(RecoveryMark)
                .where(RecoveryMark.name == EXPORTED, RecoveryMark.value < last)
                .values(value=last)
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
        after = await session.scalar(
            select(RecoveryMark.value).where(RecoveryMark.name == EXPORTED)
        )
        count = await session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.id > int(after or 0), AuditEvent.created_at < settled)
        )
        return int(count or 0)
