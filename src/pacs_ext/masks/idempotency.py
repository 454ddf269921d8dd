"""Idempotency-Key on group creation: a retried request gets the group the first one made.

Semantics (after the IETF httpapi Idempotency-Key draft): keys are scoped per caller; the
same key with the same request (annotation and body, ttl_seconds aside) answers with the
same group, its declared files, and freshly signed upload URLs (with this request's TTL)
while it is pending (none once complete or
expired); the same key with another request is a 422; a retry racing the first request
waits for it and then gets its group. Keys are remembered while their group exists and at
most `janitor.idempotency_retention_seconds`.
"""

from __future__ import annotations

import hashlib
import json

from sqlalchemy import Insert, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from ..annotations import service as annotation_service
from ..exceptions import Conflict, InvalidInput
from ..models import IdempotencyKey, MaskGroup
from ..models.mask_group import PENDING
from . import repository as repo
from .schemas import MaskGroupCreate
from .service import Ctx, create_group, upload_urls
from .uploads import Target

HEADER = "Idempotency-Key"
KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"  # visible ASCII, as header values allow


class IdempotencyKeyMismatch(InvalidInput):
    error = "IdempotencyKeyMismatch"


def fingerprint(annotation_id: int, body: MaskGroupCreate) -> str:
    # ttl_seconds asks for URL lifetimes, it does not describe the group: a retry may ask
    # for longer-lived URLs and still be the same request.
    doc = {
        "annotation_id": annotation_id,
        "body": body.model_dump(mode="json", exclude={"ttl_seconds"}),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


async def create_once(
    ctx: Ctx, annotation_id: int, body: MaskGroupCreate, key: str
) -> tuple[MaskGroup, list[Target], bool]:
    """Create the group, or replay the one this key made; the bool says "replayed"."""
    await annotation_service.get_writable(ctx.session, ctx.principal, annotation_id)
    digest = fingerprint(annotation_id, body)
    record = await _find(ctx.session, ctx.principal.subject, key)
    if record is None:
        claimed = await _claim(ctx.session, ctx.principal.subject, key, digest, annotation_id)
        if claimed is not None:
            group, targets = await create_group(ctx, annotation_id, body)
            await ctx.session.execute(
                update(IdempotencyKey)
                .where(IdempotencyKey.id == claimed)
                .values(group_id=group.id)
                .execution_options(synchronize_session=False)
            )
            return group, targets, False
        # A concurrent request with this key committed first (the claim waited for it).
        record = await _find(ctx.session, ctx.principal.subject, key)
        if record is None:
            raise Conflict(f"a request with this {HEADER} is still in progress; retry")
    if record.request_hash != digest:
        raise IdempotencyKeyMismatch(
            f"this {HEADER} was already used for a different request (another annotation or "
            "body); use a new key for a new group",
            extra={"field": HEADER},
        )
    made = await repo.get_group(ctx.session, record.annotation_id, record.group_id or 0)
    if made is None:
        raise Conflict(f"the group made with this {HEADER} is gone; use a new key")
    return made, await _fresh_targets(ctx, made, body), True


async def _find(session: AsyncSession, subject: str, key: str) -> IdempotencyKey | None:
    result = await session.scalars(
        select(IdempotencyKey).where(IdempotencyKey.subject == subject, IdempotencyKey.key == key)
    )
    return result.first()


async def _claim(
    session: AsyncSession, subject: str, key: str, digest: str, annotation_id: int
) -> int | None:
    """Insert the key unless it exists; None when another request holds it.

    ON CONFLICT DO NOTHING waits for a concurrent inserter of the same key to finish
    (PostgreSQL's unique index, SQLite's single writer), so no IntegrityError reaches
    the client and the loser can read the winner's row right after.
    """
    dialect = session.get_bind().dialect.name
    stmt: Insert
    if dialect == "postgresql":
        stmt = pg_insert(IdempotencyKey).on_conflict_do_nothing()
    elif dialect == "sqlite":
        stmt = sqlite_insert(IdempotencyKey).on_conflict_do_nothing()
    else:  # pragma: no cover - only the two supported databases
        stmt = insert(IdempotencyKey)
    stmt = stmt.values(subject=subject, key=key, request_hash=digest, annotation_id=annotation_id)
    claimed = await session.scalar(stmt.returning(IdempotencyKey.id))
    return None if claimed is None else int(claimed)


async def _fresh_targets(ctx: Ctx, group: MaskGroup, body: MaskGroupCreate) -> list[Target]:
    """Re-signed targets for the declared files of a pending group (URLs may have expired).

    The same path as upload-urls with the same files: it keeps multipart uploads already
    started and moves the group's expiry (the janitor's clock) forward.
    """
    if group.status != PENDING or not body.files:
        return []
    return await upload_urls(ctx, group.annotation_id, group.id, body.files, body.ttl_seconds)
