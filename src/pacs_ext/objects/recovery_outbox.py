"""Recovery documents are written from committed state only, through an outbox (the same
design as metadata.json's, objects/outbox.py).

A change an annotation's document shows (create, update, delete) or a group deletion calls
`request()` in its own transaction; after the commit `flush()` writes the document from the
rows and removes the outbox row if it still carries the token it read. A process that dies in
between leaves the row: the janitor writes it. So a document is never ahead of the database,
and never stays behind it for longer than a janitor interval.
"""

from __future__ import annotations

import asyncio
import uuid
import weakref
from collections.abc import Callable, Sequence

import structlog
from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from ..models import Annotation, RecoveryOutbox, Tombstone
from ..models import tombstone as tomb
from ..models.base import utcnow
from ..models.recovery import ANNOTATION_DOC, GROUP_TOMBSTONE
from ..storage.base import ObjectStorage
from .keys import annotation_document_key, group_tombstone_key
from .recovery_docs import annotation_document, tombstone_document

log = structlog.get_logger(__name__)

SessionFactory = Callable[[], AsyncSession]
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
    new_session: SessionFactory, storage: ObjectStorage, key_prefix: str, kind: str, object_id: int
) -> bool:
    """Write the document from committed state if a row asks for it; True when written.
    Raises StorageError (the row stays for the janitor)."""
    async with _lock(kind, object_id), new_session() as session:
        if (await session.connection()).dialect.name == "sqlite":
            # A write first: SQLite's write lock keeps other writers out meanwhile.
            await session.execute(
                update(RecoveryOutbox)
                .where(RecoveryOutbox.kind == kind, RecoveryOutbox.object_id == object_id)
                .values(token=RecoveryOutbox.token)
            )
        annotation = None
        if kind == ANNOTATION_DOC:
            # The annotation's row before the outbox row: the order an update takes them in.
            annotation = await session.scalar(
                select(Annotation).where(Annotation.id == object_id).with_for_update()
            )
        token: str | None = await session.scalar(
            select(RecoveryOutbox.token)
            .where(RecoveryOutbox.kind == kind, RecoveryOutbox.object_id == object_id)
            .with_for_update()
        )
        if token is None:
            await session.rollback()
            return False
        key, document = await _document(session, key_prefix, kind, object_id, annotation)
        if document is not None:
            await storage.put_bytes(key, document, "application/json")
        await session.execute(
            delete(RecoveryOutbox).where(
                RecoveryOutbox.kind == kind,
                RecoveryOutbox.object_id == object_id,
                RecoveryOutbox.token == token,
            )
        )
        await session.commit()
        return document is not None


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
