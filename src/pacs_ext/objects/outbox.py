"""metadata.json is written from committed state only, through an outbox.

A change that a group's metadata.json shows (complete, a PATCH, a mask deleted) calls
`request()` in its own transaction: one `metadata_outbox` row per group, with a new token.
After the commit, `flush()` writes the document and removes the row. A process that dies in
between leaves the row: a retry of the request, the next change of the group, or the janitor
flushes it. So metadata.json is never ahead of the database (it was written before the commit
before), and never stays behind it.

Writers of one group are serialized by a claim, not by a lock held across the write: under
load (32 clients) holding a pooled connection and the group's row lock for the storage PUT
made requests queue seconds for the pool. `flush()` claims the outbox row in a short
transaction (`claimed_by`, committed; one writer per group at a time, a lock per group in
this process besides), reads committed state, releases its connection, PUTs the document
holding nothing, then removes the row only if it still carries the token it claimed. A change
committed meanwhile has moved the token (its `request()` rewrites the row): the claimant
writes again, the newer state, so an older document never lands after a newer one. Another
process's writer waits for the claim to go (or its lease to pass: a writer that died). The
claim mechanics are objects/claimed_rows.py's, shared with recovery_outbox.

A group DELETE no longer waits for a write in flight: its deletion lists the group's prefix
after its commit, so a document that lands later is removed by the writer itself, which
looks for the group after its PUT.
"""

from __future__ import annotations

import asyncio
import json
import uuid
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import anyio.to_thread
import structlog
from sqlalchemy import and_, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from ..models import Annotation, Mask, MaskGroup, MetadataOutbox, SegExport
from ..models.base import utcnow
from ..models.mask_group import COMPLETE
from ..models.seg_export import LISTING, RUNNING, SUCCEEDED
from ..storage.base import ObjectNotFound, ObjectStorage
from .claimed_rows import (
    PUT_TIMEOUT_SECONDS,
    WAIT_SECONDS,
    SessionFactory,
    Where,
    claim_row,
    release_quietly,
    remove_if_unmoved,
)
from .keys import METADATA_NAME, object_key
from .metadata import FILE_FIELDS, assemble, document_head, files_json

log = structlog.get_logger(__name__)

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
    new_session: SessionFactory,
    storage: ObjectStorage,
    key_prefix: str,
    group_id: int,
    *,
    wait_seconds: float = WAIT_SECONDS,
) -> bool:
    """Write the group's metadata.json from committed state if a row asks for it.

    True when a document was written. Raises StorageError (the row stays for a retry), or
    ClaimedElsewhere when another writer still holds the row after `wait_seconds`."""
    written = False
    async with _lock(group_id):
        claim = uuid.uuid4().hex
        while True:
            claimed = await _claim(new_session, key_prefix, group_id, claim, wait_seconds)
            if claimed is None:
                return written
            token, put = claimed
            try:
                if put is not None:
                    async with asyncio.timeout(PUT_TIMEOUT_SECONDS):
                        await storage.put_bytes(put.key, put.document, "application/json")
            except BaseException:
                await release_quietly(new_session, MetadataOutbox, _row(group_id), claim)
                raise
            done, gone = await _finish(new_session, group_id, token, claim)
            if put is not None and gone:
                # Deleted while we wrote: its deletion may have listed the prefix before our
                # PUT. (Should this fail, the janitor finds the object under no group.)
                await storage.delete_many([put.key])
            written = written or (put is not None and not gone)
            if done:
                return written
            # A change committed while we wrote (the token moved): write its newer state.


@dataclass(slots=True)
class _Put:
    key: str
    document: bytes


def _row(group_id: int) -> Where:
    return (MetadataOutbox.group_id == group_id,)


async def _claim(
    new_session: SessionFactory, key_prefix: str, group_id: int, claim: str, wait_seconds: float
) -> tuple[str, _Put | None] | None:
    """Claim the group's outbox row and read the document of committed state, in one short
    transaction: (the row's token, the document or None when there is none to write); None
    when nothing is requested."""

    async def read(session: AsyncSession) -> _Put | None:
        return await _read(session, key_prefix, group_id)

    busy = f"metadata.json of group {group_id} is being written"
    return await claim_row(
        new_session,
        MetadataOutbox,
        _row(group_id),
        claim,
        read,
        wait_seconds=wait_seconds,
        busy=busy,
    )


async def _read(session: AsyncSession, key_prefix: str, group_id: int) -> _Put | None:
    group = await session.get(MaskGroup, group_id)
    annotation = await session.get(Annotation, group.annotation_id) if group else None
    if group is None or annotation is None or group.status != COMPLETE:
        # Pending, expired or deleted: nothing to write (a deletion removes the document).
        return None
    document = await _document(session, annotation, group)
    return _Put(object_key(key_prefix, annotation.id, group_id, METADATA_NAME), document)


async def _finish(
    new_session: SessionFactory, group_id: int, token: str, claim: str
) -> tuple[bool, bool]:
    """(done, gone): the row removed if no change came meanwhile, else the claim given
    back; and whether the group is gone (deleted while we wrote)."""
    async with new_session() as session:
        gone = await session.get(MaskGroup, group_id) is None
        done = await remove_if_unmoved(session, MetadataOutbox, _row(group_id), token, claim)
        await session.commit()
        return done, gone


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
        .where(
            SegExport.group_id == group_id,
            or_(
                SegExport.status == SUCCEEDED,
                and_(SegExport.status == RUNNING, SegExport.phase == LISTING),
            ),
        )
        .order_by(SegExport.id)
    )
    return rows.all()
