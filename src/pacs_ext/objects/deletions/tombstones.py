"""Tombstones: what was deleted, by whom and when, so that a DELETE retried after its answer
was lost gets the 204 the first attempt earned instead of a 404.

Written in the transaction that deletes the rows. Only the annotation's owner, the subject
who deleted it, or an admin sees a tombstone; anyone else gets the 404 of something that
never existed. The janitor forgets tombstones after `janitor.tombstone_retention_seconds`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ...models import Tombstone
from ...models.recovery import ANNOTATION_DOC, GROUP_TOMBSTONE
from .. import recovery_outbox

if TYPE_CHECKING:  # core.auth imports FastAPI: the CLI's jobs need not load it
    from ...core.auth import Principal


async def bury(
    session: AsyncSession,
    kind: str,
    object_id: int,
    *,
    parent_id: int | None,
    owner: str,
    deleted_by: str,
    now: datetime,
) -> None:
    session.add(
        Tombstone(
            kind=kind,
            object_id=object_id,
            parent_id=parent_id,
            owner=owner,
            deleted_by=deleted_by,
            deleted_at=now,
        )
    )
    await session.flush()
    # The bucket keeps the deletion too (recovery): reindex must not bring it back.
    document = {"annotation": ANNOTATION_DOC, "mask_group": GROUP_TOMBSTONE}.get(kind)
    if document is not None:
        await recovery_outbox.request(session, document, object_id)


async def recently_deleted(
    session: AsyncSession,
    principal: Principal,
    kind: str,
    object_id: int,
    *,
    parent_id: int | None,
    retention_seconds: int,
    now: datetime,
) -> bool:
    """True when `principal` deleted this (or may see that it was) within the retention
    before `now` (the request's clock, so a test moves time instead of editing rows)."""
    stmt = select(func.count()).where(
        Tombstone.kind == kind,
        Tombstone.object_id == object_id,
        Tombstone.deleted_at >= now - timedelta(seconds=retention_seconds),
    )
    if parent_id is not None:
        stmt = stmt.where(Tombstone.parent_id == parent_id)
    if not principal.is_admin:
        stmt = stmt.where(
            or_(Tombstone.owner == principal.subject, Tombstone.deleted_by == principal.subject)
        )
    return bool(await session.scalar(stmt))


async def prune(session: AsyncSession, older_than: datetime) -> int:
    result = await session.execute(delete(Tombstone).where(Tombstone.deleted_at < older_than))
    return int(getattr(result, "rowcount", 0) or 0)


async def count_old(session: AsyncSession, older_than: datetime) -> int:
    total = await session.scalar(
        select(func.count()).select_from(Tombstone).where(Tombstone.deleted_at < older_than)
    )
    return int(total or 0)
