"""Bulk inserts of thousands of rows: COPY on PostgreSQL (asyncpg), executemany elsewhere."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncSession


async def bulk_insert(
    session: AsyncSession, table: Table, rows: Sequence[Mapping[str, object]]
) -> None:
    """Insert rows; a key missing from some rows is NULL there (Python-side defaults are the
    caller's job: COPY does not run them)."""
    if not rows:
        return
    columns = list(dict.fromkeys(k for r in rows for k in r))
    if any(len(r) != len(columns) for r in rows):
        rows = [{c: r.get(c) for c in columns} for r in rows]
    conn = await session.connection()
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "asyncpg":
        # COPY is ~2-3x faster than SQLAlchemy's insertmanyvalues for 2,000 rows; it runs on
        # the session's own connection, so it is part of the same transaction.
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        await driver.copy_records_to_table(
            table.name, records=[tuple(r[c] for c in columns) for r in rows], columns=columns
        )
        return
    await session.execute(insert(table), list(rows))
