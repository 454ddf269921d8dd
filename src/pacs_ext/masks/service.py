"""Mask groups: declare files and hand out signed targets, verify and commit, delete cleanly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import NoReturn

import anyio.to_thread
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from ..annotations import service as annotation_service
from ..audit import service as audit
from ..audit.schemas import AuditAction
from ..context import Ctx
from ..core import gc_pause, metrics
from ..core.config import Settings
from ..core.errors import Conflict, InvalidInput, NotFound
from ..core.schemas import Pagination
from ..models import Annotation, Mask, MaskGroup, tombstone
from ..models.base import utcnow
from ..models.mask_group import COMPLETE, PENDING
from ..models.recovery import GROUP_TOMBSTONE
from ..objects import high_water, outbox, recovery_outbox
from ..objects.deletions import service as deletions
from ..objects.deletions import tombstones
from ..objects.keys import group_prefix
from ..storage.base import ObjectInfo, ObjectStorage
from ..storage.errors import translate_storage_errors
from . import idempotency, multipart, signing
from . import repository as repo
from .schemas import (
    FileSpec,
    MaskFilters,
    MaskGroupCreate,
    MaskGroupRead,
    MaskGroupUpdate,
    PartRange,
)
from .uploads import FileRow, Target, check_specs, file_row, resolve_ttl, single_target
from .verify import DeclaredFile, MaskRow, Verification, mask_row, verify

log = structlog.get_logger(__name__)


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
    annotation = await annotation_service.get_readable(ctx, annotation_id)
    group = await repo.get_group(ctx.session, annotation_id, group_id)
    if group is None:
        raise NotFound(f"mask group {group_id} not found in annotation {annotation_id}")
    return annotation, group


async def writable_group(
    ctx: Ctx, annotation_id: int, group_id: int, *, lock: bool = False
) -> tuple[Annotation, MaskGroup]:
    """The annotation and group, checked for write access; with `lock`, the group row stays
    locked until the request's transaction ends (see repository.lock_group)."""
    annotation = await annotation_service.get_writable(ctx, annotation_id)
    if lock:
        group = await repo.lock_group(ctx.session, annotation_id, group_id)
    else:
        group = await repo.get_group(ctx.session, annotation_id, group_id)
    if group is None:
        raise NotFound(f"mask group {group_id} not found in annotation {annotation_id}")
    return annotation, group


async def prepare_signing(ctx: Ctx) -> None:
    """Fresh credentials for a batch of signed URLs (rotating ones: IAM roles, SSO...)."""
    async with translate_storage_errors("loading credentials to sign URLs"):
        await ctx.storage.prepare_signing()


async def _targets(
    ctx: Ctx,
    group: MaskGroup,
    rows: Sequence[FileRow],
    specs: Sequence[FileSpec],
    ttl: int,
    ranges: Mapping[str, PartRange] | None = None,
) -> list[Target]:
    # Counted and capped before anything is signed or any multipart upload started.
    pages, urls = signing.plan(ctx.settings, ctx.storage, specs, ranges)
    signing.check_caps(ctx.settings, group, urls)
    await prepare_signing(ctx)
    if any(page is not None for page in pages):
        targets = await multipart.multipart_targets(ctx, rows, specs, ttl, pages)
    else:
        targets = [single_target(ctx.storage, row, ttl) for row in rows]
    group.urls_signed = (group.urls_signed or 0) + urls
    return targets


