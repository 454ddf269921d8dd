"""PostgreSQL backends terminated under the running server: 503, then recovery, no restart."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import asyncpg
import httpx
import pytest

from fixtures.databases import PG_ADMIN_DSN, admin_dsn, admin_sql
from fixtures.factories import create_annotation, create_group, group_url, make_masks, put_all
from fixtures.isolated import own_server
from fixtures.server import ServerProcess

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with own_server("postgres", tmp_path_factory.mktemp("pg-faults")) as srv:
        yield srv


def _db_name(srv: ServerProcess) -> str:
    return srv.database_url.rsplit("/", 1)[1]


def _dsn(srv: ServerProcess) -> str:
    return admin_dsn(srv.database_url)


async def _terminate_server_backends(srv: ServerProcess) -> int:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        rows = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            _db_name(srv),
        )
        return len(rows)
    finally:
        await conn.close()


def test_idle_connections_dropped_are_replaced_transparently(pg_server: ServerProcess) -> None:
    with pg_server.client("alice") as alice:
        annotation = create_annotation(alice)
        assert asyncio.run(_terminate_server_backends(pg_server)) >= 1
        # The pool's pre-ping notices the dead connections: no error at all.
        r = alice.get(f"/api/annotations/{annotation['id']}")
        assert r.status_code == 200, r.text


def test_backend_killed_mid_request_is_503_then_the_server_recovers(
    pg_server: ServerProcess,
) -> None:
    with pg_server.client("alice") as alice:
        annotation = create_annotation(alice, description="before")
        url = f"/api/annotations/{annotation['id']}"
        result: dict[str, httpx.Response] = {}

        async def scenario() -> None:
            # Hold the row's lock so the server's UPDATE waits inside its transaction, then
            # kill the server's backends while that request is in flight.
            holder = await asyncpg.connect(_dsn(pg_server))
            try:
                tx = holder.transaction()
                await tx.start()
                await holder.execute(
                    "SELECT id FROM annotations WHERE id = $1 FOR UPDATE", annotation["id"]
                )
                thread = threading.Thread(
                    target=lambda: result.update(
                        patch=alice.patch(url, json={"description": "during"})
                    )
                )
                thread.start()
                deadline = time.monotonic() + 20
                while not await _waiting_on_lock(holder, _db_name(pg_server)):
                    assert thread.is_alive(), f"the PATCH never waited for the lock: {result}"
                    assert time.monotonic() < deadline, "the PATCH never waited for the lock"
                    await asyncio.sleep(0.05)
                await _terminate_server_backends_except(holder, _db_name(pg_server))
                await tx.rollback()
                await asyncio.to_thread(thread.join, 60)
            finally:
                await holder.close()

        asyncio.run(scenario())
        r = result["patch"]
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "DatabaseUnavailable"
        # Same server process, no restart: the next requests work and nothing half-applied.
        assert pg_server.proc is not None
        assert pg_server.proc.poll() is None
        got = alice.get(url)
        assert got.status_code == 200, got.text
        assert got.json()["description"] == "before"
        r = alice.patch(url, json={"description": "after"})
        assert r.status_code == 200, r.text
        masks = make_masks(3)
        group = create_group(alice, annotation["id"], masks)
        put_all(group["uploads"], masks)
        done = alice.post(f"{group_url(annotation['id'], group['id'])}/complete")
        assert done.status_code == 200, done.text


async def _waiting_on_lock(conn: asyncpg.Connection, db: str) -> bool:
    n = await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
        db,
    )
    return bool(n)


async def _terminate_server_backends_except(conn: asyncpg.Connection, db: str) -> None:
    await conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = $1 AND pid <> pg_backend_pid()",
        db,
    )


def test_a_refused_connection_is_503_not_500(pg_server: ServerProcess) -> None:
    """PostgreSQL refusing new connections ("too many clients already" when max_connections is
    reached; here the database not accepting connections, a refusal the server's superuser
    gets too, without starving the rest of the machine) is the database being unavailable: a
    503 to retry, not a 500."""
    db = _db_name(pg_server)

    with pg_server.client("alice") as alice:
        annotation = create_annotation(alice)
        url = f"/api/annotations/{annotation['id']}"
        asyncio.run(admin_sql(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS false'))
        try:
            asyncio.run(_terminate_server_backends(pg_server))  # the pool must connect anew
            r = alice.get(url)
            assert r.status_code == 503, r.text
            assert r.json()["error"] == "DatabaseUnavailable"
        finally:
            asyncio.run(admin_sql(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true'))
        got = alice.get(url)
        assert got.status_code == 200, got.text
