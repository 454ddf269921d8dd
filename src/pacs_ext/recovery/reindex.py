"""`pacs-ext reindex`: rebuild the database from the bucket alone (disaster recovery, when
the database and its backups are gone), keeping every id.

What it reads: each annotation's own document (every column: sharing, project, data,
timestamps; annotations without groups too), each complete group's metadata.json (its masks
with their ids), tombstones (a deleted annotation or group is never brought back, even if its
objects were left behind), the audit trail's exported batches, and the high-water mark of
ids: every sequence is moved past it, so no id is handed out twice after the rebuild.

Documents written before these existed (metadata.json only) still restore as before: the
annotation from its groups' documents, with empty tool, data and sharing. A group's
succeeded DICOM SEG exports that its metadata.json lists come back with it, with their ids,
when their objects are in the bucket at the listed size. Each annotation is
restored in one transaction with its groups; what exists is left as it is, so running again
adds nothing. Files a document names but storage lacks (or holds with another size or ETag)
are reported and not recorded as masks.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..core.config import DEFAULT_ALLOWED_CONTENT_TYPES
from ..legacy.metadata import BadMetadata, MetadataDoc, parse
from ..legacy.register import CHUNK
from ..legacy.run import NoProgress, Progress
from ..masks import repository as repo
from ..masks.uploads import FileRow
from ..masks.verify import MaskRow
from ..models import Annotation, AuditEvent, Mask, MaskGroup, RecoveryMark, SegExport
from ..models.base import utcnow
from ..models.mask_group import COMPLETE
from ..models.seg_export import SUCCEEDED as EXPORT_SUCCEEDED
from ..objects.claims import parse_key
from ..objects.high_water import TABLES, mark_name
from ..objects.keys import EXPORTS_DIR, METADATA_NAME
from ..storage.base import ObjectArchived, ObjectInfo, ObjectStorage, StorageError
from . import documents
from .documents import AnnotationRecord, RecoveryDocuments

FETCH_CONCURRENCY = 16
SEQUENCES = (
    "annotations",
    "mask_groups",
    "masks",
    "mask_group_files",
    "audit_events",
    "seg_exports",
)
AUDIT_CHUNK = 500


class ReindexRefused(Exception):
    pass


@dataclass
class ReindexReport:
    documents: int = 0
    annotations: int = 0
    groups: int = 0
    masks: int = 0
    exports: int = 0  # DICOM SEG exports listed in metadata.json
    groups_present: int = 0  # already in the database: left alone
    audit_events: int = 0
    deleted_skipped: int = 0  # documents of deleted annotations or groups: not restored
    # Objects under groups no document restores (never completed, deleted): the janitor
    # deletes them once older than its grace period.
    unrestored_objects: int = 0
    problems: list[str] = field(default_factory=list)
    # metadata.json documents in an archive class (Glacier): not readable until restored.
    archived: list[str] = field(default_factory=list)
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "documents": self.documents,
            "restored": {
                "annotations": self.annotations,
                "groups": self.groups,
                "masks": self.masks,
                "exports": self.exports,
                "audit_events": self.audit_events,
            },
            "groups_present": self.groups_present,
            "archived": self.archived,
            "deleted_skipped": self.deleted_skipped,
            "unrestored_objects": self.unrestored_objects,
            "problems": self.problems,
        }


async def reindex(
    storage: ObjectStorage,
    maker: async_sessionmaker[AsyncSession],
    key_prefix: str,
    *,
    merge: bool = False,
    dry_run: bool = False,
    ids_only: bool = False,
    progress: Progress | None = None,
    allowed_types: Sequence[str] = DEFAULT_ALLOWED_CONTENT_TYPES,
) -> ReindexReport:
    progress = progress or NoProgress()
    report = ReindexReport(dry_run=dry_run)
    async with maker() as session:
        count = await session.scalar(select(func.count()).select_from(Annotation))
    if ids_only:
        return await _move_sequences(storage, maker, key_prefix, report, progress)
    if count and not merge:
        raise ReindexRefused(
            f"the database already has {count} annotation(s): reindex restores into an empty "
            "database; add --merge to add only what is missing from it"
        )
    progress.phase("listing the bucket")
    listing = {o.key: o async for o in storage.list_prefix(key_prefix)}
    keys = [k for k in sorted(listing) if _is_metadata_key(k, key_prefix)]
    progress.phase("reading recovery documents")
    recovery = await documents.read(storage, listing, key_prefix, report.problems)
    report.documents = len(keys)
    progress.phase("reading metadata.json", total=len(keys))
    docs = await _fetch(storage, keys, key_prefix, allowed_types, report, progress)
    group_keys: dict[tuple[int, int], list[str]] = defaultdict(list)
    for key in listing:
        parts = parse_key(key_prefix, key)
        if parts is not None and parts.name != METADATA_NAME:
            group_keys[(parts.annotation_id, parts.group_id)].append(key)
    by_annotation: dict[int, list[MetadataDoc]] = defaultdict(list)
    for doc in docs:
        if doc.annotation.id in recovery.deleted_annotations or (
            doc.group.id in recovery.deleted_groups
        ):
            report.deleted_skipped += 1  # left behind by a deletion storage did not finish
            continue
        by_annotation[doc.annotation.id].append(doc)
    for annotation_id in recovery.annotations:
        by_annotation.setdefault(annotation_id, [])
    restoring = {(a, d.group.id) for a, group_docs in by_annotation.items() for d in group_docs}
    report.unrestored_objects = sum(
        1
        for parts in (parse_key(key_prefix, k) for k in listing)
        if parts is not None and (parts.annotation_id, parts.group_id) not in restoring
    )
    if not dry_run:
        # Before anything is restored: masks of older documents (no id) take theirs from the
        # sequence, which must already be past every id a document names, or one of them
        # could take an id a later document restores.
        async with maker() as session:
            await reset_sequences(session, _floors(recovery, group_keys, docs, []))
            await session.commit()
    progress.phase("restoring", total=len(by_annotation))
    audit_ids: list[int] = []
    try:
        for annotation_id, group_docs in sorted(by_annotation.items()):
            record = recovery.annotations.get(annotation_id)
            await _restore_one(
                maker, annotation_id, record, group_docs, listing, group_keys, report
            )
            progress.advance(1)
        progress.phase("restoring the audit trail", total=len(recovery.audit_batches))
        audit_ids = await _restore_audit(storage, maker, recovery, report, progress)
    finally:
        if not dry_run:
            # Also when restoring stopped half-way: rows already committed carry explicit
            # ids, and the next insert through the API must not collide with them. Past
            # every id the bucket names too (the high-water mark; groups left pending have
            # objects but no metadata.json), so no id is ever handed out again.
            floors = _floors(recovery, group_keys, docs, audit_ids)
            async with maker() as session:
                await reset_sequences(session, floors)
                await _keep_marks(session, recovery)
                await session.commit()
    return report


async def _move_sequences(
    storage: ObjectStorage,
    maker: async_sessionmaker[AsyncSession],
    key_prefix: str,
    report: ReindexReport,
    progress: Progress,
) -> ReindexReport:
    """Restore nothing; move every sequence past every id the bucket shows was handed out.
    For a database restored from a backup (pgBackRest, to a point in time): ids issued after
    that point are gone from it, but not from the bucket, and must never be issued again."""
    progress.phase("listing the bucket")
    listing = {o.key: o async for o in storage.list_prefix(key_prefix)}
    recovery = await documents.read(storage, listing, key_prefix, report.problems)
    group_keys: dict[tuple[int, int], list[str]] = defaultdict(list)
    for key in listing:
        parts = parse_key(key_prefix, key)
        if parts is not None:
            group_keys[(parts.annotation_id, parts.group_id)].append(key)
    if not report.dry_run:
        async with maker() as session:
            await reset_sequences(session, _floors(recovery, group_keys, [], []))
            await _keep_marks(session, recovery)
            await session.commit()
    return report


def _floors(
    recovery: RecoveryDocuments,
    group_keys: dict[tuple[int, int], list[str]],
    docs: list[MetadataDoc],
    audit_ids: list[int],
) -> dict[str, int]:
    """The largest id of each table that the bucket shows was ever handed out."""
    marks = recovery.high_water
    return {
        "annotations": max(
            [marks.get("annotations", 0)]
            + [a for a, _ in group_keys]
            + list(recovery.annotations)
            + list(recovery.deleted_annotations)
        ),
        "mask_groups": max(
            [marks.get("mask_groups", 0)]
            + [g for _, g in group_keys]
            + list(recovery.deleted_groups)
            + [d.group.id for d in docs]
        ),
        "masks": max([marks.get("masks", 0)] + [f.id or 0 for d in docs for f in d.files]),
        "audit_events": max([marks.get("audit_events", 0), *audit_ids]),
    }


async def _keep_marks(session: AsyncSession, recovery: RecoveryDocuments) -> None:
    """The rebuilt database starts from the bucket's marks: ids stay reserved. (Restored
    audit rows are not queued for export: they came from the bucket.)"""
    values = {mark_name(t): recovery.high_water.get(t, 0) for t in TABLES}
    for name, value in values.items():
        found = await session.execute(
            update(RecoveryMark)
            .where(RecoveryMark.name == name, RecoveryMark.value < value)
            .values(value=value)
        )
        if not getattr(found, "rowcount", 0) and await session.get(RecoveryMark, name) is None:
            session.add(RecoveryMark(name=name, value=value))
    await session.flush()


async def _restore_audit(
    storage: ObjectStorage,
    maker: async_sessionmaker[AsyncSession],
    recovery: RecoveryDocuments,
    report: ReindexReport,
    progress: Progress,
) -> list[int]:
    """Audit rows from their batches, with their ids; rows already present are kept."""
    restored: list[int] = []
    for key in recovery.audit_batches:
        try:
            rows = documents.audit_rows(await storage.get_bytes(key), key, report.problems)
        except StorageError as exc:
            report.problems.append(f"{key}: {exc}; skipped")
            continue
        async with maker() as session:
            for i in range(0, len(rows), AUDIT_CHUNK):
                chunk = rows[i : i + AUDIT_CHUNK]
                present = set(
                    await session.scalars(
                        select(AuditEvent.id).where(AuditEvent.id.in_([r["id"] for r in chunk]))
                    )
                )
                fresh = [r for r in chunk if r["id"] not in present]
                if fresh:
                    await session.execute(insert(AuditEvent.__table__), fresh)  # type: ignore[arg-type]
                restored.extend(r["id"] for r in chunk)
                report.audit_events += len(fresh)
            await (session.rollback() if report.dry_run else session.commit())
        progress.advance(1)
    return restored


async def _restore_one(
    maker: async_sessionmaker[AsyncSession],
    annotation_id: int,
    record: AnnotationRecord | None,
    docs: list[MetadataDoc],
    listing: dict[str, ObjectInfo],
    group_keys: dict[tuple[int, int], list[str]],
    report: ReindexReport,
) -> None:
    """One annotation with its groups in one transaction; one the database refuses is
    reported and skipped, and the others are still restored."""
    before = (report.annotations, report.groups, report.masks, len(report.problems))
    exports_before = report.exports
    async with maker() as session:
        try:
            await _restore_annotation(
                session, annotation_id, record, docs, listing, group_keys, report
            )
            await (session.rollback() if report.dry_run else session.commit())
        except SQLAlchemyError as exc:
            if isinstance(exc, OperationalError | InterfaceError):
                raise  # the database itself is in trouble: stop (sequences are still reset)
            await session.rollback()
            report.annotations, report.groups, report.masks = before[:3]
            report.exports = exports_before
            del report.problems[before[3] :]
            orig = getattr(exc, "orig", None) or exc
            reason = (str(orig).splitlines() or [type(orig).__name__])[0]
            report.problems.append(
                f"annotation {annotation_id}: the database refused it ({reason}); "
                f"skipped with its {len(docs)} group(s)"
            )


def _is_metadata_key(key: str, prefix: str) -> bool:
    parts = key[len(prefix) :].split("/")
    return len(parts) == 3 and parts[2] == METADATA_NAME


async def _fetch(
    storage: ObjectStorage,
    keys: list[str],
    key_prefix: str,
    allowed_types: Sequence[str],
    report: ReindexReport,
    progress: Progress,
) -> list[MetadataDoc]:
    gate = asyncio.Semaphore(FETCH_CONCURRENCY)

    async def one(key: str) -> MetadataDoc | None:
        async with gate:
            try:
                data = await storage.get_bytes(key)
                return parse(data, key, key_prefix, allowed_types)
            except ObjectArchived:
                # Written before metadata.json was kept out of transitions: not an error of
                # the bucket, but its groups cannot come back until it is restored.
                report.archived.append(key)
                report.problems.append(
                    f"{key}: archived, not readable until restored (aws s3api restore-object "
                    f"--key {key} ...), then run reindex again with --merge; skipped"
                )
                return None
            except (StorageError, BadMetadata) as exc:
                report.problems.append(f"{key}: {exc}; skipped")
                return None
            finally:
                progress.advance(1)

    return [d for d in await asyncio.gather(*(one(k) for k in keys)) if d is not None]


async def _restore_annotation(
    session: AsyncSession,
    annotation_id: int,
    record: AnnotationRecord | None,
    docs: list[MetadataDoc],
    listing: dict[str, ObjectInfo],
    group_keys: dict[tuple[int, int], list[str]],
    report: ReindexReport,
) -> None:
    existing_groups = await _existing_groups(session, [d.group.id for d in docs])
    if await session.get(Annotation, annotation_id) is None:
        await session.execute(
            insert(Annotation.__table__),  # type: ignore[arg-type]
            [_annotation_row(record, docs, report)],
        )
        report.annotations += 1
    await _restore_groups(
        session, annotation_id, docs, existing_groups, listing, group_keys, report
    )


def _annotation_row(
    record: AnnotationRecord | None, docs: list[MetadataDoc], report: ReindexReport
) -> dict[str, Any]:
    """From the annotation's own document; without one (written before issue 19), from its
    groups' metadata.json, with what they do not hold left empty."""
    if record is not None:
        return record.model_dump()
    first = docs[0].annotation
    for doc in docs[1:]:
        if doc.annotation != first:
            report.problems.append(
                f"annotation {first.id}: groups {docs[0].group.id} and {doc.group.id} "
                "disagree on its owner or UIDs; restored from the first"
            )
            break
    created = min((d.group.created_at or d.group.completed_at or utcnow()) for d in docs)
    return {
        "id": first.id,
        **first.model_dump(exclude={"id"}),
        "tool_name": None,
        "tool_version": None,
        "viewer_software": None,
        "description": None,
        "data": {},
        "measurement_values": [],
        "is_shared": False,
        "created_at": created,
        "updated_at": created,
    }