async def create_group(
    ctx: Ctx, annotation_id: int, body: MaskGroupCreate
) -> tuple[MaskGroup, list[Target]]:
    await annotation_service.get_writable(ctx, annotation_id)
    ttl = resolve_ttl(ctx.settings, body.ttl_seconds)
    check_specs(ctx.settings, ctx.storage, body.files)
    _check_group_size(ctx.settings, len(body.files))
    group = MaskGroup(
        annotation_id=annotation_id,
        created_by=ctx.principal.subject,
        status=PENDING,
        slice_count=len({f.slice_index for f in body.files if f.slice_index is not None}),
        **body.model_dump(exclude={"files", "ttl_seconds"}),
    )
    ctx.session.add(group)
    await ctx.session.flush()
    # Before any URL naming the id leaves (objects/high_water.py).
    await _reserve(ctx, "mask_groups", group.id)
    rows = [file_row(ctx.key_prefix, annotation_id, group.id, s) for s in body.files]
    targets = await _targets(ctx, group, rows, body.files, ttl)
    await repo.insert_files(ctx.session, rows)
    if targets:
        group.upload_expires_at = max(t.expires_at for t in targets)
    await ctx.session.flush()
    await _audit(ctx, AuditAction.MASK_GROUP_CREATE, annotation_id, group.id, files=len(rows))
    await _audit_urls(ctx, annotation_id, group.id, targets)
    log.info("mask_group.created", annotation_id=annotation_id, group_id=group.id, files=len(rows))
    return group, targets


async def upload_urls(
    ctx: Ctx,
    annotation_id: int,
    group_id: int,
    files: list[FileSpec],
    ttl_seconds: int | None,
    parts: Mapping[str, PartRange] | None = None,
) -> list[Target]:
    """Sign new or renewed URLs; a file declared again with other size/MD5 replaces the old."""
    # Locked: a concurrent complete, delete or declaration of the same file waits for us.
    _, group = await writable_group(ctx, annotation_id, group_id, lock=True)
    if group.status != PENDING:
        raise Conflict(
            f"mask group {group_id} is {group.status}; create a new group to upload more files"
        )
    ttl = resolve_ttl(ctx.settings, ttl_seconds)
    check_specs(ctx.settings, ctx.storage, files)
    rows = [file_row(ctx.key_prefix, annotation_id, group_id, s) for s in files]
    existing = await repo.declared_by_name(ctx.session, group_id, (r.filename for r in rows))
    added = sum(1 for r in rows if r.filename not in existing)
    if added:
        _check_group_size(ctx.settings, await repo.count_declared(ctx.session, group_id) + added)
    # A multipart upload survives a renewal of the same declaration (its parts are kept).
    stale = []
    for row, spec in zip(rows, files, strict=True):
        old = existing.get(row.filename)
        if old is not None and (upload_id := multipart.carry_over(ctx, old, row, spec)):
            stale.append((old.object_key, upload_id))
    # Objects are write-once: a file declared again with other bytes needs its old object
    # gone before the new URL can store anything (and the old URL then stores nothing that
    # `complete` would accept: it is signed for the old size and MD5).
    changed = [
        old.object_key
        for row in rows
        if (old := existing.get(row.filename)) is not None and not row.declares_same_bytes(old)
    ]
    if changed:
        async with translate_storage_errors("removing the objects of re-declared files"):
            await ctx.storage.delete_many(changed)
    targets = await _targets(ctx, group, rows, files, ttl, parts)
    # A complete that listed storage before this commit records nothing from that listing.
    group.declarations = (group.declarations or 0) + 1
    new_rows = []
    for row in rows:
        old = existing.get(row.filename)
        if old is None:
            new_rows.append(row)
            continue
        row.apply_to(old)
    await repo.insert_files(ctx.session, new_rows)
    await multipart.abort_stale(ctx, stale)
    slices = {s.slice_index for s in files if s.slice_index is not None}
    if slices:
        declared = await repo.declared_files(ctx.session, group_id)
        group.slice_count = len({f.slice_index for f in declared if f.slice_index is not None})
    latest = max(t.expires_at for t in targets)
    if group.upload_expires_at is None or latest > group.upload_expires_at:
        group.upload_expires_at = latest
    await ctx.session.flush()
    await _audit_urls(ctx, annotation_id, group_id, targets)
    return targets


