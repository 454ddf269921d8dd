"""Mask groups: declare files and hand out signed targets, verify and commit, delete cleanly."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from ..annotations import service as annotation_service
from ..audit import service as audit
from ..audit.schemas import AuditAction
from ..auth import Principal
from ..config import Settings
from ..deletions import service as deletions
from ..exceptions import Conflict, NotFound
from ..models import Annotation, Mask, MaskGroup, MaskGroupFile
from ..models.base import utcnow
from ..models.mask_group import COMPLETE, PENDING
from ..observability import metrics
from ..storage.base import ObjectInfo, ObjectStorage
from ..storage.errors import translate_storage_errors
from . import multipart
from . import repository as repo
from .keys import METADATA_NAME, group_prefix, object_key
from .schemas import (
    FileSpec,
    MaskGroupCreate,
    MaskGroupRead,
    MaskGroupUpdate,
)
from .uploads import Target, check_specs, file_row, resolve_ttl, single_target, uses_multipart
from .verify import mask_row, metadata_document, verify

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Ctx:
    """What every group operation needs besides the request's own arguments."""

    session: AsyncSession
    storage: ObjectStorage
    settings: Settings
    principal: Principal

    @property
    def key_prefix(self) -> str:
        return self.settings.object_storage.key_prefix


async def to_read(session: AsyncSession, groups: Sequence[MaskGroup]) -> list[MaskGroupRead]:
    counts = await repo.counts(session, (g.id for g in groups))
    out = []
    for g in groups:
        c = counts.get(g.id, repo.GroupCounts())
        read = MaskGroupRead.model_validate(g)
        read.file_count, read.mask_count, read.total_bytes = (
            c.file_count,
            c.mask_count,
            c.total_bytes,
        )
        out.append(read)
    return out


async def readable_group(
    ctx: Ctx, annotation_id: int, group_id: int
) -> tuple[Annotation, MaskGroup]:
    annotation = await annotation_service.get_readable(ctx.session, ctx.principal, annotation_id)
    group = await repo.get_group(ctx.session, annotation_id, group_id)
    if group is None:
        raise NotFound(f"mask group {group_id} not found in annotation {annotation_id}")
    return annotation, group


async def writable_group(
    ctx: Ctx, annotation_id: int, group_id: int
) -> tuple[Annotation, MaskGroup]:
    annotation = await annotation_service.get_writable(ctx.session, ctx.principal, annotation_id)
    group = await repo.get_group(ctx.session, annotation_id, group_id)
    if group is None:
        raise NotFound(f"mask group {group_id} not found in annotation {annotation_id}")
    return annotation, group


async def prepare_signing(ctx: Ctx) -> None:
    """Fresh credentials for a batch of signed URLs (rotating ones: IAM roles, SSO...)."""
    async with translate_storage_errors("loading credentials to sign URLs"):
        await ctx.storage.prepare_signing()


async def _targets(
    ctx: Ctx, rows: list[dict[str, object]], specs: Sequence[FileSpec], ttl: int
) -> list[Target]:
    await prepare_signing(ctx)
    if any(uses_multipart(ctx.settings, ctx.storage, s.size) for s in specs):
        return await multipart.multipart_targets(ctx, rows, specs, ttl)
    return [single_target(ctx.storage, row, ttl) for row in rows]


async def create_group(
    ctx: Ctx, annotation_id: int, body: MaskGroupCreate
) -> tuple[MaskGroup, list[Target]]:
    await annotation_service.get_writable(ctx.session, ctx.principal, annotation_id)
    ttl = resolve_ttl(ctx.settings, body.ttl_seconds)
    check_specs(ctx.settings, ctx.storage, body.files)
    group = MaskGroup(
        annotation_id=annotation_id,
        created_by=ctx.principal.subject,
        status=PENDING,
        slice_count=len({f.slice_index for f in body.files if f.slice_index is not None}),
        **body.model_dump(exclude={"files", "ttl_seconds"}),
    )
    ctx.session.add(group)
    await ctx.session.flush()
    rows = [file_row(ctx.key_prefix, annotation_id, group.id, s) for s in body.files]
    targets = await _targets(ctx, rows, body.files, ttl)
    await repo.insert_files(ctx.session, rows)
    if targets:
        group.upload_expires_at = max(t["expires_at"] for t in targets)
    await ctx.session.flush()
    await _audit(ctx, AuditAction.MASK_GROUP_CREATE, annotation_id, group.id, files=len(rows))
    await _audit_urls(ctx, annotation_id, group.id, targets)
    log.info("mask_group.created", annotation_id=annotation_id, group_id=group.id, files=len(rows))
    return group, targets


