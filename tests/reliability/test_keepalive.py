"""Idle keep-alive connections outlive every client pool in front of the server (issue 17).

uvicorn closes an idle connection after 5 s by default and httpx's pool keeps one for 5 s, so
a request sent on a connection the server was closing died without an answer. The server now
keeps idle connections for `server.keepalive_timeout_seconds` (75 s by default) and the SDK
forgets them after 4 s.

No test waits 5 s (or 75): that the configured value reaches uvicorn is read back from
uvicorn's own Config built from what `pacs-ext serve` passes it; a real connection then shows
the server answering on a connection left idle past the SDK's (shortened) expiry, and the SDK
opening a new one after its expiry instead of reusing one the server may be closing.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import uvicorn

from fixtures.raw_http import RawConnection
from fixtures.server import ServerProcess, make_token
from fixtures.tcp_proxy import TcpProxy
from pacs_ext.cli.serve import uvicorn_options
from pacs_ext.client import PacsClient
from pacs_ext.client.connections import KEEPALIVE_EXPIRY
from pacs_ext.core.config import load_settings

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"


def _uvicorn_config(monkeypatch: pytest.MonkeyPatch, **env: str) -> uvicorn.Config:
    monkeypatch.setenv("APP_CONFIG_DIR", str(CONFIG_DIR))
    monkeypatch.delenv("APP_SERVER__KEEPALIVE_TIMEOUT_SECONDS", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    options = uvicorn_options(load_settings(), workers=1)
    return uvicorn.Config("pacs_ext.app:create_app", **options)


def test_the_server_keeps_idle_connections_75_s_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = _uvicorn_config(monkeypatch)
    assert config.timeout_keep_alive == 75
    # Longer than the balancers docs/operations.md names (AWS ALB 60 s, nginx 60 s upstream)...
    assert config.timeout_keep_alive > 60
    # ...and than the SDK's own pool, which also stays under uvicorn's 5 s default.
    assert KEEPALIVE_EXPIRY < 5 < config.timeout_keep_alive


def test_the_keepalive_timeout_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    config = _uvicorn_config(monkeypatch, APP_SERVER__KEEPALIVE_TIMEOUT_SECONDS="120")
    assert config.timeout_keep_alive == 120


@pytest.mark.server_kinds("sqlite")
def test_a_connection_idle_past_the_sdk_expiry_still_answers(server: ServerProcess) -> None:
    auth = {"Authorization": f"Bearer {make_token('keepalive')}"}
    with RawConnection("127.0.0.1", server.port) as conn:
        assert conn.request("GET", "/api/annotations?limit=1", auth).status == 200
        time.sleep(0.2)
        # Same socket: the server kept it open while it sat idle.
        assert conn.request("GET", "/api/annotations?limit=1", auth).status == 200


@pytest.mark.server_kinds("sqlite")
async def test_the_sdk_forgets_idle_connections_after_its_expiry(server: ServerProcess) -> None:
    proxy = TcpProxy(("127.0.0.1", server.port)).start()
    try:
        async with PacsClient(
            f"http://127.0.0.1:{proxy.port}", make_token("keepalive"), keepalive_expiry=0.15
        ) as c:
            await c.health()
            await c.health()
            assert proxy.accepted == 1  # reused while fresh
            await asyncio.sleep(0.2)
            await c.health()
            assert proxy.accepted == 2  # past its expiry: a new connection, not a stale one
    finally:
        proxy.stop()