def _check_group_size(settings: Settings, files: int) -> None:
    """The per-group cap counts every file declared, over all create and upload-urls calls."""
    limit = settings.limits.max_files_per_group
    if files > limit:
        raise InvalidInput(
            f"the mask group would hold {files} files, more than {limit} "
            "(limits.max_files_per_group); split the upload into several groups",
            extra={"field": "files", "limit": limit},
        )


async def complete(ctx: Ctx, annotation_id: int, group_id: int) -> MaskGroup:
    """Verify every declared object by listing the prefix, then record masks in one go."""
    # Its working set (up to limits.max_files_per_group files) is large and acyclic: no full
    # collection scans it while it lives, each would hold the event loop (core/gc_pause.py).
    with gc_pause.paused():
        return await _complete(ctx, annotation_id, group_id)


async def _complete(ctx: Ctx, annotation_id: int, group_id: int) -> MaskGroup:
    started = time.perf_counter()
    _, group = await writable_group(ctx, annotation_id, group_id, lock=True)
    if (settled := await _settled(ctx, group)) is not None:
        return settled
    # A group may hold limits.max_files_per_group files (100,000 by default): reading, comparing
    # and serialising them is chunked or runs in a worker thread, so that the event loop keeps
    # serving other requests (/health) meanwhile.
    declared = await repo.declared_rows(ctx.session, group_id)
    if declared and not any(f.upload_id for f in declared):
        # Listing storage takes the longest part of a complete (seconds for a large group or
        # a busy store). It runs with neither the group's lock nor a pooled connection held,
        # so that other requests do not queue for the pool behind it (docs/scaling.md);
        # storage can only lose objects meanwhile (they are write-once), and a re-declaration
        # moves `declarations`, so a listing that verified everything is still true below
        # when the counter has not moved.
        seen = group.declarations
        await ctx.session.commit()
        result = await _verify(ctx, annotation_id, group_id, declared)
        group_now = await repo.lock_group(ctx.session, annotation_id, group_id)
        if group_now is None:
            raise NotFound(f"mask group {group_id} not found in annotation {annotation_id}")
        group = group_now
        if (settled := await _settled(ctx, group)) is not None:
            return settled
        if result.passed and group.declarations == seen:
            return await _record(ctx, annotation_id, group, declared, result, started)
        # Changed meanwhile, or something is missing: decide again under the lock, so that
        # what a 409 removes from storage is judged on what storage holds now.
        declared = await repo.declared_rows(ctx.session, group_id)
    # Locked until commit: files cannot be declared, nor the group deleted, while we verify.
    if not declared:
        raise Conflict(f"mask group {group_id} has no declared files to complete")
    multipart_problems = None
    if any(f.upload_id for f in declared):
        uploads = await repo.declared_files(ctx.session, group_id)
        multipart_problems = await multipart.finish_multipart(ctx, uploads)
    result = await _verify(ctx, annotation_id, group_id, declared)
    if multipart_problems is not None:
        multipart.merge(result, multipart_problems)
    if not result.passed:
        await _refuse(ctx, annotation_id, group_id, declared, result)
    return await _record(ctx, annotation_id, group, declared, result, started)


async def _settled(ctx: Ctx, group: MaskGroup) -> MaskGroup | None:
    """The answer for a group no longer pending (under its lock), None while it is pending."""
    if group.status == COMPLETE:
        # A retry after a completion whose metadata.json was not written yet finishes it.
        await _write_metadata_after_commit(ctx, group.id)
        return group
    if group.status != PENDING:
        raise Conflict(f"mask group {group.id} is {group.status} and cannot be completed")
    return None


async def _verify(
    ctx: Ctx, annotation_id: int, group_id: int, declared: Sequence[DeclaredFile]
) -> Verification:
    prefix = group_prefix(ctx.key_prefix, annotation_id, group_id)
    async with translate_storage_errors("complete (listing uploaded objects)"):
        listing = await _listing(ctx.storage, prefix)
    return await anyio.to_thread.run_sync(verify, declared, listing)


