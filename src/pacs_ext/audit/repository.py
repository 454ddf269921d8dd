"""SQL for the audit trail."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import ColumnElement, Select, Table, exists, func, insert, or_, select, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import undefer

from ..models import AuditEvent, AuditExportQueue
from .schemas import AuditFilters

_TABLE = cast(Table, AuditEvent.__table__)


async def insert_event(session: AsyncSession, row: Mapping[str, object]) -> int:
    """The row and its place in the export queue (objects/audit_export.py); returns its id."""
    inserted = await session.execute(insert(_TABLE).values(**row).returning(_TABLE.c.id))
    event_id = int(inserted.scalar_one())
    await session.execute(insert(AuditExportQueue).values(id=event_id))
    return event_id


async def get_event(session: AsyncSession, event_id: int) -> AuditEvent | None:
    stmt = select(AuditEvent).where(AuditEvent.id == event_id)
    return await session.scalar(stmt.options(undefer(AuditEvent.object_keys)))


def _reaches(key: str, dialect: str) -> ColumnElement[bool]:
    """The event names this object: its object_key, or one of its object_keys."""
    if dialect == "postgresql":
        # JSONB containment, served by the GIN index of 0007_audit_batches.
        listed = type_coerce(AuditEvent.object_keys, JSONB).contains([key])
    else:
        each = func.json_each(AuditEvent.object_keys).table_valued("value")
        listed = exists().select_from(each).where(each.c.value == key)
    return or_(AuditEvent.object_key == key, listed)


def _filtered(filters: AuditFilters, dialect: str) -> Select[Any]:
    stmt = select(AuditEvent)
    if filters.subject is not None:
        stmt = stmt.where(AuditEvent.subject == filters.subject)
    if filters.action is not None:
        stmt = stmt.where(AuditEvent.action == filters.action.value)
    if filters.annotation_id is not None:
        stmt = stmt.where(AuditEvent.annotation_id == filters.annotation_id)
    if filters.group_id is not None:
        stmt = stmt.where(AuditEvent.group_id == filters.group_id)
    if filters.object_key is not None:
        stmt = stmt.where(_reaches(filters.object_key, dialect))
    if filters.since is not None:
        stmt = stmt.where(AuditEvent.created_at >= filters.since)
    if filters.until is not None:
        stmt = stmt.where(AuditEvent.created_at < filters.until)
    return stmt


async def list_events(
    session: AsyncSession, filters: AuditFilters, limit: int, offset: int
) -> tuple[Sequence[AuditEvent], int]:
    stmt = _filtered(filters, session.get_bind().dialect.name)
    total = await session.scalar(select(func.count()).select_from(stmt.subquery()))
    rows = await session.scalars(stmt.order_by(AuditEvent.id.desc()).limit(limit).offset(offset))
    return rows.all(), int(total or 0)
