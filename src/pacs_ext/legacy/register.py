"""Record migrated files as masks of the groups the database knows, and write metadata.json.

Runs over every local file whose identical copy is in the bucket (copied now or earlier), so an
interrupted migration converges on the next run. Each group is its own transaction; its
metadata.json (rebuilt from the database, as `complete` writes it) is written after the commit
through the metadata outbox, so it never shows what the database does not hold; if writing it
fails, the next run, the janitor or the API writes it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..masks import repository as repo
from ..masks.uploads import FileRow
from ..masks.verify import MaskRow
from ..models import Annotation, Mask, MaskGroup, MaskGroupFile
from ..models.base import utcnow
from ..models.mask_group import COMPLETE
from ..objects import outbox
from ..objects.keys import METADATA_NAME, object_key, parse_slice_filename
from ..storage.base import ObjectStorage, StorageError
from .plan import Present
from .tree import content_type_for

CHUNK = 500  # ids or keys per IN list (SQLite's bound-parameter limit)


@dataclass
class Registration:
    groups: int = 0  # groups that got masks, were completed, or got their metadata.json
    masks_added: int = 0
    masks_updated: int = 0
    metadata_written: int = 0
    # Groups of the source the database does not know: copied, not registered.
    unknown: dict[tuple[int, int], int] = field(default_factory=dict)
    # A group id the database has under another annotation.
    conflicts: list[str] = field(default_factory=list)
    # A pending group that declared files the folder does not have: left as it is.
    pending: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


async def known_groups(
    maker: async_sessionmaker[AsyncSession], group_ids: Iterable[int]
) -> dict[int, int]:
    """group id → annotation id, for the ids that exist."""
    ids = sorted(set(group_ids))
    out: dict[int, int] = {}
    async with maker() as session:
        for i in range(0, len(ids), CHUNK):
            rows = await session.execute(
                select(MaskGroup.id, MaskGroup.annotation_id).where(
                    MaskGroup.id.in_(ids[i : i + CHUNK])
                )
            )
            out.update((int(g), int(a)) for g, a in rows.tuples())
    return out


async def keys_in_database(
    maker: async_sessionmaker[AsyncSession], keys: Iterable[str]
) -> set[str]:
    """The keys that are masks, or files declared by a group (being uploaded through the API)."""
    wanted = sorted(set(keys))
    found: set[str] = set()
    async with maker() as session:
        for i in range(0, len(wanted), CHUNK):
            chunk = wanted[i : i + CHUNK]
            for column in (Mask.object_key, MaskGroupFile.object_key):
                rows = await session.scalars(select(column).where(column.in_(chunk)))
                found.update(rows)
    return found


async def register(
    maker: async_sessionmaker[AsyncSession],
    storage: ObjectStorage,
    key_prefix: str,
    present: Sequence[Present],
    stored_keys: set[str],
    *,
    dry_run: bool = False,
) -> Registration:
    result = Registration()
    by_group: dict[tuple[int, int], list[Present]] = defaultdict(list)
    for p in present:
        by_group[p.file.group].append(p)
    known = await known_groups(maker, (g for _, g in by_group))
    for (annotation_id, group_id), files in sorted(by_group.items()):
        owner = known.get(group_id)
        if owner is None:
            result.unknown[(annotation_id, group_id)] = len(files)
            continue
        if owner != annotation_id:
            result.conflicts.append(
                f"{annotation_id}/{group_id}: group {group_id} belongs to annotation {owner} "
                "in the database; not registered"
            )
            continue
        metadata_key = object_key(key_prefix, annotation_id, group_id, METADATA_NAME)
        try:
            async with maker() as session:
                await _register_group(
                    session,
                    storage,
                    result,
                    annotation_id,
                    group_id,
                    files,
                    metadata_key,
                    has_metadata=metadata_key in stored_keys,
                    dry_run=dry_run,
                )
                await (session.rollback() if dry_run else session.commit())
            if not dry_run:
                await outbox.flush(maker, storage, key_prefix, group_id)
        except StorageError as exc:
            result.failed.append((f"{annotation_id}/{group_id}/{METADATA_NAME}", str(exc)))
    return result


async def _register_group(
    session: AsyncSession,
    storage: ObjectStorage,
    result: Registration,
    annotation_id: int,
    group_id: int,
    files: Sequence[Present],
    metadata_key: str,
    *,
    has_metadata: bool,
    dry_run: bool,
) -> None:
    group = await session.get(MaskGroup, group_id)
    annotation = await session.get(Annotation, annotation_id)
    assert group is not None
    assert annotation is not None
    masks = {m.object_key: m for m in await repo.all_masks(session, group_id)}
    declared = {f.filename for f in await repo.declared_files(session, group_id)}
    now = utcnow()
    new_masks: list[MaskRow] = []
    new_declared: list[FileRow] = []
    updated = 0
    for p in files:
        row = _mask_row(group_id, p, now)
        existing = masks.get(p.key)
        if existing is None:
            new_masks.append(row)
        elif (existing.file_size, existing.md5, existing.etag) != (p.size, p.md5, p.etag):
            # The object was just verified against the local file: it is the truth now.
            existing.file_size, existing.md5, existing.etag = p.size, p.md5, p.etag
            updated += 1
        if p.file.name not in declared:
            new_declared.append(_declared_row(row))
    complete = group.status == COMPLETE
    if not (new_masks or new_declared or updated) and complete and has_metadata:
        return
    masked = {m.filename for m in masks.values()} | {p.file.name for p in files}
    lacking = sorted(declared - masked)
    if not complete and lacking:
        # Masks belong to complete groups only: a pending group with masks would show a
        # mask_count while it is not complete, and its expiry could not remove them. So
        # nothing is recorded; its objects stay claimed by its declared files until it is
        # completed through the API or the janitor expires it (and removes them).
        result.pending.append(
            f"{annotation_id}/{group_id}: pending, and {len(lacking)} declared file(s) are "
            f"not in the folder (e.g. {lacking[0]}); not registered: complete it through "
            "the API once they are uploaded, or let the janitor expire it"
        )
        return
    result.groups += 1
    result.masks_added += len(new_masks)
    result.masks_updated += updated
    result.metadata_written += 1
    if dry_run:
        return
    await repo.insert_masks(session, new_masks)
    await repo.insert_files(session, new_declared)
    await session.flush()
    all_masks = await repo.all_masks(session, group_id)
    group.slice_count = len({m.slice_index for m in all_masks if m.slice_index is not None})
    if not complete:
        group.status = COMPLETE
        group.completed_at = group.completed_at or now
    group.updated_at = now
    await session.flush()
    # Written after the commit, from committed state (masks/outbox.py).
    await outbox.request(session, annotation_id, group_id)


def _mask_row(group_id: int, p: Present, now: datetime) -> MaskRow:
    parsed = parse_slice_filename(p.file.name)
    return MaskRow(
        created_at=now,
        group_id=group_id,
        slice_index=parsed[0] if parsed else None,
        sop_instance_uid=None,
        label_name=parsed[1] if parsed else None,
        filename=p.file.name,
        object_key=p.key,
        mime_type=content_type_for(p.file.name),
        file_size=p.size,
        md5=p.md5,
        etag=p.etag,
        sha256=None,
        width=None,
        height=None,
    )


def _declared_row(mask: MaskRow) -> FileRow:
    return FileRow(
        group_id=mask.group_id,
        filename=mask.filename,
        object_key=mask.object_key,
        content_type=mask.mime_type,
        size=mask.file_size,
        md5=mask.md5,
        sha256=None,
        slice_index=mask.slice_index,
        label_name=mask.label_name,
        sop_instance_uid=None,
        width=None,
        height=None,
    )
