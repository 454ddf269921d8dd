"""Recovery documents are written from committed state only, through an outbox (the same
design as metadata.json's, objects/outbox.py).

A change an annotation's document shows (create, update, delete) or a group deletion calls
`request()` in its own transaction; after the commit `flush()` writes the document from the
rows and removes the outbox row if it still carries the token it read. A process that dies in
between leaves the row: the janitor writes it. So a document is never ahead of the database,
and never stays behind it for longer than a janitor interval.

Writers claim the row, as metadata.json's do (objects/claimed_rows.py): the claim, and the
read of committed state, in one short transaction (the annotation's row, then the outbox row,
locked only for it); the PUT holding no connection and no lock; then the row removed only if
its token did not move, else the newer state written in turn. Holding the annotation's row
lock across the PUT, as before, stopped every group create of that annotation (its foreign
key check waits for that lock) for as long as storage took to answer.
"""

from __future__ import annotations

import asyncio
import uuid
import weakref
from collections.abc import Sequence

import structlog
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from ..models import Annotation, RecoveryOutbox, Tombstone
from ..models import tombstone as tomb
from ..models.base import utcnow
from ..models.recovery import ANNOTATION_DOC, GROUP_TOMBSTONE
from ..storage.base import ObjectStorage
from .claimed_rows import (
    PUT_TIMEOUT_SECONDS,
    WAIT_SECONDS,
    SessionFactory,
    Where,
    claim_row,
    release_quietly,
    remove_if_unmoved,
)
from .keys import annotation_document_key, group_tombstone_key
from .recovery_docs import annotation_document, tombstone_document

log = structlog.get_logger(__name__)

_locks: weakref.WeakValueDictionary[tuple[str, int], asyncio.Lock] = weakref.WeakValueDictionary()
# The tombstone kind each document kind stands for.
_TOMBSTONE_KIND = {ANNOTATION_DOC: tomb.ANNOTATION, GROUP_TOMBSTONE: tomb.MASK_GROUP}


def _lock(kind: str, object_id: int) -> asyncio.Lock:
    lock = _locks.get((kind, object_id))
    if lock is None:
        lock = _locks[(kind, object_id)] = asyncio.Lock()
    return lock


async def request(session: AsyncSession, kind: str, object_id: int) -> None:
    """Ask for the document of (kind, object_id) to be written once this transaction commits."""
    values = {
        "kind": kind,
        "object_id": object_id,
        "token": uuid.uuid4().hex,
        "requested_at": utcnow(),
    }
    dialect = (await session.connection()).dialect.name
    stmt: postgresql.Insert | sqlite.Insert
    stmt = (
        postgresql.insert(RecoveryOutbox)
        if dialect == "postgresql"
        else sqlite.insert(RecoveryOutbox)
    )
    await session.execute(
        stmt.values(values).on_conflict_do_update(
            index_elements=["kind", "object_id"],
            set_={k: values[k] for k in ("token", "requested_at")},
        )
    )


async def flush(
    new_session: SessionFactory,
    storage: ObjectStorage,
    key_prefix: str,
    kind: str,
    object_id: int,
    *,
    wait_seconds: float = WAIT_SECONDS,
) -> bool:
    """Write the document from committed state if a row asks for it; True when written.
    Raises StorageError (the row stays for the janitor), or ClaimedElsewhere when another
    process's writer still holds the row after `wait_seconds`."""
    written = False
    async with _lock(kind, object_id):
        claim = uuid.uuid4().hex
        while True:
            claimed = await _claim(new_session, key_prefix, kind, object_id, claim, wait_seconds)
            if claimed is None:
                return written
            token, (key, document) = claimed
            try:
                if document is not None:
                    async with asyncio.timeout(PUT_TIMEOUT_SECONDS):
                        await storage.put_bytes(key, document, "application/json")
            except BaseException:
                await release_quietly(new_session, RecoveryOutbox, _row(kind, object_id), claim)
                raise
            written = written or document is not None
            if await _finish(new_session, kind, object_id, token, claim):
                return written
            # A change committed while we wrote (the token moved): write its newer state.


