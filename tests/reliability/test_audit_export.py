"""The janitor's audit export never skips a row (objects/audit_export.py).

On PostgreSQL an id is taken at insert and transactions commit in any order: a row with a
lower id can become visible after a higher one was exported. A cursor over ids skipped it for
good; the export queue exports it on the next run.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fixtures.databases import database
from fixtures.inprocess import make_settings
from fixtures.server import ServerProcess
from pacs_ext.audit import repository
from pacs_ext.core.db import create_engine, create_sessionmaker
from pacs_ext.models import AuditExportQueue
from pacs_ext.models.base import utcnow
from pacs_ext.objects import audit_export
from pacs_ext.storage.base import ObjectStorage
from pacs_ext.storage.registry import create_storage

PREFIX = "mask/"


@dataclass
class Db:
    maker: async_sessionmaker[AsyncSession]
    storage: ObjectStorage
    objects: Path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated database (a test picks one kind by `indirect` parametrisation)."""
    with database(request.param, tmp_path / "db") as url:
        ServerProcess(data_dir=tmp_path, database_url=url).migrate_database()
        yield url


@pytest.fixture
async def db(db_url: str, tmp_path: Path) -> AsyncIterator[Db]:
    settings = make_settings(tmp_path, database={"url": db_url})
    engine = create_engine(settings)
    storage = create_storage(settings)
    try:
        yield Db(create_sessionmaker(engine), storage, tmp_path / "objects")
    finally:
        await storage.close()
        await engine.dispose()


def _row(subject: str) -> dict[str, object]:
    return {"created_at": utcnow(), "subject": subject, "action": "annotation.create"}


def _exported(db: Db) -> dict[int, str]:
    """id → subject of every row in the bucket's batches."""
    out: dict[int, str] = {}
    for batch in sorted((db.objects / PREFIX / "_recovery" / "audit").glob("*.jsonl")):
        for line in batch.read_text().splitlines():
            row = json.loads(line)
            out[row["id"]] = row["subject"]
    return out


async def _export(db: Db) -> int:
    later = utcnow() + timedelta(seconds=1)
    return await audit_export.export(db.maker, db.storage, PREFIX, later, settle_seconds=0)


async def _queued(db: Db) -> int:
    async with db.maker() as session:
        return int(await session.scalar(select(func.count()).select_from(AuditExportQueue)) or 0)


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_a_lower_id_committed_after_a_higher_one_was_exported_is_exported(db: Db) -> None:
    async with db.maker() as slow, db.maker() as fast:
        low = await repository.insert_event(slow, _row("slow"))  # its id taken, not committed
        high = await repository.insert_event(fast, _row("fast"))
        await fast.commit()
        assert low < high
        assert await _export(db) == 1
        assert _exported(db) == {high: "fast"}
        await slow.commit()  # visible only now, below an id already exported
    assert await _export(db) == 1
    assert _exported(db) == {low: "slow", high: "fast"}
    assert await _queued(db) == 0
    assert await _export(db) == 0


async def test_rolled_back_rows_leave_nothing_queued_and_runs_export_each_row_once(
    db: Db,
) -> None:
    async with db.maker() as session:
        await repository.insert_event(session, _row("undone"))
        await session.rollback()
    ids = []
    async with db.maker() as session:
        for i in range(3):
            ids.append(await repository.insert_event(session, _row(f"kept-{i}")))
        await session.commit()
    assert await _queued(db) == 3
    # Settling: rows younger than the window wait for a later run.
    now = utcnow()
    young = await audit_export.export(db.maker, db.storage, PREFIX, now, settle_seconds=3600)
    assert young == 0
    assert await audit_export.waiting(db.maker, now, settle_seconds=3600) == 0
    assert await audit_export.waiting(db.maker, now + timedelta(seconds=1), settle_seconds=0) == 3
    assert await _export(db) == 3
    assert _exported(db) == {i: f"kept-{n}" for n, i in enumerate(ids)}
    assert await _queued(db) == 0
    assert await _export(db) == 0
