"""SQL for annotations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from ..core.auth import Principal
from ..models import Annotation
from .schemas import AnnotationFilters


async def get(session: AsyncSession, annotation_id: int) -> Annotation | None:
    return await session.get(Annotation, annotation_id)


def _readable_by(principal: Principal) -> ColumnElement[bool]:
    if principal.is_admin:
        return true()
    # The SQL form of auth.can_read: keep the two in step.
    readable = [Annotation.owner == principal.subject, Annotation.is_shared.is_(True)]
    if principal.projects:
        readable.append(Annotation.project_id.in_(sorted(principal.projects)))
    return or_(*readable)


def _filtered(principal: Principal, filters: AnnotationFilters) -> Select[Any]:
    stmt = select(Annotation).where(_readable_by(principal))
    if filters.study_instance_uid:
        stmt = stmt.where(Annotation.study_instance_uid == filters.study_instance_uid)
    if filters.series_instance_uid:
        stmt = stmt.where(Annotation.series_instance_uid == filters.series_instance_uid)
    if filters.viewer_software:
        stmt = stmt.where(Annotation.viewer_software == filters.viewer_software)
    if filters.project_id:
        stmt = stmt.where(Annotation.project_id == filters.project_id)
    return stmt


async def list_readable(
    session: AsyncSession,
    principal: Principal,
    filters: AnnotationFilters,
    limit: int,
    offset: int,
) -> tuple[Sequence[Annotation], int]:
    stmt = _filtered(principal, filters)
    total = await session.scalar(select(func.count()).select_from(stmt.subquery()))
    rows = await session.scalars(stmt.order_by(Annotation.id).limit(limit).offset(offset))
    return rows.all(), int(total or 0)


async def delete_by_id(session: AsyncSession, annotation_id: int) -> None:
    await session.execute(delete(Annotation).where(Annotation.id == annotation_id))
