"""One janitor run: each pass reports what it finds and, with apply, acts on it.

Passes, in order: expire abandoned pending groups (their objects go through a recorded
deletion); finish recorded deletions; abort stale multipart uploads (stores that have them);
scan every object under the key prefix for orphans (no row claims them) and every mask for
a missing object; forget old idempotency keys and tombstones. Each pass commits its own small
transactions, so a failure in one leaves the others' work done and the next run resumes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..core.clock import SYSTEM_CLOCK, Clock
from ..core.config import Settings
from ..models import PendingDeletion
from ..objects import audit_export, high_water, outbox, recovery_outbox
from ..objects.claimed_rows import ClaimedElsewhere
from ..objects.claims import claimed_keys, parse_key
from ..objects.deletions import repository as deletions_repo
from ..objects.deletions import service as deletions
from ..objects.deletions import tombstones as tombstone_rows
from ..objects.keys import group_prefix, recovery_prefix
from ..storage.base import ObjectInfo, ObjectStorage, StorageError, delete_refusing_none
from . import decisions
from . import repository as repo
from .report import Finding, JanitorReport

log = structlog.get_logger(__name__)

JANITOR = "janitor"
SCAN_CHUNK = 1000  # objects per claims query; a group is never split across chunks
DELETION_BATCH = 500
METADATA_BATCH = 200  # complete groups compared per transaction


async def run(
    maker: async_sessionmaker[AsyncSession],
    storage: ObjectStorage,
    settings: Settings,
    *,
    apply: bool,
    now: datetime | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> JanitorReport:
    """now: the time the run decides against (expiry, grace, retentions); default clock.now()."""
    now = now or clock.now()
    grace = settings.janitor.grace_seconds
    report = JanitorReport(apply=apply, grace_seconds=grace, started_at=now)
    report.multipart_supported = storage.capabilities.multipart
    cutoff = decisions.cutoff(now, grace)
    job = _Run(maker, storage, settings, report, cutoff, now)
    steps = (
        job.expire_groups,
        job.pending_deletions,
        job.metadata,
        job.recovery_documents,
        job.audit_export,
        job.stale_multipart,
        job.scan,
    )
    for step in steps:
        await job.guarded(step)
    await job.guarded(job.idempotency_keys)
    await job.guarded(job.tombstones)
    report.finished_at = clock.now()
    log.info("janitor.finished", apply=apply, **report.summary())
    return report


class _Run:
    def __init__(
        self,
        maker: async_sessionmaker[AsyncSession],
        storage: ObjectStorage,
        settings: Settings,
        report: JanitorReport,
        cutoff: datetime,
        now: datetime,
    ) -> None:
        self.maker = maker
        self.storage = storage
        self.settings = settings
        self.report = report
        self.cutoff = cutoff
        self.now = now
        self.key_prefix = settings.object_storage.key_prefix

    async def guarded(self, step: Callable[[], Awaitable[None]]) -> None:
        """Storage trouble in one pass is reported; the other passes still run."""
        try:
            await step()
        except (StorageError, OSError) as exc:
            name = getattr(step, "__name__", "step")
            self.report.errors.append(f"{name}: {type(exc).__name__}: {exc}")
            log.warning("janitor.step_failed", step=name, error=str(exc)[:200])

    # ---- pending groups past their URLs' expiry + grace ------------------------------------

    async def expire_groups(self) -> None:
        finding = self.report.expired_groups
        async with self.maker() as session:
            candidates = await repo.abandoned_groups(session, self.cutoff)
        for group_id, annotation_id, expires_at in candidates:
            finding.add(
                {
                    "annotation_id": annotation_id,
                    "group_id": group_id,
                    "upload_expires_at": expires_at.isoformat() if expires_at else None,
                }
            )
            if self.report.apply:
                await self._expire(annotation_id, group_id)
        async with self.maker() as session:
            leftovers = await repo.expired_groups_with_masks(session)
        for group_id, annotation_id in leftovers:
            finding.add({"annotation_id": annotation_id, "group_id": group_id, "masks": True})
            if self.report.apply:
                await self._expire(annotation_id, group_id, already=True)

    async def _expire(self, annotation_id: int, group_id: int, *, already: bool = False) -> None:
        async with self.maker() as session:
            if not already and not await repo.claim_expiry(session, group_id, self.cutoff):
                await session.rollback()
                return  # completed or renewed meanwhile
            await repo.drop_masks(session, group_id)
            uploads = await repo.upload_ids(session, group_id)
            pending = await deletions.schedule(
                session,
                resource=f"annotations/{annotation_id}/mask-groups/{group_id}",
                requested_by=JANITOR,
                reason="upload expired",
                prefix=group_prefix(self.key_prefix, annotation_id, group_id),
            )
            await session.commit()
            self.report.expired_groups.acted += 1
            log.info("mask_group.expired", annotation_id=annotation_id, group_id=group_id)
            if self.storage.capabilities.multipart:
                # Part of expiring the group, not counted as stale uploads; one that fails
                # here is aborted by the recorded deletion (it lists the group's uploads).
                for key, upload_id in uploads:
                    await self._abort(key, upload_id)
            await self._finish(session, pending.id)

    async def _finish(self, session: AsyncSession, deletion_id: int) -> None:
        """Run one recorded deletion; on failure it stays recorded for the next run."""
        item = await session.get(PendingDeletion, deletion_id)
        if item is None:
            return
        try:
            self.report.objects_deleted += await deletions.execute(
                session, self.storage, self.key_prefix, item
            )
            await session.commit()
        except (StorageError, OSError) as exc:
            await session.rollback()
            await deletions_repo.mark_failed(session, [deletion_id], f"{type(exc).__name__}: {exc}")
            await session.commit()
            self.report.pending_deletions.failed += 1
            self.report.errors.append(f"deletion {deletion_id}: {exc}")

    # ---- deletions recorded by the API (or an earlier expiry) that did not finish ----------

    async def pending_deletions(self) -> None:
        finding = self.report.pending_deletions
        after = 0
        while True:
            async with self.maker() as session:
                batch = await deletions_repo.after(session, after, DELETION_BATCH)
                if not batch:
                    return
                for item in batch:
                    after = item.id
                    finding.add(
                        {
                            "id": item.id,
                            "resource": item.resource,
                            "reason": item.reason,
                            "attempts": item.attempts,
                            "created_at": item.created_at.isoformat(),
                        }
                    )
                    if self.report.apply:
                        failed_before = finding.failed
                        await self._finish(session, item.id)
                        if finding.failed == failed_before:
                            finding.acted += 1

    # ---- metadata.json: unfinished writes, and documents that differ from the database -----

    async def metadata(self) -> None:
        async with self.maker() as session:
            requested = await outbox.requested(session)
        for group_id in requested:
            self.report.metadata_outbox.add({"group_id": group_id})
            if self.report.apply:
                await self._flush(group_id, self.report.metadata_outbox)
        finding = self.report.metadata_mismatch
        after = 0
        while True:
            differing: list[tuple[int, int]] = []
            async with self.maker() as session:
                groups = await repo.complete_groups(session, after, METADATA_BATCH)
                for group in groups:
                    if await outbox.stored_differs(session, self.storage, self.key_prefix, group):
                        differing.append((group.annotation_id, group.id))
            if not groups:
                return
            after = groups[-1].id
            for annotation_id, group_id in differing:
                finding.add({"annotation_id": annotation_id, "group_id": group_id})
                if self.report.apply:
                    # Through the outbox: serialized with the API's own writers of the group.
                    async with self.maker() as session:
                        await outbox.request(session, annotation_id, group_id)
                        await session.commit()
                    await self._flush(group_id, finding)

    async def _flush(self, group_id: int, finding: Finding) -> None:
        try:
            await outbox.flush(self.maker, self.storage, self.key_prefix, group_id, wait_seconds=0)
        except ClaimedElsewhere as exc:
            # A writer in flight, or one that died (its claim ends with its lease): next run.
            finding.failed += 1
            self.report.errors.append(f"{exc} by another process; left for the next run")
        except StorageError as exc:
            finding.failed += 1
            self.report.errors.append(f"metadata.json of group {group_id}: {exc}")
        else:
            finding.acted += 1

    # ---- recovery: documents left unwritten, audit rows not in the bucket yet ---------------

    async def recovery_documents(self) -> None:
        # Before the tombstones pass: a tombstone pruned first would leave nothing to write.
        async with self.maker() as session:
            requested = await recovery_outbox.requested(session)
        finding = self.report.recovery_outbox
        for kind, object_id in requested:
            finding.add({"kind": kind, "id": object_id})
            if not self.report.apply:
                continue
            try:
                await recovery_outbox.flush(
                    self.maker, self.storage, self.key_prefix, kind, object_id, wait_seconds=0
                )
            except ClaimedElsewhere as exc:
                # A writer in flight, or one that died (its claim ends with its lease): next run.
                finding.failed += 1
                self.report.errors.append(f"{exc} by another process; left for the next run")
            except StorageError as exc:
                finding.failed += 1
                self.report.errors.append(f"recovery document of {kind} {object_id}: {exc}")
            else:
                finding.acted += 1
        if self.report.apply:
            # Ids handed out where no request reserved them (a database upgraded from before
            # the mark existed, a command-line import): the bucket's mark must cover them.
            for table in high_water.TABLES:
                async with self.maker() as session:
                    largest = await high_water.largest_issued(session, table)
                    await high_water.reserve(session, self.storage, self.key_prefix, table, largest)
                    await session.commit()

    async def audit_export(self) -> None:
        settle = self.settings.janitor.audit_export_settle_seconds
        finding = self.report.audit_export
        if not self.report.apply:
            waiting = await audit_export.waiting(self.maker, self.now, settle_seconds=settle)
            finding.found += waiting
            return
        exported = await audit_export.export(
            self.maker, self.storage, self.key_prefix, self.now, settle_seconds=settle
        )
        finding.found += exported
        finding.acted += exported

    # ---- multipart uploads nobody will complete ---------------------------------------------

    async def stale_multipart(self) -> None:
        if not self.storage.capabilities.multipart:
            return
        uploads = [u async for u in self.storage.list_multipart_uploads(self.key_prefix)]
        if not uploads:
            return
        async with self.maker() as session:
            live = await repo.live_upload_ids(session, [u.upload_id for u in uploads])
        finding = self.report.stale_multipart_uploads
        for upload in uploads:
            if upload.upload_id in live:
                continue
            # An upload of unknown age may belong to a group being created right now.
            initiated = upload.initiated
            if initiated is None or not decisions.stale_upload(initiated, self.cutoff):
                continue
            finding.add(
                {
                    "key": upload.key,
                    "upload_id": upload.upload_id,
                    "initiated": initiated.isoformat(),
                }
            )
            if self.report.apply:
                if await self._abort(upload.key, upload.upload_id):
                    finding.acted += 1
                else:
                    finding.failed += 1

    async def _abort(self, key: str, upload_id: str) -> bool:
        try:
            await self.storage.abort_multipart(key, upload_id)
        except StorageError as exc:
            self.report.errors.append(f"abort {key}: {exc}")
            return False
        return True

    # ---- orphan objects and masks whose object is gone --------------------------------------

    async def scan(self) -> None:
        seen_groups: set[int] = set()
        chunk: list[ObjectInfo] = []
        last_group: int | None = None
        recovery = recovery_prefix(self.key_prefix)
        async for obj in self.storage.list_prefix(self.key_prefix):
            if obj.key.startswith(recovery):
                continue  # recovery documents: no row claims them, and they must stay
            parts = parse_key(self.key_prefix, obj.key)
            group = parts.group_id if parts else None
            if len(chunk) >= SCAN_CHUNK and group != last_group:
                await self._scan_chunk(chunk, seen_groups)
                chunk = []
            chunk.append(obj)
            last_group = group
        if chunk:
            await self._scan_chunk(chunk, seen_groups)
        # Groups with masks but not a single object listed.
        async with self.maker() as session:
            unseen = [g for g in await repo.groups_with_masks(session) if g not in seen_groups]
            for _mask_id, _group_id, key in await repo.masks_of(session, unseen, self.now):
                self._missing(_mask_id, _group_id, key)

    async def _scan_chunk(self, chunk: list[ObjectInfo], seen_groups: set[int]) -> None:
        listed = {o.key for o in chunk}
        groups = sorted(
            {p.group_id for p in (parse_key(self.key_prefix, o.key) for o in chunk) if p}
        )
        seen_groups.update(groups)
        # The listing came first: anything a row claims from now on is not in `chunk`.
        async with self.maker() as session:
            claimed = await claimed_keys(session, self.key_prefix, listed)
            for mask_id, group_id, key in await repo.masks_of(session, groups, self.now):
                if key not in listed:
                    self._missing(mask_id, group_id, key)
        orphans = decisions.orphans(chunk, claimed, self.cutoff)
        self.report.young_unclaimed += sum(1 for o in chunk if o.key not in claimed) - len(orphans)
        finding = self.report.orphan_objects
        for o in orphans:
            self.report.orphan_bytes += o.size
            finding.add(
                {
                    "key": o.key,
                    "size": o.size,
                    "last_modified": o.last_modified.isoformat() if o.last_modified else None,
                }
            )
        if self.report.apply and orphans:
            try:
                refused = await delete_refusing_none(self.storage, [o.key for o in orphans])
            except StorageError as exc:
                finding.failed += len(orphans)
                self.report.errors.append(f"deleting orphans: {exc}")
            else:
                # A key storage refuses is reported and left; the others are deleted.
                finding.failed += len(refused)
                self.report.errors.extend(f"orphan skipped, {r}" for r in refused)
                finding.acted += len(orphans) - len(refused)
                self.report.objects_deleted += len(orphans) - len(refused)

    def _missing(self, mask_id: int, group_id: int, key: str) -> None:
        self.report.missing_objects.add({"mask_id": mask_id, "group_id": group_id, "key": key})

    # ---- idempotency keys past their retention ----------------------------------------------

    async def idempotency_keys(self) -> None:
        older_than = decisions.cutoff(self.now, self.settings.janitor.idempotency_retention_seconds)
        async with self.maker() as session:
            finding = self.report.idempotency_keys
            if self.report.apply:
                finding.found = finding.acted = await repo.purge_idempotency_keys(
                    session, older_than
                )
                await session.commit()
            else:
                finding.found = await repo.count_old_idempotency_keys(session, older_than)

    # ---- tombstones past their retention ----------------------------------------------------

    async def tombstones(self) -> None:
        older_than = decisions.cutoff(self.now, self.settings.janitor.tombstone_retention_seconds)
        async with self.maker() as session:
            finding = self.report.tombstones
            if self.report.apply:
                finding.found = finding.acted = await tombstone_rows.prune(session, older_than)
                await session.commit()
            else:
                finding.found = await tombstone_rows.count_old(session, older_than)
