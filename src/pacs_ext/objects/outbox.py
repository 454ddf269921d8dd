"""metadata.json is written from committed state only, through an outbox.

A change that a group's metadata.json shows (complete, a PATCH, a mask deleted) calls
`request()` in its own transaction: one `metadata_outbox` row per group, with a new token.
After the commit, `flush()` writes the document and removes the row. A process that dies in
between leaves the row: a retry of the request, the next change of the group, or the janitor
flushes it. So metadata.json is never ahead of the database (it was written before the commit
before), and never stays behind it.

Writers of one group are serialized: `flush()` holds the group's outbox row locked (FOR
UPDATE on PostgreSQL; the database's write lock on SQLite, plus a lock per group in this
process) while it reads committed state and writes the document, and removes the row only if
it still carries the token it read. A change committed meanwhile waits for the lock (its
`request()` touches the same row) and then flushes its own, newer state.
"""

from __future__ import annotations

import asyncio
import json
import uuid
import weakref
from collections.abc import Callable, Sequence

import anyio.to_thread
import structlog
from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from ..models import Annotation, Mask, MaskGroup, MetadataOutbox, SegExport
from ..models.base import utcnow
from ..models.mask_group import COMPLETE
from ..models.seg_export import SUCCEEDED
from ..storage.base import ObjectNotFound, ObjectStorage
from .keys import METADATA_NAME, object_key
from .metadata import FILE_FIELDS, assemble, document_head, files_json

log = structlog.get_logger(__name__)

SessionFactory = Callable[[], AsyncSession]
_locks: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()


def _lock(group_id: int) -> asyncio.Lock:
    lock = _locks.get(group_id)
    if lock is None:
        lock = _locks[group_id] = asyncio.Lock()
    return lock


async def request(session: AsyncSession, annotation_id: int, group_id: int) -> None:
    """Ask for the group's metadata.json to be rewritten once this transaction commits."""
    values = {
        "group_id": group_id,
        "annotation_id": annotation_id,
        "token": uuid.uuid4().hex,
        "requested_at": utcnow(),
    }
    dialect = (await session.connection()).dialect.name
    stmt: postgresql.Insert | sqlite.Insert
    if dialect == "postgresql":
        stmt = postgresql.insert(MetadataOutbox)
    else:
        stmt = sqlite.insert(MetadataOutbox)
    await session.execute(
        stmt.values(values).on_conflict_do_update(
            index_elements=["group_id"],
            set_={k: values[k] for k in ("annotation_id", "token", "requested_at")},
        )
    )


async def request_for_annotation(session: AsyncSession, annotation_id: int) -> list[int]:
    """request() for every complete group of the annotation (its documents name its UIDs)."""
    ids = list(
        await session.scalars(
            select(MaskGroup.id).where(
                MaskGroup.annotation_id == annotation_id, MaskGroup.status == COMPLETE
            )
        )
    )
    for group_id in ids:
        await request(session, annotation_id, group_id)
    return ids


async def flush(
    new_session: SessionFactory, storage: ObjectStorage, key_prefix: str, group_id: int
) -> bool:
    """Write the group's metadata.json from committed state if a row asks for it.

    True when a document was written. Raises StorageError (the row stays for a retry)."""
    async with _lock(group_id), new_session() as session:
        group, token = await _lock_rows(session, group_id)
        if token is None:
            await session.rollback()
            return False
        annotation = await session.get(Annotation, group.annotation_id) if group else None
        written = False
        if group is not None and annotation is not None and group.status == COMPLETE:
            document = await _document(session, annotation, group)
            await storage.put_bytes(
                object_key(key_prefix, annotation.id, group_id, METADATA_NAME),
                document,
                "application/json",
            )
            written = True
        # Pending, expired or deleted: nothing to write (a deletion removes the document).
        await session.execute(
            delete(MetadataOutbox).where(
                MetadataOutbox.group_id == group_id, MetadataOutbox.token == token
            )
        )
        await session.commit()
        return written