async def _refuse(
    ctx: Ctx,
    annotation_id: int,
    group_id: int,
    declared: Sequence[DeclaredFile],
    result: Verification,
) -> NoReturn:
    metrics.record_completion_failure(len(result.missing), len(result.mismatched))
    log.warning(
        "mask_group.upload_failed",
        annotation_id=annotation_id,
        group_id=group_id,
        prefix=group_prefix(ctx.key_prefix, annotation_id, group_id),
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
        extra=conflict_body(result, ctx.settings.limits.conflict_max_names),
    )


async def _record(
    ctx: Ctx,
    annotation_id: int,
    group: MaskGroup,
    declared: Sequence[DeclaredFile],
    result: Verification,
    started: float,
) -> MaskGroup:
    """Masks from a passed verification, under the group's lock; then metadata.json."""
    group_id = group.id
    now = utcnow()
    rows = await anyio.to_thread.run_sync(_mask_rows, result, now)
    slice_count = len({f.slice_index for f in declared if f.slice_index is not None})
    if not await repo.claim_completion(
        ctx.session, group_id, completed_at=now, slice_count=slice_count
    ):
        # Not expected under the lock; answer from the row as it is now, never a 500.
        current = await repo.lock_group(ctx.session, annotation_id, group_id)
        if current is None:
            raise NotFound(f"mask group {group_id} not found in annotation {annotation_id}")
        if current.status == COMPLETE:
            return current
        raise Conflict(f"mask group {group_id} changed while completing; try again")
    await repo.insert_masks(ctx.session, rows)
    await _reserve(ctx, "masks", await repo.largest_mask_id(ctx.session, group_id))
    await _audit(ctx, AuditAction.MASK_GROUP_COMPLETE, annotation_id, group_id, masks=len(rows))
    await ctx.session.refresh(group)
    await outbox.request(ctx.session, annotation_id, group_id)
    await _write_metadata_after_commit(ctx, group_id)
    elapsed = time.perf_counter() - started
    total_bytes = sum(r.file_size for r in rows)
    metrics.record_completion(len(rows), total_bytes, elapsed)
    log.info(
        "mask_group.completed",
        annotation_id=annotation_id,
        group_id=group_id,
        prefix=group_prefix(ctx.key_prefix, annotation_id, group_id),
        files=len(rows),
        bytes=total_bytes,
        duration_ms=round(elapsed * 1000, 1),
    )
    return group


async def _reserve(ctx: Ctx, table: str, largest_id: int) -> None:
    async with translate_storage_errors("reserving ids in the bucket's high-water mark"):
        await high_water.reserve(ctx.session, ctx.storage, ctx.key_prefix, table, largest_id)


async def _listing(storage: ObjectStorage, prefix: str) -> dict[str, ObjectInfo]:
    listing: dict[str, ObjectInfo] = {}
    async for o in storage.list_prefix(prefix):
        listing[o.key] = o
        if len(listing) % repo.CHUNK == 0:
            await asyncio.sleep(0)  # a long listing already in memory: let others run
    return listing


def _mask_rows(result: Verification, now: datetime) -> list[MaskRow]:
    return [mask_row(f, obj, now) for f, obj in result.ok]


def conflict_body(result: Verification, max_names: int) -> dict[str, object]:
    """The 409 of `complete`: at most max_names problems of each kind, and exact counts."""
    return {
        "missing": [p.model_dump(exclude_none=True) for p in result.missing[:max_names]],
        "mismatched": [p.model_dump(exclude_none=True) for p in result.mismatched[:max_names]],
        "missing_count": len(result.missing),
        "mismatched_count": len(result.mismatched),
        "truncated": len(result.missing) > max_names or len(result.mismatched) > max_names,
    }