async def upload_urls(
    ctx: Ctx, annotation_id: int, group_id: int, files: list[FileSpec], ttl_seconds: int | None
) -> list[Target]:
    """Sign new or renewed URLs; a file declared again with other size/MD5 replaces the old."""
    _, group = await writable_group(ctx, annotation_id, group_id)
    if group.status != PENDING:
        raise Conflict(
            f"mask group {group_id} is {group.status}; create a new group to upload more files"
        )
    ttl = resolve_ttl(ctx.settings, ttl_seconds)
    check_specs(ctx.settings, ctx.storage, files)
    rows = [file_row(ctx.key_prefix, annotation_id, group_id, s) for s in files]
    existing = await repo.declared_by_name(ctx.session, group_id, (r["filename"] for r in rows))
    # A multipart upload survives a renewal of the same declaration (its parts are kept).
    stale = []
    for row, spec in zip(rows, files, strict=True):
        old = existing.get(str(row["filename"]))
        if old is not None and (upload_id := multipart.carry_over(ctx, old, row, spec)):
            stale.append((old.object_key, upload_id))
    # Objects are write-once: a file declared again with other bytes needs its old object
    # gone before the new URL can store anything (and the old URL then stores nothing that
    # `complete` would accept: it is signed for the old size and MD5).
    changed = [
        old.object_key
        for row in rows
        if (old := existing.get(str(row["filename"]))) is not None and _redeclared(old, row)
    ]
    if changed:
        async with translate_storage_errors("removing the objects of re-declared files"):
            await ctx.storage.delete_many(changed)
    targets = await _targets(ctx, rows, files, ttl)
    new_rows = []
    for row in rows:
        old = existing.get(str(row["filename"]))
        if old is None:
            new_rows.append(row)
            continue
        for k, v in row.items():
            setattr(old, k, v)
        old.upload_id, old.part_size = row.get("upload_id"), row.get("part_size")
    await repo.insert_files(ctx.session, new_rows)
    await multipart.abort_stale(ctx, stale)
    slices = {s.slice_index for s in files if s.slice_index is not None}
    if slices:
        declared = await repo.declared_files(ctx.session, group_id)
        group.slice_count = len({f.slice_index for f in declared if f.slice_index is not None})
    latest = max(t["expires_at"] for t in targets)
    if group.upload_expires_at is None or latest > group.upload_expires_at:
        group.upload_expires_at = latest
    await ctx.session.flush()
    await _audit_urls(ctx, annotation_id, group_id, targets)
    return targets


def _redeclared(old: MaskGroupFile, row: dict[str, Any]) -> bool:
    return (old.size, old.md5, old.sha256, old.content_type) != (
        row["size"],
        row["md5"],
        row["sha256"],
        row["content_type"],
    )