async def _lock_rows(session: AsyncSession, group_id: int) -> tuple[MaskGroup | None, str | None]:
    """The group and the outbox row's token, both locked until this transaction ends.

    The group row first, then the outbox row: the order in which a change takes them (it
    updates the group, then requests its document), so the two never wait on each other in
    a cycle. Holding the group row also keeps a group DELETE from committing while its
    document is being written (its deletion lists the prefix after its commit, and so
    removes the document too)."""
    if (await session.connection()).dialect.name == "sqlite":
        # A write first: it takes SQLite's write lock (even when no row matches), which other
        # writers (other processes too) wait for, so nothing changes meanwhile.
        await session.execute(
            update(MetadataOutbox)
            .where(MetadataOutbox.group_id == group_id)
            .values(token=MetadataOutbox.token)
        )
    group = await session.scalar(
        select(MaskGroup).where(MaskGroup.id == group_id).with_for_update()
    )
    token: str | None = await session.scalar(
        select(MetadataOutbox.token).where(MetadataOutbox.group_id == group_id).with_for_update()
    )
    return group, token


async def flush_quietly(
    new_session: SessionFactory, storage: ObjectStorage, key_prefix: str, group_id: int
) -> None:
    """After a commit: the change is durable whatever happens here; a document that cannot be
    written now stays requested (a retry or the janitor writes it)."""
    try:
        await flush(new_session, storage, key_prefix, group_id)
    except Exception as exc:  # the response must still tell what was committed
        log.warning(
            "metadata.deferred", group_id=group_id, error=f"{type(exc).__name__}: {exc}"[:300]
        )


async def requested(session: AsyncSession) -> Sequence[int]:
    """Groups whose metadata.json is still to be written."""
    rows = await session.scalars(select(MetadataOutbox.group_id).order_by(MetadataOutbox.group_id))
    return rows.all()


async def requested_for_annotation(session: AsyncSession, annotation_id: int) -> list[int]:
    rows = await session.scalars(
        select(MetadataOutbox.group_id).where(MetadataOutbox.annotation_id == annotation_id)
    )
    return list(rows)


async def stored_differs(
    session: AsyncSession, storage: ObjectStorage, key_prefix: str, group: MaskGroup
) -> bool:
    """Does the group's stored metadata.json say something else than the database?"""
    annotation = await session.get(Annotation, group.annotation_id)
    if annotation is None:
        return False
    expected = await _document(session, annotation, group)
    try:
        stored = await storage.get_bytes(
            object_key(key_prefix, group.annotation_id, group.id, METADATA_NAME)
        )
    except ObjectNotFound:
        return True
    if stored == expected:
        # The usual case, and cheap: parsing two documents of a 100,000-file group takes
        # ~0.5 s of the event loop (json.loads holds it). Bytes differ: compare what they say.
        return False
    try:
        return bool(json.loads(stored) != json.loads(expected))
    except ValueError:
        return True


# Masks per query and per to_json call while a document is made: each page's Python work on
# the event loop stays around 10-20 ms, and the loop serves other requests between pages.
PAGE = 2000
_FILE_COLUMNS = [Mask.__table__.c[name] for name in FILE_FIELDS]


async def _document(session: AsyncSession, annotation: Annotation, group: MaskGroup) -> bytes:
    """The group's metadata.json from the database, read and serialized page by page (a
    group may hold 100,000 masks: one query and one to_json over all of them held the event
    loop for seconds; see objects/metadata.py)."""
    table = Mask.__table__
    pieces: list[bytes] = []
    last_id = 0
    while True:
        result = await session.execute(
            select(*_FILE_COLUMNS)  # the id among them
            .where(table.c.group_id == group.id, table.c.id > last_id)
            .order_by(table.c.id)
            .limit(PAGE)
        )
        rows = result.mappings().all()
        pieces.append(files_json(rows))
        if len(rows) < PAGE:
            # Joining 34 MB (100,000 files) took ~40 ms of CPU: off the loop.
            head = document_head(annotation, group, await _exports_of(session, group.id))
            return await anyio.to_thread.run_sync(assemble, head, pieces)
        last_id = rows[-1]["id"]


async def _exports_of(session: AsyncSession, group_id: int) -> Sequence[SegExport]:
    rows = await session.scalars(
        select(SegExport)
        .where(SegExport.group_id == group_id, SegExport.status == SUCCEEDED)
        .order_by(SegExport.id)
    )
    return rows.all()
