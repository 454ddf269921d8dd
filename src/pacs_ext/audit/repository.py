"""SQL for the audit trail."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Select, Table, TextClause, bindparam, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from ..models import AuditEvent
from ..models.base import UTCDateTime
from .schemas import AuditFilters

_TABLE = cast(Table, AuditEvent.__table__)

# One statement whatever the batch size: the per-row values travel as arrays (PostgreSQL)
# or one JSON document (SQLite), and the database expands them. Measured here for 2,000
# rows: ~3 ms (SQLite) and ~14 ms (PostgreSQL), against ~31 ms and ~52 ms for executemany.
_POSTGRES_BATCH = text(
    "INSERT INTO audit_events (created_at, subject, action, annotation_id, group_id, mask_id, "
    "method, request_id, object_key, expires_at, part_number) "
    "SELECT CAST(:created_at AS TIMESTAMPTZ), CAST(:subject AS VARCHAR), "
    "CAST(:action AS VARCHAR), CAST(:annotation_id AS BIGINT), CAST(:group_id AS BIGINT), "
    "CAST(:mask_id AS BIGINT), CAST(:method AS VARCHAR), CAST(:request_id AS VARCHAR), "
    "u.object_key, u.expires_at, u.part_number "
    "FROM unnest(CAST(:keys AS TEXT[]), CAST(:expires AS TIMESTAMPTZ[]), "
    "CAST(:parts AS INTEGER[])) AS u(object_key, expires_at, part_number)"
).bindparams(bindparam("created_at", type_=UTCDateTime()))
_SQLITE_BATCH = text(
    "INSERT INTO audit_events (created_at, subject, action, annotation_id, group_id, mask_id, "
    "method, request_id, object_key, expires_at, part_number) "
    "SELECT :created_at, :subject, :action, :annotation_id, :group_id, :mask_id, :method, "
    ":request_id, json_extract(value, '$[0]'), json_extract(value, '$[1]'), "
    "json_extract(value, '$[2]') "
    "FROM json_each(:rows)"
).bindparams(bindparam("created_at", type_=UTCDateTime()))


async def insert_event(session: AsyncSession, row: dict[str, Any]) -> None:
    await session.execute(insert(_TABLE).values(**row))


async def insert_signed_urls(
    session: AsyncSession,
    common: dict[str, Any],
    keys: list[str],
    expires: list[datetime],
    parts: list[int | None],
) -> None:
    """Rows that share `common` and differ in object key, expiry and part number."""
    dialect = session.get_bind().dialect
    stmt: TextClause
    if dialect.name == "postgresql":
        stmt, params = _POSTGRES_BATCH, {"keys": keys, "expires": expires, "parts": parts}
    elif dialect.name == "sqlite":
        # Expiries in exactly the text form the ORM writes, so time filters compare alike.
        as_text = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
        assert as_text is not None
        # URLs signed together share an expiry (to the second): format each distinct one once.
        texts = {e: as_text(e) for e in set(expires)}
        rows = [[k, texts[e], p] for k, e, p in zip(keys, expires, parts, strict=True)]
        stmt, params = _SQLITE_BATCH, {"rows": json.dumps(rows)}
    else:
        table_rows = [
            {**common, "object_key": k, "expires_at": e, "part_number": p}
            for k, e, p in zip(keys, expires, parts, strict=True)
        ]
        await session.execute(insert(_TABLE), table_rows)
        return
    await session.execute(stmt, {**common, **params})


def _filtered(filters: AuditFilters) -> Select[Any]:
    stmt = select(AuditEvent)
    if filters.subject is not None:
        stmt = stmt.where(AuditEvent.subject == filters.subject)
    if filters.action is not None:
        stmt = stmt.where(AuditEvent.action == filters.action.value)
    if filters.annotation_id is not None:
        stmt = stmt.where(AuditEvent.annotation_id == filters.annotation_id)
    if filters.group_id is not None:
        stmt = stmt.where(AuditEvent.group_id == filters.group_id)
    if filters.since is not None:
        stmt = stmt.where(AuditEvent.created_at >= filters.since)
    if filters.until is not None:
        stmt = stmt.where(AuditEvent.created_at < filters.until)
    return stmt


async def list_events(
    session: AsyncSession, filters: AuditFilters, limit: int, offset: int
) -> tuple[Sequence[AuditEvent], int]:
    stmt = _filtered(filters)
    total = await session.scalar(select(func.count()).select_from(stmt.subquery()))
    rows = await session.scalars(stmt.order_by(AuditEvent.id.desc()).limit(limit).offset(offset))
    return rows.all(), int(total or 0)
