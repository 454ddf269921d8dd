"""SQL of seg_exports."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..models import Mask, SegExport
from ..models.base import utcnow
from ..models.seg_export import FAILED, QUEUED, RUNNING

# An export that has not moved for this long was cut off by a server stop (a running one
# writes its row at least every HEARTBEAT seconds, runner.py).
STALE_AFTER = timedelta(minutes=5)
STALE_ERROR = (
    f"interrupted: no progress for {int(STALE_AFTER.total_seconds())} s (the server "
    "stopped during the export); start it again"
)


async def get(session: AsyncSession, group_id: int, export_id: int) -> SegExport | None:
    return await session.scalar(
        select(SegExport).where(SegExport.id == export_id, SegExport.group_id == group_id)
    )


async def list_for_group(
    session: AsyncSession, group_id: int, limit: int, offset: int
) -> tuple[Sequence[SegExport], int]:
    rows = await session.scalars(
        select(SegExport)
        .where(SegExport.group_id == group_id)
        .order_by(SegExport.id.desc())
        .limit(limit)
        .offset(offset)
    )
    total = await session.scalar(
        select(func.count()).select_from(SegExport).where(SegExport.group_id == group_id)
    )
    return rows.all(), int(total or 0)


async def set_fields(session: AsyncSession, export_id: int, **values: Any) -> None:
    await session.execute(
        update(SegExport)
        .where(SegExport.id == export_id)
        .values(updated_at=utcnow(), **values)
        .execution_options(synchronize_session=False)
    )


async def masks_of(session: AsyncSession, group_id: int) -> Sequence[Mask]:
    rows = await session.scalars(select(Mask).where(Mask.group_id == group_id).order_by(Mask.id))
    return rows.all()


async def fail_stale(session: AsyncSession) -> int:
    """Mark exports that stopped moving failed, with the reason; how many were."""
    now = utcnow()
    result = await session.execute(
        update(SegExport)
        .where(SegExport.status.in_((QUEUED, RUNNING)), SegExport.updated_at < now - STALE_AFTER)
        .values(status=FAILED, error=STALE_ERROR, finished_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
