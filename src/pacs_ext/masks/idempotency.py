"""Idempotency-Key on group creation: a retried request gets the group the first one made.

The key records live here; the flow that uses them is service.create_group_once (so this
module does not import the service back).

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

from ..core.errors import InvalidInput
from ..models import IdempotencyKey
from .schemas import MaskGroupCreate

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


async def find(session: AsyncSession, subject: str, key: str) -> IdempotencyKey | None:
    result = await session.scalars(
        select(IdempotencyKey).where(IdempotencyKey.subject == subject, IdempotencyKey.key == key)
    )
    return result.first()


async def claim(
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


async def bind(session: AsyncSession, claimed: int, group_id: int) -> None:
    """Point a claimed key at the group its request made."""
    await session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.id == claimed)
        .values(group_id=group_id)
        .execution_options(synchronize_session=False)
    )
