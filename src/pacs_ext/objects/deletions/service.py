"""Delete stored objects without ever losing track of them.

The contract of every API delete: the rows go and a `pending_deletions` record of their
objects is written *in one transaction*, which is committed before storage is touched. Then
the objects are removed and the record with them. If storage fails midway, the record stays:
the client gets a 503, the resource is already gone from the API (never half there with
masks pointing at removed objects), a repeated DELETE of the same path finishes the removal,
and the janitor retries it until it succeeds even if nobody repeats the request.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from ...core.errors import ServiceUnavailable
from ...models import PendingDeletion
from ...storage.base import ObjectStorage, StorageError, delete_refusing_none
from ..claims import claimed_keys
from . import repository as repo

if TYPE_CHECKING:  # core.auth imports FastAPI: the CLI's jobs need not load it
    from ...core.auth import Principal

log = structlog.get_logger(__name__)


async def schedule(
    session: AsyncSession,
    *,
    resource: str,
    requested_by: str,
    reason: str,
    prefix: str | None = None,
    keys: list[str] | None = None,
) -> PendingDeletion:
    """Record objects to delete; call in the transaction that deletes their rows."""
    return await repo.add(
        session,
        resource=resource,
        requested_by=requested_by,
        reason=reason,
        prefix=prefix,
        keys=keys,
    )


async def execute(
    session: AsyncSession, storage: ObjectStorage, key_prefix: str, pending: PendingDeletion
) -> int:
    """Delete the recorded objects that no row claims, then forget the record.

    Storage is listed before the database is asked which keys are claimed: an object that
    appears for a live row after the listing is simply not in this round's list.
    Raises StorageError; returns the number of objects deleted.
    """
    if pending.prefix is not None:
        listed = [obj.key async for obj in storage.list_prefix(pending.prefix)]
    else:
        listed = [str(k) for k in pending.keys or []]
    claimed = await claimed_keys(session, key_prefix, listed)
    doomed = [k for k in listed if k not in claimed]
    if doomed:
        # A key storage refuses cannot be deleted through it, now or on any retry: log it
        # and finish the rest, so the deletion is not retried (and failed) forever.
        for refused in await delete_refusing_none(storage, doomed):
            log.warning("deletion.key_refused", detail=refused[:300])
    if pending.prefix is not None and storage.capabilities.multipart:
        await _abort_uploads(session, storage, key_prefix, pending.prefix)
    await repo.remove(session, pending.id)
    return len(doomed)


async def _abort_uploads(
    session: AsyncSession, storage: ObjectStorage, key_prefix: str, prefix: str
) -> None:
    """Unfinished multipart uploads hold stored parts that no object listing shows."""
    uploads = [u async for u in storage.list_multipart_uploads(prefix)]
    if not uploads:
        return
    claimed = await claimed_keys(session, key_prefix, [u.key for u in uploads])
    for upload in uploads:
        if upload.key not in claimed:
            await storage.abort_multipart(upload.key, upload.upload_id)


async def run_now(
    session: AsyncSession,
    storage: ObjectStorage,
    key_prefix: str,
    pending: Sequence[PendingDeletion],
    what: str,
) -> None:
    """Commit the deletion, then remove its objects; 503 (record kept) if storage fails."""
    # Committing here, inside a request, is the point: the record must be durable before the
    # first object is deleted, whatever happens to this request afterwards.
    ids = [p.id for p in pending]  # before a rollback expires the objects
    await session.commit()
    try:
        for item in pending:
            await execute(session, storage, key_prefix, item)
    except (StorageError, OSError) as exc:
        await session.rollback()
        await repo.mark_failed(session, ids, f"{type(exc).__name__}: {exc}")
        await session.commit()
        log.warning("deletion.deferred", what=what, pending_deletions=ids, error=str(exc)[:200])
        raise ServiceUnavailable(
            f"{what} was deleted, but its stored objects could not all be removed yet "
            f"(storage: {exc}); the removal is recorded and retried by the janitor; "
            "repeat this DELETE to finish it now",
            extra={"pending_deletions": ids},
        ) from None


async def resume(
    session: AsyncSession,
    storage: ObjectStorage,
    key_prefix: str,
    principal: Principal,
    resource: str,
) -> bool:
    """For a DELETE of a resource that is already gone: finish its recorded deletion.

    False when there is none (the caller answers 404). Only the subject who deleted it, or
    an admin, sees it: others get the same 404 as for something that never existed.
    """
    found = [
        p
        for p in await repo.for_resource(session, resource)
        if principal.is_admin or p.requested_by == principal.subject
    ]
    if not found:
        return False
    await run_now(session, storage, key_prefix, found, resource)
    return True
