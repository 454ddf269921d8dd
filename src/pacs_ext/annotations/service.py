"""Annotation rules: who may read and change what; deletes never leave stored objects behind."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from ..audit import service as audit
from ..audit.schemas import AuditAction
from ..context import Ctx
from ..core.auth import Principal, can_read, require_owner, require_project_member, require_write
from ..core.errors import Forbidden, NotFound
from ..core.schemas import Pagination
from ..models import Annotation, tombstone
from ..models.recovery import ANNOTATION_DOC
from ..objects import high_water, outbox, recovery_outbox
from ..objects.deletions import service as deletions
from ..objects.deletions import tombstones
from ..objects.keys import annotation_prefix
from ..storage.errors import translate_storage_errors
from . import repository
from .schemas import AnnotationCreate, AnnotationFilters, AnnotationUpdate

# Annotation fields that each of its groups' metadata.json carries.
IN_METADATA = frozenset({"study_instance_uid", "series_instance_uid", "sop_instance_uid"})


async def create(ctx: Ctx, body: AnnotationCreate) -> Annotation:
    session, principal = ctx.session, ctx.principal
    require_project_member(principal, body.project_id)
    annotation = Annotation(owner=principal.subject, **body.model_dump())
    session.add(annotation)
    await session.flush()
    # The bucket learns of the id before any client does (objects/high_water.py).
    async with translate_storage_errors("reserving ids in the bucket's high-water mark"):
        await high_water.reserve(session, ctx.storage, ctx.key_prefix, "annotations", annotation.id)
    await recovery_outbox.request(session, ANNOTATION_DOC, annotation.id)
    await audit.record(ctx, AuditAction.ANNOTATION_CREATE, annotation_id=annotation.id)
    return annotation


async def get_readable(ctx: Ctx, annotation_id: int) -> Annotation:
    principal = ctx.principal
    annotation = await repository.get(ctx.session, annotation_id)
    if annotation is None:
        raise NotFound(f"annotation {annotation_id} not found")
    if not can_read(principal, annotation.owner, annotation.is_shared, annotation.project_id):
        raise Forbidden(
            f"annotation {annotation_id} belongs to another user, is not shared "
            "and is not in a project your token lists"
        )
    return annotation


async def get_writable(ctx: Ctx, annotation_id: int) -> Annotation:
    annotation = await get_readable(ctx, annotation_id)
    require_write(ctx.principal, annotation.owner, annotation.project_id)
    return annotation


async def list_(
    ctx: Ctx, filters: AnnotationFilters, page: Pagination
) -> tuple[Sequence[Annotation], int]:
    return await repository.list_readable(
        ctx.session, ctx.principal, filters, page.limit, page.offset
    )


async def update(ctx: Ctx, annotation_id: int, body: AnnotationUpdate) -> Annotation:
    session, principal = ctx.session, ctx.principal
    annotation = await get_writable(ctx, annotation_id)
    changes = body.model_dump(exclude_unset=True)
    _check_sharing_change(principal, annotation, changes)
    for field, value in changes.items():
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
    await audit.record(
        ctx,
        AuditAction.ANNOTATION_UPDATE,
        annotation_id=annotation_id,
        detail={"fields": sorted(changes)},
    )
    await recovery_outbox.request(session, ANNOTATION_DOC, annotation_id)
    if changes.keys() & IN_METADATA:
        # Its groups' metadata.json name these: rewritten after the commit (see write_documents).
        await outbox.request_for_annotation(session, annotation_id)
    return annotation


async def write_annotation_document(ctx: Ctx, annotation_id: int) -> None:
    """Commit, then write the annotation's recovery document (objects/recovery_outbox.py)."""
    await recovery_outbox.write_after_commit(
        ctx.session, ctx.storage, ctx.key_prefix, ANNOTATION_DOC, annotation_id
    )


async def write_documents(ctx: Ctx, annotation_id: int) -> None:
    """Commit, then write the documents update() requested: the annotation's recovery
    document and its groups' metadata.json (objects/outbox.py)."""
    session, storage, key_prefix = ctx.session, ctx.storage, ctx.key_prefix
    group_ids = await outbox.requested_for_annotation(session, annotation_id)
    await write_annotation_document(ctx, annotation_id)
    if not group_ids:
        return
    bind = session.bind

    def new_session() -> AsyncSession:
        return AsyncSession(bind, expire_on_commit=False, autoflush=False)

    for group_id in group_ids:
        await outbox.flush_quietly(new_session, storage, key_prefix, group_id)


def _check_sharing_change(
    principal: Principal, annotation: Annotation, changes: dict[str, object]
) -> None:
    """Who else may see an annotation is the owner's call, into a project they belong to."""
    shared = changes.get("is_shared")
    if shared is not None and shared != annotation.is_shared:
        require_owner(principal, annotation.owner, "is_shared")
    project = changes.get("project_id", annotation.project_id)
    if project != annotation.project_id:
        require_owner(principal, annotation.owner, "project_id")
        require_project_member(principal, project if isinstance(project, str) else None)


async def delete(ctx: Ctx, annotation_id: int) -> None:
    session, storage, key_prefix = ctx.session, ctx.storage, ctx.key_prefix
    principal = ctx.principal
    tombstone_retention = ctx.settings.janitor.tombstone_retention_seconds
    resource = f"annotations/{annotation_id}"
    if await repository.get(session, annotation_id) is None:
        # A retry of a DELETE whose objects could not all be removed finishes the job.
        if await deletions.resume(session, storage, key_prefix, principal, resource):
            return
        # A retry of a DELETE that succeeded but whose answer was lost: 204 again.
        if await tombstones.recently_deleted(
            session,
            principal,
            tombstone.ANNOTATION,
            annotation_id,
            parent_id=None,
            retention_seconds=tombstone_retention,
            now=ctx.clock.now(),
        ):
            return
        raise NotFound(f"annotation {annotation_id} not found")
    annotation = await get_writable(ctx, annotation_id)
    await tombstones.bury(
        session,
        tombstone.ANNOTATION,
        annotation_id,
        parent_id=None,
        owner=annotation.owner,
        deleted_by=principal.subject,
        now=ctx.clock.now(),
    )
    pending = await deletions.schedule(
        session,
        resource=resource,
        requested_by=principal.subject,
        reason="annotation deleted",
        prefix=annotation_prefix(key_prefix, annotation_id),
    )
    await repository.delete_by_id(session, annotation_id)
    await audit.record(ctx, AuditAction.ANNOTATION_DELETE, annotation_id=annotation_id)
    await deletions.run_now(session, storage, key_prefix, [pending], f"annotation {annotation_id}")
    await write_annotation_document(ctx, annotation_id)  # its tombstone