async def _restore_groups(
    session: AsyncSession,
    annotation_id: int,
    docs: list[MetadataDoc],
    existing_groups: dict[int, int],
    listing: dict[str, ObjectInfo],
    group_keys: dict[tuple[int, int], list[str]],
    report: ReindexReport,
) -> None:
    for doc in docs:
        owner = existing_groups.get(doc.group.id)
        if owner is not None:
            if owner != annotation_id:
                report.problems.append(
                    f"group {doc.group.id}: in the database under annotation {owner}, "
                    f"in the bucket under {annotation_id}; left as it is"
                )
            else:
                report.groups_present += 1
            continue
        keys = group_keys.get((annotation_id, doc.group.id), [])
        await _restore_group(session, annotation_id, doc, listing, keys, report)


async def _existing_groups(session: AsyncSession, ids: list[int]) -> dict[int, int]:
    out: dict[int, int] = {}
    for i in range(0, len(ids), CHUNK):
        rows = await session.execute(
            select(MaskGroup.id, MaskGroup.annotation_id).where(
                MaskGroup.id.in_(ids[i : i + CHUNK])
            )
        )
        out.update((int(g), int(a)) for g, a in rows.tuples())
    return out


async def _restore_group(
    session: AsyncSession,
    annotation_id: int,
    doc: MetadataDoc,
    listing: dict[str, ObjectInfo],
    stored_keys: list[str],
    report: ReindexReport,
) -> None:
    g = doc.group
    completed: datetime = g.completed_at or g.created_at or utcnow()
    await session.execute(
        insert(MaskGroup.__table__),  # type: ignore[arg-type]
        [
            {
                **g.model_dump(exclude={"created_at", "completed_at", "updated_at"}),
                "annotation_id": annotation_id,
                "status": COMPLETE,
                "upload_expires_at": None,
                "created_at": g.created_at or completed,
                "updated_at": g.updated_at or completed,
                "completed_at": completed,
            }
        ],
    )
    masks: list[dict[str, object]] = []
    declared: list[FileRow] = []
    named = set()
    for f in doc.files:
        named.add(f.key)
        obj = listing.get(f.key)
        problem = _file_problem(f.size, f.etag, obj)
        if problem:
            report.problems.append(f"{f.key}: {problem}; not restored")
            continue
        assert obj is not None
        row = MaskRow(
            created_at=completed,
            group_id=g.id,
            slice_index=f.slice_index,
            sop_instance_uid=f.sop_instance_uid,
            label_name=f.label_name,
            filename=f.filename,
            object_key=f.key,
            mime_type=f.content_type,
            file_size=obj.size,
            md5=f.md5,
            etag=obj.etag,
            sha256=f.sha256,
            width=f.width,
            height=f.height,
        ).values()
        if f.id is not None:
            row["id"] = f.id  # the original id (documents before issue 19 have none)
        masks.append(row)
        declared.append(
            FileRow(
                group_id=g.id,
                filename=f.filename,
                object_key=f.key,
                content_type=f.content_type,
                size=obj.size,
                md5=f.md5,
                sha256=f.sha256,
                slice_index=f.slice_index,
                label_name=f.label_name,
                sop_instance_uid=f.sop_instance_uid,
                width=f.width,
                height=f.height,
            )
        )
    await repo.insert_files(session, declared)
    # Some rows with their ids, some without (older documents): keys differ, so one by one
    # kind; ids given first so new ones are taken after them.
    with_ids = [m for m in masks if "id" in m]
    for batch in (with_ids, [m for m in masks if "id" not in m]):
        for i in range(0, len(batch), CHUNK):
            await session.execute(insert(Mask.__table__), batch[i : i + CHUNK])  # type: ignore[arg-type]
    await _restore_exports(session, annotation_id, doc, listing, completed, report)
    extra = [k for k in stored_keys if k not in named]
    if extra:
        report.problems.append(
            f"{extra[0].rsplit('/', 1)[0]}/: {len(extra)} object(s) not named in its "
            f"metadata.json (e.g. {extra[0]}); not restored"
        )
    report.groups += 1
    report.masks += len(masks)


