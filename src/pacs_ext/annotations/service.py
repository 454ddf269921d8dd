"""Annotation rules: who may read and change what; deletes remove stored objects first."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from ..auth import Principal, can_read, require_write
from ..exceptions import Forbidden, NotFound
from ..models import Annotation
from ..storage.base import ObjectStorage
from ..storage.errors import translate_storage_errors
from . import repository
from .schemas import AnnotationCreate, AnnotationFilters, AnnotationUpdate


async def create(session: AsyncSession, principal: Principal, body: AnnotationCreate) -> Annotation:
    annotation = Annotation(owner=principal.subject, **body.model_dump())
    session.add(annotation)
    await session.flush()
    return annotation


async def get_readable(
    session: AsyncSession, principal: Principal, annotation_id: int
) -> Annotation:
    annotation = await repository.get(session, annotation_id)
    if annotation is None:
        raise NotFound(f"annotation {annotation_id} not found")
    if not can_read(principal, annotation.owner, annotation.is_shared):
        raise Forbidden(f"annotation {annotation_id} belongs to another user and is not shared")
    return annotation


async def get_writable(
    session: AsyncSession, principal: Principal, annotation_id: int
) -> Annotation:
    annotation = await get_readable(session, principal, annotation_id)
    require_write(principal, annotation.owner)
    return annotation


async def list_(
    session: AsyncSession,
    principal: Principal,
    filters: AnnotationFilters,
    limit: int,
    offset: int,
) -> tuple[Sequence[Annotation], int]:
    return await repository.list_readable(session, principal, filters, limit, offset)


async def update(
    session: AsyncSession, principal: Principal, annotation_id: int, body: AnnotationUpdate
) -> Annotation:
    annotation = await get_writable(session, principal, annotation_id)
    for field, value in body.model_dump(exclude_unset=True).items():
        if value is None and field in (
            "study_instance_uid",
            "data",
            "measurement_values",
            "is_shared",
        ):
            continue  # required columns: null means "leave as is"
        setattr(annotation, field, value)
    await session.flush()
    await session.refresh(annotation)
    return annotation


async def delete(
    session: AsyncSession,
    storage: ObjectStorage,
    key_prefix: str,
    principal: Principal,
    annotation_id: int,
) -> None:
    await get_writable(session, principal, annotation_id)
    # Objects first: if storage fails, the rows stay and a retry finishes the job.
    async with translate_storage_errors("delete annotation objects"):
        await storage.delete_prefix(f"{key_prefix}{annotation_id}/")
    await repository.delete_by_id(session, annotation_id)