async def complete(ctx: Ctx, annotation_id: int, group_id: int) -> MaskGroup:
    """Verify every declared object by listing the prefix, then record masks in one go."""
    started = time.perf_counter()
    annotation, group = await writable_group(ctx, annotation_id, group_id)
    if group.status == COMPLETE:
        return group
    if group.status != PENDING:
        raise Conflict(f"mask group {group_id} is {group.status} and cannot be completed")
    declared = await repo.declared_files(ctx.session, group_id)
    if not declared:
        raise Conflict(f"mask group {group_id} has no declared files to complete")
    multipart_problems = None
    if any(f.upload_id for f in declared):
        multipart_problems = await multipart.finish_multipart(ctx, declared)
    prefix = group_prefix(ctx.key_prefix, annotation_id, group_id)
    async with translate_storage_errors("complete (listing uploaded objects)"):
        listing: dict[str, ObjectInfo] = {o.key: o async for o in ctx.storage.list_prefix(prefix)}
    result = verify(declared, listing)
    if multipart_problems is not None:
        multipart.merge(result, multipart_problems)
    if not result.passed:
        metrics.record_completion_failure(len(result.missing), len(result.mismatched))
        log.warning(
            "mask_group.upload_failed",
            annotation_id=annotation_id,
            group_id=group_id,
            prefix=prefix,
            missing=len(result.missing),
            mismatched=len(result.mismatched),
            error="; ".join(
                f"{p.object_key}: {p.reason}" for p in (result.missing + result.mismatched)[:3]
            ),
        )
        # Objects are write-once: a stored object that is not what was declared (a PUT of an
        # old declaration's URL, say) would refuse the right bytes forever. It is never valid
        # for this declaration, so it goes, and the file can be uploaded again.
        single = {f.object_key for f in declared if not f.upload_id}
        wrong = [p.object_key for p in result.mismatched if p.object_key in single]
        if wrong:
            async with translate_storage_errors("complete (removing mismatched objects)"):
                await ctx.storage.delete_many(wrong)
        raise Conflict(
            f"{len(result.missing)} file(s) missing and {len(result.mismatched)} mismatched; "
            "upload them (upload-urls renews expired URLs) and call complete again",
            extra={
                "missing": [p.model_dump(exclude_none=True) for p in result.missing],
                "mismatched": [p.model_dump(exclude_none=True) for p in result.mismatched],
            },
        )
    now = utcnow()
    rows = [mask_row(f, obj, now) for f, obj in result.ok]
    slice_count = len({f.slice_index for f in declared if f.slice_index is not None})
    if not await repo.claim_completion(
        ctx.session, group_id, {"completed_at": now, "slice_count": slice_count, "updated_at": now}
    ):
        await ctx.session.refresh(group)
        if group.status == COMPLETE:
            return group
        raise Conflict(f"mask group {group_id} changed while completing; try again")
    await repo.insert_masks(ctx.session, rows)
    await _audit(ctx, AuditAction.MASK_GROUP_COMPLETE, annotation_id, group_id, masks=len(rows))
    await ctx.session.refresh(group)
    # metadata.json last: if writing it fails, the transaction rolls back and a retry redoes all.
    async with translate_storage_errors("complete (writing metadata.json)"):
        await ctx.storage.put_bytes(
            object_key(ctx.key_prefix, annotation_id, group_id, METADATA_NAME),
            metadata_document(annotation, group, rows),
            "application/json",
        )
    elapsed = time.perf_counter() - started
    total_bytes = sum(int(r["file_size"]) for r in rows)
    metrics.record_completion(len(rows), total_bytes, elapsed)
    log.info(
        "mask_group.completed",
        annotation_id=annotation_id,
        group_id=group_id,
        prefix=prefix,
        files=len(rows),
        bytes=total_bytes,
        duration_ms=round(elapsed * 1000, 1),
    )
    return group


async def update_group(
    ctx: Ctx, annotation_id: int, group_id: int, body: MaskGroupUpdate
) -> MaskGroup:
    annotation, group = await writable_group(ctx, annotation_id, group_id)
    changes = body.model_dump(exclude_unset=True)
    for k, v in changes.items():
        if v is None and k == "mask_type":
            continue
        setattr(group, k, v)
    await ctx.session.flush()
    await ctx.session.refresh(group)
    await _audit(
        ctx, AuditAction.MASK_GROUP_UPDATE, annotation_id, group_id, fields=sorted(changes)
    )
    if group.status == COMPLETE:
        await write_metadata(ctx, annotation, group)
    return group


async def write_metadata(ctx: Ctx, annotation: Annotation, group: MaskGroup) -> None:
    masks = await repo.all_masks(ctx.session, group.id)
    async with translate_storage_errors("writing metadata.json"):
        await ctx.storage.put_bytes(
            object_key(ctx.key_prefix, annotation.id, group.id, METADATA_NAME),
            metadata_document(annotation, group, masks),
            "application/json",
        )