async def _restore_exports(
    session: AsyncSession,
    annotation_id: int,
    doc: MetadataDoc,
    listing: dict[str, ObjectInfo],
    completed: datetime,
    report: ReindexReport,
) -> None:
    """The group's succeeded DICOM SEG exports its document lists, with their ids, when
    their objects are still in the bucket, whole."""
    rows = []
    for e in doc.exports:
        obj = listing.get(e.key)
        tail = f"{doc.annotation.id}/{doc.group.id}/{EXPORTS_DIR}/{e.id}.dcm"
        if e.key != tail and not e.key.endswith("/" + tail):
            problem = f"not its group's export key (…/{tail})"
        elif obj is None:
            problem = "listed in metadata.json but missing from storage"
        elif e.size is not None and obj.size != e.size:
            problem = f"{obj.size} bytes in storage, {e.size} in metadata.json"
        else:
            problem = None
        if problem:
            report.problems.append(f"export {e.id} ({e.key}): {problem}; not restored")
            continue
        assert obj is not None
        finished = e.finished_at or completed
        rows.append(
            {
                "id": e.id,
                "group_id": doc.group.id,
                "annotation_id": annotation_id,
                "created_by": e.created_by or doc.group.created_by,
                "format": e.format,
                "segmentation_type": e.segmentation_type,
                "store": e.stored,
                "status": EXPORT_SUCCEEDED,
                "phase": "done",
                "progress": 1.0,
                "object_key": e.key,
                "file_size": obj.size,
                "frames": e.frames,
                "series_instance_uid": e.series_instance_uid,
                "sop_instance_uid": e.sop_instance_uid,
                "stored": e.stored,
                "timings": {},
                "created_at": finished,
                "updated_at": finished,
                "finished_at": finished,
            }
        )
    if rows:
        await session.execute(insert(SegExport.__table__), rows)  # type: ignore[arg-type]
        report.exports += len(rows)


