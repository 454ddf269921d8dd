"""The SDK (and so `pacs-ext upload/download`) honours HTTP_PROXY / NO_PROXY from the
environment, for the API and for storage alike, as httpx's clients do by default: a hospital
network often reaches servers only through a proxy."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fixtures.factories import png_like
from fixtures.http_proxy import forward_proxy
from fixtures.server import ServerProcess, make_token
from pacs_ext.client import PacsClient, download_mask_group, upload_mask_group

pytestmark = pytest.mark.server_kinds("sqlite", "postgres-rgw")


def _masks(folder: Path, count: int) -> dict[str, bytes]:
    folder.mkdir()
    bodies = {f"{i + 1:04d}_liver.png": png_like(2000 + i, i) for i in range(count)}
    for name, body in bodies.items():
        (folder / name).write_bytes(body)
    return bodies


async def _round_trip(server: ServerProcess, tmp_path: Path) -> dict[str, bytes]:
    async with PacsClient(server.url, make_token("alice")) as c:
        annotation = await c.create_annotation("1.2.3")
        result = await upload_mask_group(c, annotation.id, tmp_path / "in", group_name="proxied")
        assert result.group.status == "complete"
        await download_mask_group(c, annotation.id, result.group.id, tmp_path / "out")
    return {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}


def test_api_and_storage_go_through_the_proxy_in_the_environment(
    server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bodies = _masks(tmp_path / "in", 4)
    with forward_proxy() as proxy:
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        assert asyncio.run(_round_trip(server, tmp_path)) == bodies
    server_host = server.url.removeprefix("http://")
    api = [(m, p) for m, host, p in proxy.seen if host == server_host and p.startswith("/api/")]
    assert ("POST", "/api/annotations") in api
    puts = [p for m, _, p in proxy.seen if m == "PUT" and p.endswith("_liver.png")]
    assert len(puts) == 4, proxy.seen  # every mask's PUT, whether to the server or to RGW
    gets = [p for m, _, p in proxy.seen if m == "GET" and p.endswith("_liver.png")]
    assert len(gets) == 4, proxy.seen


def test_no_proxy_names_hosts_reached_directly(
    server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bodies = _masks(tmp_path / "in", 2)
    with forward_proxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        assert asyncio.run(_round_trip(server, tmp_path)) == bodies
    assert proxy.seen == []
