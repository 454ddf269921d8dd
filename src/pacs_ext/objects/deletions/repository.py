"""SQL for pending object deletions."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ...models import PendingDeletion
from ...models.base import utcnow


async def add(
    session: AsyncSession,
    *,
    resource: str,
    requested_by: str,
    reason: str,
    prefix: str | None = None,
    keys: list[str] | None = None,
) -> PendingDeletion:
    row = PendingDeletion(
        resource=resource,
        requested_by=requested_by,
        reason=reason,
        prefix=prefix,
        keys=keys,
        attempts=0,
    )
    session.add(row)
    await session.flush()
    return row


async def for_resource(session: AsyncSession, resource: str) -> Sequence[PendingDeletion]:
    rows = await session.scalars(
        select(PendingDeletion)
        .where(PendingDeletion.resource == resource)
        .order_by(PendingDeletion.id)
    )
    return rows.all()


async def after(session: AsyncSession, after_id: int, limit: int) -> Sequence[PendingDeletion]:
    rows = await session.scalars(
        select(PendingDeletion)
        .where(PendingDeletion.id > after_id)
        .order_by(PendingDeletion.id)
        .limit(limit)
    )
    return rows.all()


async def count(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(PendingDeletion)) or 0)


async def remove(session: AsyncSession, deletion_id: int) -> None:
    await session.execute(delete(PendingDeletion).where(PendingDeletion.id == deletion_id))


async def mark_failed(session: AsyncSession, ids: Sequence[int], error: str) -> None:
    if ids:
        await session.execute(
            update(PendingDeletion)
            .where(PendingDeletion.id.in_(ids))
            .values(
                attempts=PendingDeletion.attempts + 1,
                last_error=error[:2000],
                last_attempt_at=utcnow(),
            )
            .execution_options(synchronize_session=False)
        )