async def delete_group(ctx: Ctx, annotation_id: int, group_id: int) -> None:
    resource = f"annotations/{annotation_id}/mask-groups/{group_id}"
    await annotation_service.get_writable(ctx.session, ctx.principal, annotation_id)
    if await repo.get_group(ctx.session, annotation_id, group_id) is None:
        await _resume_or_not_found(
            ctx, resource, f"mask group {group_id} not found in annotation {annotation_id}"
        )
        return
    pending = await deletions.schedule(
        ctx.session,
        resource=resource,
        requested_by=ctx.principal.subject,
        reason="mask group deleted",
        prefix=group_prefix(ctx.key_prefix, annotation_id, group_id),
    )
    await repo.delete_group(ctx.session, group_id)
    await _audit(ctx, AuditAction.MASK_GROUP_DELETE, annotation_id, group_id)
    await deletions.run_now(
        ctx.session, ctx.storage, ctx.key_prefix, [pending], f"mask group {group_id}"
    )
    log.info("mask_group.deleted", annotation_id=annotation_id, group_id=group_id)


async def _resume_or_not_found(ctx: Ctx, resource: str, missing: str) -> None:
    """A DELETE of something already gone finishes its recorded deletion, else it is a 404."""
    if not await deletions.resume(
        ctx.session, ctx.storage, ctx.key_prefix, ctx.principal, resource
    ):
        raise NotFound(missing)


async def readable_mask(ctx: Ctx, annotation_id: int, group_id: int, mask_id: int) -> Mask:
    await readable_group(ctx, annotation_id, group_id)
    mask = await repo.get_mask(ctx.session, group_id, mask_id)
    if mask is None:
        raise NotFound(f"mask {mask_id} not found in mask group {group_id}")
    return mask


async def delete_mask(ctx: Ctx, annotation_id: int, group_id: int, mask_id: int) -> None:
    resource = f"annotations/{annotation_id}/mask-groups/{group_id}/masks/{mask_id}"
    annotation, group = await writable_group(ctx, annotation_id, group_id)
    mask = await repo.get_mask(ctx.session, group_id, mask_id)
    if mask is None:
        await _resume_or_not_found(
            ctx, resource, f"mask {mask_id} not found in mask group {group_id}"
        )
        return
    pending = await deletions.schedule(
        ctx.session,
        resource=resource,
        requested_by=ctx.principal.subject,
        reason="mask deleted",
        keys=[mask.object_key],
    )
    await repo.delete_mask(ctx.session, mask_id)
    await repo.delete_declared(ctx.session, group_id, mask.filename)
    await audit.record(
        ctx.session,
        ctx.principal,
        AuditAction.MASK_DELETE,
        annotation_id=annotation_id,
        group_id=group_id,
        mask_id=mask_id,
        object_key=mask.object_key,
    )
    # metadata.json before the commit: if writing it fails nothing has changed yet.
    await write_metadata(ctx, annotation, group)
    await deletions.run_now(ctx.session, ctx.storage, ctx.key_prefix, [pending], f"mask {mask_id}")


async def audit_download(ctx: Ctx, annotation_id: int, mask: Mask, expires_at: datetime) -> None:
    """Record a signed GET handed out for the mask's object (key, method, expiry)."""
    await audit.record_signed_urls(
        ctx.session,
        ctx.principal,
        "GET",
        [audit.IssuedUrl(mask.object_key, expires_at)],
        annotation_id=annotation_id,
        group_id=mask.group_id,
        mask_id=mask.id,
    )


# Audit hooks: one line at each call site; audit/service.py does the work.
async def _audit(
    ctx: Ctx, action: AuditAction, annotation_id: int, group_id: int, **detail: object
) -> None:
    await audit.record(
        ctx.session,
        ctx.principal,
        action,
        annotation_id=annotation_id,
        group_id=group_id,
        detail=detail or None,
    )


async def _audit_urls(ctx: Ctx, annotation_id: int, group_id: int, targets: Sequence[Any]) -> None:
    await audit.record_upload_targets(
        ctx.session, ctx.principal, targets, annotation_id=annotation_id, group_id=group_id
    )