def _file_problem(size: int, etag: str | None, obj: ObjectInfo | None) -> str | None:
    if obj is None:
        return "named in metadata.json but missing from storage"
    if obj.size != size:
        return f"{obj.size} bytes in storage, {size} in metadata.json"
    if etag and obj.etag and etag.lower() != obj.etag.lower():
        return f"ETag {obj.etag} in storage, {etag} in metadata.json"
    return None


async def reset_sequences(session: AsyncSession, floors: dict[str, int] | None = None) -> None:
    """Move every id sequence past the largest id (and past `floors`, ids the bucket names),
    never backwards: rows inserted with explicit ids leave PostgreSQL's sequences behind, and
    an id handed out again would put a new user's objects under an old signed URL's key.
    SQLite keeps its AUTOINCREMENT high-water mark in sqlite_sequence."""
    dialect = (await session.connection()).dialect.name
    for table in SEQUENCES:
        floor = (floors or {}).get(table, 0)
        if dialect == "postgresql":
            seq = f"pg_get_serial_sequence('{table}', 'id')"
            await session.execute(
                text(
                    f"SELECT setval({seq}, GREATEST(COALESCE(MAX(id), 0), :floor, "  # noqa: S608 - fixed names
                    f"COALESCE(pg_sequence_last_value({seq}::regclass), 0), 1), "
                    f"COALESCE(MAX(id), 0) > 0 OR :floor > 0 "
                    f"OR pg_sequence_last_value({seq}::regclass) IS NOT NULL) FROM {table}"
                ),
                {"floor": floor},
            )
        elif dialect == "sqlite":
            largest = await session.scalar(text(f"SELECT COALESCE(MAX(id), 0) FROM {table}"))  # noqa: S608
            high = max(int(largest or 0), floor)
            if high <= 0:
                continue
            updated = await session.execute(
                text("UPDATE sqlite_sequence SET seq = MAX(seq, :high) WHERE name = :name"),
                {"high": high, "name": table},
            )
            if not updated.rowcount:  # type: ignore[attr-defined]
                await session.execute(
                    text("INSERT INTO sqlite_sequence (name, seq) VALUES (:name, :high)"),
                    {"high": high, "name": table},
                )
