"""The signed-URL batch insert on a migrated SQLite and PostgreSQL database, in-process:
upload targets, multipart pages (one row each: their first part), and times that filter
like ORM-written ones."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from fixtures.databases import database
from fixtures.server import ServerProcess
from pacs_ext.audit import repository, service
from pacs_ext.audit.schemas import AuditAction, AuditFilters
from pacs_ext.core.auth import Principal
from pacs_ext.masks.service import issued_urls
from pacs_ext.masks.uploads import PartUrl, Target

from .conftest import DB_KINDS


@pytest.fixture(params=DB_KINDS)
def migrated(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    # Sync: creating and dropping the PostgreSQL database runs its own event loop.
    with database(request.param, tmp_path) as url:
        ServerProcess(data_dir=tmp_path, database_url=url).run_cli("db", "upgrade")
        yield url


@pytest.fixture
async def session(migrated: str) -> AsyncIterator[AsyncSession]:
    engine = create_async_engine(migrated)
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as s:
            yield s
    finally:
        await engine.dispose()


async def test_batch_rows_from_upload_targets(session: AsyncSession) -> None:
    who = Principal("batcher")
    expires = datetime.now(UTC).replace(microsecond=123456) + timedelta(minutes=10)

    def target(name: str, parts: list[PartUrl] | None = None) -> Target:
        return Target(
            filename=name,
            object_key=f"mask/1/2/{name}",
            method="PUT",
            url=None if parts else "u?sig=1",
            headers={},
            expires_at=expires,
            upload_id="up" if parts else None,
            part_size=5 if parts else None,
            parts=parts,
            part_count=len(parts) if parts else None,
        )

    part = PartUrl(part_number=1, url="https://s3/x?X-Amz-Signature=s", headers={}, size=5)
    later_page = [replace(part, part_number=3), replace(part, part_number=4)]
    targets = [
        target("a.png"),
        target("big.nii", [part, replace(part, part_number=2)]),
        target("c.png"),
        target("d.nii", later_page),
    ]
    urls = issued_urls(targets)
    await service.record_signed_urls(session, who, "PUT", urls, annotation_id=1, group_id=2)
    await service.record(session, who, AuditAction.MASK_GROUP_CREATE, annotation_id=1, group_id=2)
    await session.commit()

    signed = AuditFilters(subject="batcher", action=AuditAction.SIGNED_URL_ISSUE)
    rows, total = await repository.list_events(session, signed, 100, 0)
    assert total == 4  # a page of part URLs is one row: its first part number
    got = sorted((r.object_key, r.part_number, r.method) for r in rows)
    assert got == [
        ("mask/1/2/a.png", None, "PUT"),
        ("mask/1/2/big.nii", 1, "PUT"),
        ("mask/1/2/c.png", None, "PUT"),
        ("mask/1/2/d.nii", 3, "PUT"),
    ]
    assert {r.expires_at for r in rows} == {expires}
    assert {(r.annotation_id, r.group_id, r.detail) for r in rows} == {(1, 2, None)}
    # Batch rows and single rows compare alike in time filters (same stored format).
    created = rows[0].created_at
    everything = AuditFilters(subject="batcher", since=created - timedelta(seconds=5))
    assert (await repository.list_events(session, everything, 100, 0))[1] == 5
    later = AuditFilters(subject="batcher", since=created + timedelta(seconds=5))
    assert (await repository.list_events(session, later, 100, 0))[1] == 0


async def test_an_empty_batch_writes_nothing(session: AsyncSession) -> None:
    await service.record_signed_urls(
        session, Principal("nobody"), "PUT", [], annotation_id=1, group_id=1
    )
    assert (await repository.list_events(session, AuditFilters(), 10, 0))[1] == 0
