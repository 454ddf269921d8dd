"""The signed URLs of one request are one audit row, on a migrated SQLite and PostgreSQL
database, in-process: the row names every object (upload targets and pages of part URLs),
counts the URLs, keeps the latest expiry, and is found by any of its object keys."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from fixtures.databases import database
from fixtures.inprocess import make_settings
from fixtures.server import ServerProcess
from pacs_ext.audit import repository, service
from pacs_ext.audit.schemas import AuditAction, AuditFilters
from pacs_ext.context import Ctx
from pacs_ext.core.auth import Principal
from pacs_ext.core.clock import FakeClock
from pacs_ext.masks.service import issued_urls
from pacs_ext.masks.uploads import PartUrl, Target
from pacs_ext.storage.registry import create_storage

from .conftest import DB_KINDS


@pytest.fixture(params=DB_KINDS)
def migrated(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    # Sync: creating and dropping the PostgreSQL database runs its own event loop.
    with database(request.param, tmp_path) as url:
        ServerProcess(data_dir=tmp_path, database_url=url).migrate_database()
        yield url


@pytest.fixture
async def session(migrated: str) -> AsyncIterator[AsyncSession]:
    engine = create_async_engine(migrated)
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as s:
            yield s
    finally:
        await engine.dispose()


@pytest.fixture
def as_(session: AsyncSession, tmp_path: Path) -> Callable[[str], Ctx]:
    """as_(subject): a request context for that subject (audit ids reach the local store's
    high-water mark)."""
    settings = make_settings(tmp_path)
    storage = create_storage(settings)
    return lambda subject: Ctx(session, storage, settings, Principal(subject), FakeClock())


def _target(name: str, expires: datetime, parts: list[PartUrl] | None = None) -> Target:
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
        part_count=9 if parts else None,
    )


async def test_one_row_names_every_object_of_the_batch(
    session: AsyncSession, as_: Callable[[str], Ctx]
) -> None:
    who = as_("batcher")
    expires = datetime.now(UTC).replace(microsecond=123456) + timedelta(minutes=10)
    part = PartUrl(part_number=1, url="https://s3/x?X-Amz-Signature=s", headers={}, size=5)
    targets = [
        _target("a.png", expires),
        _target("big.nii", expires, [part, replace(part, part_number=2)]),
        _target("c.png", expires - timedelta(microseconds=5)),
        _target("d.nii", expires, [replace(part, part_number=n) for n in (3, 4, 5)]),
    ]
    await service.record_signed_urls(who, "PUT", issued_urls(targets), annotation_id=1, group_id=2)
    await service.record(who, AuditAction.MASK_GROUP_CREATE, annotation_id=1, group_id=2)
    await session.commit()

    signed = AuditFilters(subject="batcher", action=AuditAction.SIGNED_URL_ISSUE)
    rows, total = await repository.list_events(session, signed, 100, 0)
    assert total == 1
    (row,) = rows
    assert (row.method, row.annotation_id, row.group_id, row.mask_id) == ("PUT", 1, 2, None)
    assert (row.url_count, row.object_count) == (1 + 2 + 1 + 3, 4)
    assert row.expires_at == expires  # the latest: none of the URLs works after it
    assert row.object_key is None
    assert row.part_number is None
    assert row.detail == {"parts": {"mask/1/2/big.nii": [1, 2], "mask/1/2/d.nii": [3, 5]}}
    event = await repository.get_event(session, row.id)
    assert event is not None
    assert event.object_keys == [t.object_key for t in targets]

    # Any of its keys finds the row; another object's key does not.
    for key in ("mask/1/2/a.png", "mask/1/2/d.nii"):
        found, n = await repository.list_events(session, AuditFilters(object_key=key), 100, 0)
        assert (n, [r.id for r in found]) == (1, [row.id])
    assert (await repository.list_events(session, AuditFilters(object_key="mask/1/2/a"), 9, 0))[
        1
    ] == 0

    # Batch rows and single rows compare alike in time filters (same stored format).
    created = row.created_at
    everything = AuditFilters(subject="batcher", since=created - timedelta(seconds=5))
    assert (await repository.list_events(session, everything, 100, 0))[1] == 2
    later = AuditFilters(subject="batcher", since=created + timedelta(seconds=5))
    assert (await repository.list_events(session, later, 100, 0))[1] == 0


async def test_a_batch_of_one_object_also_names_it_in_object_key(
    session: AsyncSession, as_: Callable[[str], Ctx]
) -> None:
    who = as_("single")
    expires = datetime.now(UTC) + timedelta(minutes=5)
    part = PartUrl(part_number=8001, url="u", headers={}, size=5)
    page = _target("v.nii", expires, [part, replace(part, part_number=8002)])
    await service.record_signed_urls(who, "PUT", issued_urls([page]), annotation_id=1, group_id=2)
    await service.record_signed_urls(
        who,
        "GET",
        [service.IssuedUrl("mask/1/2/a.png", expires)],
        annotation_id=1,
        group_id=2,
        mask_id=7,
    )
    await session.commit()
    rows, _ = await repository.list_events(session, AuditFilters(subject="single"), 10, 0)
    got = [(r.method, r.object_key, r.part_number, r.url_count, r.mask_id) for r in rows]
    assert got == [
        ("GET", "mask/1/2/a.png", None, 1, 7),
        ("PUT", "mask/1/2/v.nii", 8001, 2, None),
    ]
    # The single-object column finds it as well as the key list (rows written before 0007
    # have only the column).
    found, n = await repository.list_events(
        session, AuditFilters(object_key="mask/1/2/a.png"), 10, 0
    )
    assert n == 1
    assert found[0].method == "GET"


async def test_an_empty_batch_writes_nothing(
    session: AsyncSession, as_: Callable[[str], Ctx]
) -> None:
    await service.record_signed_urls(as_("nobody"), "PUT", [], annotation_id=1, group_id=1)
    assert (await repository.list_events(session, AuditFilters(), 10, 0))[1] == 0
