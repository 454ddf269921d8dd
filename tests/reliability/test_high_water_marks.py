"""The bucket's id high-water mark is raised ahead of need, and a request whose ids it still
covers never waits for the mark's row (issue 16 part 3): under 32 clients on a fresh database,
24-30 requests queued behind the one transaction that raised a mark, holding the row until it
committed. Marks are now raised at start-up and once half their block is used, skipping a row
another transaction holds. Waits are observed in PostgreSQL's lock view, not timed."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import pytest

from fixtures.databases import admin_dsn
from fixtures.factories import create_annotation, group_url, make_masks
from fixtures.isolated import own_server
from fixtures.server import ServerProcess
from pacs_ext.objects.high_water import BLOCKS, TABLES
from pacs_ext.objects.keys import high_water_key

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with own_server("postgres", tmp_path_factory.mktemp("marks")) as srv:
        yield srv


def _dsn(srv: ServerProcess) -> str:
    return admin_dsn(srv.database_url)


def _sql(srv: ServerProcess, query: str, *args: object) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(_dsn(srv))
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


def _row_mark(srv: ServerProcess, table: str) -> int:
    rows = _sql(srv, "SELECT value FROM recovery_marks WHERE name = $1", f"ids:{table}")
    return int(rows[0]["value"])


def _bucket_mark(srv: ServerProcess, table: str) -> int:
    path: Path = srv.data_dir / "objects" / high_water_key("mask/", table)
    return int(json.loads(path.read_text())["reserved"]) if path.exists() else 0


def test_start_up_raises_every_mark_ahead_of_its_ids(pg_server: ServerProcess) -> None:
    deadline = time.monotonic() + 30
    while any(_row_mark(pg_server, t) < BLOCKS[t] // 2 for t in TABLES):
        assert time.monotonic() < deadline, "the marks were not raised at start-up"
        time.sleep(0.05)
    for table in TABLES:
        # The bucket first, then the row: the bucket is never behind.
        assert _bucket_mark(pg_server, table) >= _row_mark(pg_server, table) >= BLOCKS[table] // 2


def test_a_covered_id_does_not_wait_for_the_mark_row(pg_server: ServerProcess) -> None:
    with pg_server.client("alice") as alice:
        a = create_annotation(alice)["id"]
        # The next group id is covered, but past half the block: its request raises the mark,
        # unless another transaction holds the row, as the holder below does.
        largest = _sql(
            pg_server,
            "SELECT GREATEST(COALESCE(max(id), 0), COALESCE(pg_sequence_last_value("
            "pg_get_serial_sequence('mask_groups', 'id')::regclass), 0)) AS m FROM mask_groups",
        )[0]["m"]
        _sql(
            pg_server,
            "UPDATE recovery_marks SET value = $1 WHERE name = 'ids:mask_groups'",
            largest + 10,
        )
        body = {"group_name": "seg", "files": [m.spec() for m in make_masks(2)]}

        async def held() -> tuple[int, int]:
            holder = await asyncpg.connect(_dsn(pg_server))
            try:
                async with holder.transaction():
                    await holder.execute(
                        "SELECT value FROM recovery_marks WHERE name = 'ids:mask_groups' FOR UPDATE"
                    )
                    pool = ThreadPoolExecutor(1)
                    creating = pool.submit(
                        lambda: alice.post(f"/api/annotations/{a}/mask-groups", json=body)
                    )
                    waited = 0
                    deadline = time.monotonic() + 30
                    while not creating.done() and not waited:
                        assert time.monotonic() < deadline, "the create neither ended nor waited"
                        waited = await holder.fetchval(
                            "SELECT count(*) FROM pg_stat_activity "
                            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                        )
                        await asyncio.sleep(0.05)
                    # Let a create that waited go on (else it would hold the test until here).
                status = creating.result(timeout=60).status_code
                pool.shutdown(wait=True)
                return status, int(waited)
            finally:
                await holder.close()

        status, waited = asyncio.run(held())
        assert (status, waited) == (201, 0)
        # Left to the holder: not raised.
        assert _row_mark(pg_server, "mask_groups") == largest + 10

        # With the row free, the next create raises it a block past its id, bucket first.
        r = alice.post(f"/api/annotations/{a}/mask-groups", json=body)
        assert r.status_code == 201, r.text
        raised = _row_mark(pg_server, "mask_groups")
        assert raised == r.json()["id"] + BLOCKS["mask_groups"]
        assert _bucket_mark(pg_server, "mask_groups") >= raised
        assert alice.get(group_url(a, r.json()["id"])).status_code == 200
