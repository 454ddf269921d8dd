"""Graceful drain: on SIGTERM /ready answers 503 at once, requests in flight finish, requests
that never finish are cut off after shutdown_timeout_seconds, and the process exits 0."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from fixtures.server import ServerProcess, make_token

pytestmark = pytest.mark.e2e


def _start_post(srv: ServerProcess, body: bytes, sent: int) -> socket.socket:
    """A POST /api/annotations whose headers and first `sent` body bytes are on the wire."""
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    head = (
        "POST /api/annotations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {make_token('alice')}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body[:sent])
    return sock


def _status(sock: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise AssertionError(f"connection closed before an answer: {data!r}")
        data += chunk
    return int(data.split(b" ", 2)[1])


def _refused(srv: ServerProcess) -> bool:
    try:
        socket.create_connection(("127.0.0.1", srv.port), timeout=1).close()
    except OSError:
        return True
    return False


def test_sigterm_drains_then_finishes_in_flight_and_exits_0(tmp_path: Path) -> None:
    srv = ServerProcess(
        data_dir=tmp_path,
        database_url="",
        extra_env={
            "APP_SERVER__DRAIN_SECONDS": "1.5",
            "APP_SERVER__SHUTDOWN_TIMEOUT_SECONDS": "3",
        },
    ).start()
    body = json.dumps({"study_instance_uid": "1.2.3", "description": "in flight"}).encode()
    assert httpx.get(srv.url + "/ready", timeout=10).status_code == 200
    finishing = _start_post(srv, body, len(body) // 2)
    stalled = _start_post(srv, body, 5)  # never sends the rest
    try:
        time.sleep(0.2)  # both requests reached the app
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGTERM)
        sigterm_at = time.monotonic()

        # At once: /ready says 503 (a balancer stops sending) while requests are still served.
        ready = httpx.get(srv.url + "/ready", timeout=5)
        assert ready.status_code == 503, ready.text
        assert ready.json()["status"] == "draining"
        with srv.client() as client:
            made = client.post("/api/annotations", json={"study_instance_uid": "1.2.4"})
        assert made.status_code == 201, made.text

        # After the drain the listener closes; the request in flight still gets its answer.
        while not _refused(srv):
            assert time.monotonic() - sigterm_at < 10, "the listener never closed"
            time.sleep(0.1)
        assert time.monotonic() - sigterm_at >= 1.4
        finishing.sendall(body[len(body) // 2 :])
        assert _status(finishing) == 201

        # The stalled request is cut off after shutdown_timeout_seconds; the exit is clean.
        code = srv.proc.wait(timeout=15)
        took = time.monotonic() - sigterm_at
        assert code == 0, srv.log_path.read_text()[-2000:]
        assert 1.5 + 2.5 < took < 1.5 + 3 + 5, took

        # The finished request was committed: a new server on the same folder lists both.
        srv2 = ServerProcess(data_dir=tmp_path, database_url="").start()
        try:
            with srv2.client() as client:
                listed = client.get("/api/annotations", params={"limit": 10}).json()
            assert sorted(a["study_instance_uid"] for a in listed["items"]) == ["1.2.3", "1.2.4"]
        finally:
            srv2.stop()
    finally:
        stalled.close()
        finishing.close()
        srv.stop()