async def update_group(
    ctx: Ctx, annotation_id: int, group_id: int, body: MaskGroupUpdate
) -> MaskGroup:
    _, group = await writable_group(ctx, annotation_id, group_id)
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
        await outbox.request(ctx.session, annotation_id, group_id)
        await _write_metadata_after_commit(ctx, group_id)
    return group


async def _write_metadata_after_commit(ctx: Ctx, group_id: int) -> None:
    """metadata.json from committed state only (masks/outbox.py): commit the change and its
    outbox row first (here, inside the request, on purpose), then write the document. If
    writing fails the change stands, and a retry or the janitor writes it. (Committing also
    returns the request's connection, so a request never holds two.)"""
    await ctx.session.commit()
    bind = ctx.session.bind

    def new_session() -> AsyncSession:
        return AsyncSession(bind, expire_on_commit=False, autoflush=False)

    await outbox.flush_quietly(new_session, ctx.storage, ctx.key_prefix, group_id)


async def delete_group(ctx: Ctx, annotation_id: int, group_id: int) -> None:
    resource = f"annotations/{annotation_id}/mask-groups/{group_id}"
    annotation = await annotation_service.get_writable(ctx, annotation_id)
    # Locked: a complete or upload-urls in flight finishes first, then the group goes.
    if await repo.lock_group(ctx.session, annotation_id, group_id) is None:
        await _resume_or_not_found(
            ctx,
            resource,
            f"mask group {group_id} not found in annotation {annotation_id}",
            (tombstone.MASK_GROUP, group_id, annotation_id),
        )
        return
    await tombstones.bury(
        ctx.session,
        tombstone.MASK_GROUP,
        group_id,
        parent_id=annotation_id,
        owner=annotation.owner,
        deleted_by=ctx.principal.subject,
        now=ctx.clock.now(),
    )
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
    await recovery_outbox.write_after_commit(
        ctx.session, ctx.storage, ctx.key_prefix, GROUP_TOMBSTONE, group_id
    )
    log.info("mask_group.deleted", annotation_id=annotation_id, group_id=group_id)


async def _resume_or_not_found(
    ctx: Ctx, resource: str, missing: str, buried: tuple[str, int, int]
) -> None:
    """A DELETE of something already gone finishes its recorded deletion; a retry of one
    that succeeded (its answer lost) is a 204 again while its tombstone lasts; else 404."""
    if await deletions.resume(ctx.session, ctx.storage, ctx.key_prefix, ctx.principal, resource):
        return
    kind, object_id, parent_id = buried
    if not await tombstones.recently_deleted(
        ctx.session,
        ctx.principal,
        kind,
        object_id,
        parent_id=parent_id,
        retention_seconds=ctx.settings.janitor.tombstone_retention_seconds,
        now=ctx.clock.now(),
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
    annotation, group = await writable_group(ctx, annotation_id, group_id, lock=True)
    mask = await repo.get_mask(ctx.session, group_id, mask_id)
    if mask is None:
        await _resume_or_not_found(
            ctx,
            resource,
            f"mask {mask_id} not found in mask group {group_id}",
            (tombstone.MASK, mask_id, group_id),
        )
        return
    await tombstones.bury(
        ctx.session,
        tombstone.MASK,
        mask_id,
        parent_id=group_id,
        owner=annotation.owner,
        deleted_by=ctx.principal.subject,
        now=ctx.clock.now(),
    )
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
        ctx,
        AuditAction.MASK_DELETE,
        annotation_id=annotation_id,
        group_id=group_id,
        mask_id=mask_id,
        object_key=mask.object_key,
    )
    if group.status == COMPLETE:
        await outbox.request(ctx.session, annotation_id, group_id)
        # Committed with its deletion record; the document follows before the object goes.
        await _write_metadata_after_commit(ctx, group_id)
    await deletions.run_now(ctx.session, ctx.storage, ctx.key_prefix, [pending], f"mask {mask_id}")