def _row(kind: str, object_id: int) -> Where:
    return (RecoveryOutbox.kind == kind, RecoveryOutbox.object_id == object_id)


async def _claim(
    new_session: SessionFactory,
    key_prefix: str,
    kind: str,
    object_id: int,
    claim: str,
    wait_seconds: float,
) -> tuple[str, tuple[str, bytes | None]] | None:
    """Claim the row and read the document of committed state, in one short transaction:
    (the row's token, (the key, the document or None when there is none to write)); None
    when nothing is requested."""
    annotation: Annotation | None = None

    async def lock_annotation(session: AsyncSession) -> None:
        nonlocal annotation
        if kind == ANNOTATION_DOC:
            # The annotation's row before the outbox row: the order an update takes them in.
            annotation = await session.scalar(
                select(Annotation).where(Annotation.id == object_id).with_for_update()
            )

    async def read(session: AsyncSession) -> tuple[str, bytes | None]:
        return await _document(session, key_prefix, kind, object_id, annotation)

    return await claim_row(
        new_session,
        RecoveryOutbox,
        _row(kind, object_id),
        claim,
        read,
        wait_seconds=wait_seconds,
        busy=f"the recovery document of {kind} {object_id} is being written",
        lock_first=lock_annotation,
    )


async def _finish(
    new_session: SessionFactory, kind: str, object_id: int, token: str, claim: str
) -> bool:
    """The row removed if no change came meanwhile (True), else the claim given back."""
    async with new_session() as session:
        done = await remove_if_unmoved(session, RecoveryOutbox, _row(kind, object_id), token, claim)
        await session.commit()
        return done


async def _document(
    session: AsyncSession,
    key_prefix: str,
    kind: str,
    object_id: int,
    annotation: Annotation | None,
) -> tuple[str, bytes | None]:
    key = (
        annotation_document_key(key_prefix, object_id)
        if kind == ANNOTATION_DOC
        else group_tombstone_key(key_prefix, object_id)
    )
    if annotation is not None:
        return key, annotation_document(annotation)
    buried = await session.scalar(
        select(Tombstone)
        .where(Tombstone.kind == _TOMBSTONE_KIND[kind], Tombstone.object_id == object_id)
        .order_by(Tombstone.id.desc())
        .limit(1)
    )
    # Neither a row nor a tombstone: the change was rolled back, or the tombstone is past
    # its retention (its document was written long ago). Nothing to write.
    return key, None if buried is None else tombstone_document(buried)


async def flush_quietly(
    new_session: SessionFactory, storage: ObjectStorage, key_prefix: str, kind: str, object_id: int
) -> None:
    """After a commit: the change stands whatever happens here; the janitor retries."""
    try:
        await flush(new_session, storage, key_prefix, kind, object_id)
    except Exception as exc:  # the response must still tell what was committed
        log.warning(
            "recovery_document.deferred",
            kind=kind,
            object_id=object_id,
            error=f"{type(exc).__name__}: {exc}"[:300],
        )


async def requested(session: AsyncSession) -> Sequence[tuple[str, int]]:
    rows = await session.execute(
        select(RecoveryOutbox.kind, RecoveryOutbox.object_id).order_by(RecoveryOutbox.requested_at)
    )
    return [(str(k), int(i)) for k, i in rows.tuples()]


async def write_after_commit(
    session: AsyncSession, storage: ObjectStorage, key_prefix: str, kind: str, object_id: int
) -> None:
    """Commit the request's transaction (on purpose, inside the request), then write."""
    await session.commit()
    bind = session.bind

    def new_session() -> AsyncSession:
        return AsyncSession(bind, expire_on_commit=False, autoflush=False)

    await flush_quietly(new_session, storage, key_prefix, kind, object_id)
