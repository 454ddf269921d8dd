"""A database that accepts connections but never answers (issue 18, item 7): requests, /ready
and start-up fail fast, with the reason, instead of waiting asyncpg's 60 s.

The server reaches its own PostgreSQL database through a TCP proxy that the test stalls: the
proxy keeps accepting connections and taking bytes, and nothing comes back, as with a stuck
proxy or a failover in progress. The server runs with small timeouts (0.5 s to connect, 1 s
per statement); the test asserts what arrives, and bounds each wait generously (20 s).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from fixtures.databases import postgres_database
from fixtures.server import ServerProcess
from fixtures.tcp_proxy import TcpProxy

pytestmark = pytest.mark.postgres

TIMEOUTS = {
    "APP_DATABASE__CONNECT_TIMEOUT_SECONDS": "0.5",
    "APP_DATABASE__STATEMENT_TIMEOUT_SECONDS": "1",
}
BOUND = 20.0  # seconds: far above the configured timeouts, far below asyncpg's 60 s


def _via(proxy: TcpProxy, url: str) -> str:
    return url.replace(url.split("@", 1)[1].split("/", 1)[0], f"127.0.0.1:{proxy.port}", 1)


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    p = TcpProxy(("127.0.0.1", 5432)).start()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
def stalling_server(
    proxy: TcpProxy, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    with postgres_database() as url:
        srv = ServerProcess(
            data_dir=tmp_path_factory.mktemp("db-timeouts"),
            database_url=_via(proxy, url),
            extra_env=dict(TIMEOUTS),
        ).start()
        try:
            yield srv
        finally:
            srv.stop()


def test_requests_and_ready_answer_503_fast_then_recover(
    stalling_server: ServerProcess, proxy: TcpProxy
) -> None:
    srv = stalling_server
    with srv.client("alice") as alice:
        assert alice.post("/api/annotations", json={"study_instance_uid": "1.2.3"}).is_success
        proxy.stall()

        ready = httpx.get(srv.url + "/ready", timeout=BOUND)
        assert ready.status_code == 503, ready.text
        assert ready.json()["failing"] == ["database"]
        # The pooled connection's check gets no answer (1 s), a new one neither (0.5 s): the
        # probe says so, well within its own 3 s deadline.
        assert ready.json()["checks"]["database"] == (
            "unavailable: no answer within 0.5 s (database.connect_timeout_seconds)"
        )

        # Every request: a pooled connection's check times out (1 s) and it is dropped, or a
        # new connection's handshake does (0.5 s). A 503 naming the timeout, never a minute.
        for _ in range(3):
            r = alice.get("/api/annotations", timeout=BOUND)
            assert r.status_code == 503, r.text
            assert r.json()["error"] == "DatabaseUnavailable"
            assert "no answer within" in r.json()["detail"], r.text
            assert "(database." in r.json()["detail"]  # names the setting

        proxy.resume()
        deadline = time.monotonic() + BOUND
        while httpx.get(srv.url + "/ready", timeout=BOUND).status_code != 200:
            assert time.monotonic() < deadline, "the server did not recover"
            time.sleep(0.1)
        assert alice.get("/api/annotations").status_code == 200


def test_startup_fails_fast_and_says_why(proxy: TcpProxy, tmp_path_factory) -> None:
    proxy.stall()
    srv = ServerProcess(
        data_dir=tmp_path_factory.mktemp("db-timeouts-start"),
        database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{proxy.port}/postgres",
        extra_env=dict(TIMEOUTS),
    )
    srv.data_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        srv.launcher, env=srv.env(), capture_output=True, text=True, timeout=BOUND
    )
    assert done.returncode != 0
    assert (
        "cannot reach the database: no answer within 0.5 s (database.connect_timeout_seconds)"
        in " ".join(done.stderr.split())
    ), done.stderr