async def audit_download(ctx: Ctx, annotation_id: int, mask: Mask, expires_at: datetime) -> None:
    """Record a signed GET handed out for the mask's object (key, method, expiry)."""
    await audit.record_signed_urls(
        ctx,
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
        ctx,
        action,
        annotation_id=annotation_id,
        group_id=group_id,
        detail=detail or None,
    )


async def _audit_urls(
    ctx: Ctx, annotation_id: int, group_id: int, targets: Sequence[Target]
) -> None:
    await audit.record_signed_urls(
        ctx,
        "PUT",
        issued_urls(targets),
        annotation_id=annotation_id,
        group_id=group_id,
    )


async def group_counts(session: AsyncSession) -> dict[str, int]:
    """Mask groups per status, for /metrics (routes call services, not repositories)."""
    return await repo.count_groups_by_status(session)


async def list_groups(
    ctx: Ctx, annotation_id: int, page: Pagination
) -> tuple[list[MaskGroupRead], int]:
    """A page of the annotation's groups, with their counts."""
    await annotation_service.get_readable(ctx, annotation_id)
    groups, total = await repo.list_groups(ctx.session, annotation_id, page.limit, page.offset)
    return await to_read(ctx.session, groups), total


async def list_masks(
    ctx: Ctx, annotation_id: int, group_id: int, filters: MaskFilters, page: Pagination
) -> tuple[Sequence[Mask], int]:
    """A page of a readable group's verified masks."""
    await readable_group(ctx, annotation_id, group_id)
    return await repo.list_masks(ctx.session, group_id, filters, page.limit, page.offset)


async def create_group_once(
    ctx: Ctx, annotation_id: int, body: MaskGroupCreate, key: str
) -> tuple[MaskGroup, list[Target], bool]:
    """Create the group, or replay the one this key made; the bool says "replayed"."""
    await annotation_service.get_writable(ctx, annotation_id)
    digest = idempotency.fingerprint(annotation_id, body)
    record = await idempotency.find(ctx.session, ctx.principal.subject, key)
    if record is None:
        claimed = await idempotency.claim(
            ctx.session, ctx.principal.subject, key, digest, annotation_id
        )
        if claimed is not None:
            group, targets = await create_group(ctx, annotation_id, body)
            await idempotency.bind(ctx.session, claimed, group.id)
            return group, targets, False
        # A concurrent request with this key committed first (the claim waited for it).
        record = await idempotency.find(ctx.session, ctx.principal.subject, key)
        if record is None:
            raise Conflict(f"a request with this {idempotency.HEADER} is still in progress; retry")
    if record.request_hash != digest:
        raise idempotency.IdempotencyKeyMismatch(
            f"this {idempotency.HEADER} was already used for a different request "
            "(another annotation or body); use a new key for a new group",
            extra={"field": idempotency.HEADER},
        )
    made = await repo.get_group(ctx.session, record.annotation_id, record.group_id or 0)
    if made is None:
        raise Conflict(f"the group made with this {idempotency.HEADER} is gone; use a new key")
    return made, await _fresh_targets(ctx, made, body), True


async def _fresh_targets(ctx: Ctx, group: MaskGroup, body: MaskGroupCreate) -> list[Target]:
    """Re-signed targets for the declared files of a pending group (URLs may have expired).

    The same path as upload-urls with the same files: it keeps multipart uploads already
    started and moves the group's expiry (the janitor's clock) forward.
    """
    if group.status != PENDING or not body.files:
        return []
    return await upload_urls(ctx, group.annotation_id, group.id, body.files, body.ttl_seconds)


def issued_urls(targets: Sequence[Target]) -> list[audit.IssuedUrl]:
    """The PUT URLs in the targets, one entry per object: a single upload's URL, or the page
    of part URLs a multipart one got (its first and last part numbers)."""
    return [
        audit.IssuedUrl(
            t.object_key,
            t.expires_at,
            (t.parts[0].part_number, t.parts[-1].part_number) if t.parts else None,
        )
        for t in targets
    ]
