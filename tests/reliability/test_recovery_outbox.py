"""An annotation's recovery document (objects/recovery_outbox.py) is written holding no lock
and no connection: its writer claims the outbox row, reads committed state, commits, then
PUTs. Before, the annotation's row stayed locked (FOR UPDATE) across the PUT, and every group
create of that annotation (its foreign key check takes a share lock on that row) waited for
storage to answer."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import create_async_engine

from fixtures.databases import admin_dsn, postgres_database
from fixtures.factories import create_annotation, make_masks
from fixtures.faulty_storage import set_faults
from fixtures.paused_storage import ARM_FILE, arm, release, wait_paused
from fixtures.rgw import Rgw
from fixtures.rgw_outage import PAUSED_SERVE
from fixtures.server import ServerProcess, s3_server
from pacs_ext.models import RecoveryOutbox
from pacs_ext.models.recovery import ANNOTATION_DOC
from pacs_ext.objects import outbox


@pytest.fixture
def paused_server(rgw: Rgw, tmp_path: Path) -> Iterator[ServerProcess]:
    """PostgreSQL + a bucket of its own on the shared RGW, served with pause points."""
    with rgw.bucket() as bucket, postgres_database() as url:
        srv = s3_server(tmp_path, url, rgw, bucket)
        srv.launcher = [sys.executable, str(PAUSED_SERVE)]
        srv.start()
        try:
            yield srv
        finally:
            (srv.data_dir / ARM_FILE).unlink(missing_ok=True)
            release(srv.data_dir)
            srv.stop()


def _document(srv: ServerProcess, annotation_id: int) -> dict[str, Any]:
    assert srv.objects is not None
    [key] = [k for k in srv.objects.keys("") if k.endswith(f"annotations/{annotation_id}.json")]
    return dict(json.loads(srv.objects.read(key)))


def _locks_free_during_the_write(database_url: str, annotation_id: int) -> list[str]:
    """Take the annotation's row and its outbox row with NOWAIT, and list the server's open
    transactions: PostgreSQL's view of what a held document write holds."""
    name = database_url.rsplit("/", 1)[1]

    async def probe() -> list[str]:
        conn = await asyncpg.connect(admin_dsn(database_url))
        try:
            async with conn.transaction():
                await conn.execute(
                    "SELECT id FROM annotations WHERE id = $1 FOR UPDATE NOWAIT", annotation_id
                )
                await conn.execute(
                    "SELECT object_id FROM recovery_outbox WHERE kind = $1 AND object_id = $2 "
                    "FOR UPDATE NOWAIT",
                    ANNOTATION_DOC,
                    annotation_id,
                )
            rows = await conn.fetch(
                "SELECT state FROM pg_stat_activity WHERE datname = $1 "
                "AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'",
                name,
            )
            return [str(r["state"]) for r in rows]
        finally:
            await conn.close()

    return asyncio.run(probe())


@pytest.mark.postgres
@pytest.mark.rgw
def test_a_document_write_holds_no_lock_and_stops_no_group_create(
    paused_server: ServerProcess,
) -> None:
    srv = paused_server
    with srv.client("alice") as alice, srv.client("alice") as other:
        a = create_annotation(alice)["id"]
        arm(srv.data_dir, "before_put_bytes")
        pool = ThreadPoolExecutor(1)
        try:
            patching = pool.submit(
                lambda: alice.patch(f"/api/annotations/{a}", json={"description": "reviewed"})
            )
            wait_paused(srv.data_dir)  # the PATCH's document is on its way to storage
            # NOWAIT raises LockNotAvailable if the writer held either row.
            assert _locks_free_during_the_write(srv.database_url, a) == []
            # Before, this waited for the held PUT (the annotation's row lock): 120 s.
            spec = [m.spec() for m in make_masks(1)]
            made = other.post(f"/api/annotations/{a}/mask-groups", json={"files": spec}, timeout=20)
            assert made.status_code == 201, made.text
            release(srv.data_dir)
            assert patching.result(timeout=60).status_code == 200
        finally:
            release(srv.data_dir)
            pool.shutdown(wait=True)
    assert _document(srv, a)["annotation"]["description"] == "reviewed"


def _claim_elsewhere(srv: ServerProcess, annotation_id: int, age_seconds: float) -> None:
    """Mark the annotation's outbox row as claimed by another process's writer, that long ago."""
    at = datetime.now(UTC) - timedelta(seconds=age_seconds)

    async def claim() -> None:
        engine = create_async_engine(srv.database_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    update(RecoveryOutbox)
                    .where(
                        RecoveryOutbox.kind == ANNOTATION_DOC,
                        RecoveryOutbox.object_id == annotation_id,
                    )
                    .values(claimed_by="another-process", claimed_at=at)
                )
        finally:
            await engine.dispose()

    asyncio.run(claim())


def _janitor(srv: ServerProcess, *args: str) -> dict[str, Any]:
    r = srv.run_cli("janitor", "--json", *args, check=False)
    assert "Traceback" not in r.stderr, r.stderr
    return dict(json.loads(r.stdout))


def test_a_claim_of_another_process_is_left_to_it_until_its_lease_ends(
    faulty_server: ServerProcess,
) -> None:
    srv = faulty_server
    with srv.client("alice") as alice:
        a = create_annotation(alice, description="first")["id"]
        set_faults(srv.data_dir, put_bytes=True)  # the PATCH's document stays requested
        try:
            r = alice.patch(f"/api/annotations/{a}", json={"description": "second"})
        finally:
            set_faults(srv.data_dir)
        assert r.status_code == 200, r.text
    _claim_elsewhere(srv, a, age_seconds=0)
    held = _janitor(srv, "--apply")["recovery_outbox"]
    assert (held["found"], held["acted"], held["failed"]) == (1, 0, 1)
    assert _document(srv, a)["annotation"]["description"] == "first"

    _claim_elsewhere(srv, a, age_seconds=outbox.LEASE_SECONDS + 1)
    taken = _janitor(srv, "--apply")["recovery_outbox"]
    assert (taken["found"], taken["acted"], taken["failed"]) == (1, 1, 0)
    assert _document(srv, a)["annotation"]["description"] == "second"
    assert _janitor(srv)["recovery_outbox"]["found"] == 0
