"""SQL for the audit trail."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Select, Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..models import AuditEvent
from .schemas import AuditFilters

_TABLE = cast(Table, AuditEvent.__table__)


async def insert_event(session: AsyncSession, row: Mapping[str, object]) -> None:
    await session.execute(insert(_TABLE).values(**row))


def _filtered(filters: AuditFilters) -> Select[Any]:
    stmt = select(AuditEvent)
    if filters.subject is not None:
        stmt = stmt.where(AuditEvent.subject == filters.subject)
    if filters.action is not None:
        stmt = stmt.where(AuditEvent.action == filters.action.value)
    if filters.annotation_id is not None:
        stmt = stmt.where(AuditEvent.annotation_id == filters.annotation_id)
    if filters.group_id is not None:
        stmt = stmt.where(AuditEvent.group_id == filters.group_id)
    if filters.since is not None:
        stmt = stmt.where(AuditEvent.created_at >= filters.since)
    if filters.until is not None:
        stmt = stmt.where(AuditEvent.created_at < filters.until)
    return stmt


async def list_events(
    session: AsyncSession, filters: AuditFilters, limit: int, offset: int
) -> tuple[Sequence[AuditEvent], int]:
    stmt = _filtered(filters)
    total = await session.scalar(select(func.count()).select_from(stmt.subquery()))
    rows = await session.scalars(stmt.order_by(AuditEvent.id.desc()).limit(limit).offset(offset))
    return rows.all(), int(total or 0)
