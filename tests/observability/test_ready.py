"""/ready follows its dependencies down and back up, and /metrics shows the storage failure.

The server talks to its own PostgreSQL database through a TCP proxy the test stops and starts
(the machine's PostgreSQL cluster stays up for everyone else); storage goes away by moving the
local store's folder aside.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fixtures.databases import PG_ADMIN_DSN, postgres_database
from fixtures.factories import create_annotation, create_group, group_url, make_masks, put_all
from fixtures.metrics import delta, scrape
from fixtures.server import ServerProcess
from fixtures.tcp_proxy import TcpProxy

pytestmark = pytest.mark.postgres


def _pg_target() -> tuple[str, int]:
    hostport = PG_ADMIN_DSN.split("@", 1)[1].split("/", 1)[0]
    host, _, port = hostport.partition(":")
    return host, int(port or 5432)


@pytest.fixture(scope="module")
def proxy() -> Iterator[TcpProxy]:
    p = TcpProxy(_pg_target()).start()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture(scope="module")
def proxied_server(
    proxy: TcpProxy, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("ready")
    with postgres_database() as url:
        via_proxy = url.replace(url.split("@", 1)[1].split("/", 1)[0], f"127.0.0.1:{proxy.port}", 1)
        srv = ServerProcess(data_dir=folder, database_url=via_proxy).start()
        try:
            yield srv
        finally:
            srv.stop()


def _wait_ready(srv: ServerProcess, status: int, timeout: float = 30) -> dict[str, Any]:
    """Poll /ready until it answers status (the storage probe is cached for a few seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        r = httpx.get(srv.url + "/ready", timeout=10)
        if r.status_code == status or time.monotonic() > deadline:
            assert r.status_code == status, r.text
            body: dict[str, Any] = r.json()
            return body
        time.sleep(0.2)


def test_ready_turns_503_while_the_database_is_down(
    proxied_server: ServerProcess, proxy: TcpProxy
) -> None:
    srv = proxied_server
    assert _wait_ready(srv, 200)["checks"] == {"database": "ok", "storage": "ok"}
    with srv.client("alice") as alice:
        create_annotation(alice)
        proxy.stop()
        try:
            down = _wait_ready(srv, 503)
            assert down["failing"] == ["database"]
            assert down["checks"]["database"].startswith("unavailable")
            assert down["checks"]["storage"] == "ok"
            r = alice.get("/api/annotations")
            assert r.status_code == 503, r.text
            # A refused connection surfaces as an OSError, not as a SQLAlchemy error.
            assert r.json()["error"] in ("DatabaseUnavailable", "ServiceUnavailable")
            assert scrape(srv.url).value("pacs_metrics_database_up") == 0
            # /health says the process is alive: it does not depend on the database.
            assert httpx.get(srv.url + "/health").status_code == 200
        finally:
            proxy.start()
        assert _wait_ready(srv, 200)["status"] == "ok"
        # Back without a restart: the pool replaced its dead connections.
        assert alice.get("/api/annotations").status_code == 200
    assert scrape(srv.url).value("pacs_metrics_database_up") == 1


def test_storage_failure_shows_in_ready_and_metrics(proxied_server: ServerProcess) -> None:
    srv = proxied_server
    objects = srv.data_dir / "objects"
    masks = make_masks(2)
    with srv.client("alice") as alice:
        annotation = create_annotation(alice)
        group = create_group(alice, annotation["id"], masks)
        put_all(group["uploads"], masks)
        base = group_url(annotation["id"], group["id"])
        assert alice.post(f"{base}/complete").status_code == 200
        _wait_ready(srv, 200)

        before = scrape(srv.url)
        aside = objects.rename(srv.data_dir / "objects-away")
        try:
            down = _wait_ready(srv, 503)
            assert down["failing"] == ["storage"]
            assert "not writable" in down["checks"]["storage"]
            # Changing a complete group rewrites its metadata.json after the commit: storage
            # refuses it, the change stands (200) and the write stays requested.
            r = alice.patch(base, json={"description": "while storage is away"})
            assert r.status_code == 200, r.text
            during = scrape(srv.url)
        finally:
            aside.rename(objects)
        assert _wait_ready(srv, 200)["checks"]["storage"] == "ok"
        assert alice.patch(base, json={"description": "storage is back"}).status_code == 200
        after = scrape(srv.url)

    def ops(scrape_: Any, operation: str, outcome: str) -> float:
        return delta(
            before, scrape_, "pacs_storage_operations_total", operation=operation, outcome=outcome
        )

    storage_ops = {k: v for k, v in during.samples.items() if k[0].startswith("pacs_storage_op")}
    assert ops(during, "PutObject", "5xx") == 1, storage_ops
    assert ops(during, "PutObject", "2xx") == 0
    assert ops(during, "Ping", "5xx") >= 1
    assert ops(after, "PutObject", "2xx") == 1
    patch = {"method": "PATCH", "route": "/api/annotations/{annotation_id}/mask-groups/{group_id}"}
    assert delta(before, after, "pacs_http_requests_total", status="200", **patch) == 2
    assert (
        delta(before, after, "pacs_storage_operation_duration_seconds_count", operation="PutObject")
        == 2
    )
