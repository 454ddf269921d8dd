"""Hardening (issue 12, item 7): response headers, /docs without a CDN, private data files."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import httpx

from fixtures.inprocess import InProcess

MD5_EMPTY = "1B2M2Y8AsgTpgAmY7PhCfg=="


def _assert_protected(r: httpx.Response) -> None:
    assert r.headers["x-content-type-options"] == "nosniff", r.url
    frame = r.headers.get("x-frame-options", "")
    csp = r.headers.get("content-security-policy", "")
    assert frame == "DENY" or "frame-ancestors 'none'" in csp, r.url


async def test_api_answers_are_not_cached_sniffed_or_framed(
    alice_client: httpx.AsyncClient,
) -> None:
    r = await alice_client.post("/api/annotations", json={"study_instance_uid": "1.2.3"})
    aid = r.json()["id"]
    answers = [
        r,
        await alice_client.get(f"/api/annotations/{aid}"),
        await alice_client.get("/api/annotations/999999"),  # errors too
        await alice_client.post("/api/annotations", json={}),
    ]
    for answer in answers:
        _assert_protected(answer)
        assert answer.headers["cache-control"] == "no-store", answer.url


async def test_download_urls_are_not_cached(alice_client: httpx.AsyncClient) -> None:
    aid = (await alice_client.post("/api/annotations", json={"study_instance_uid": "1.2"})).json()[
        "id"
    ]
    base = f"/api/annotations/{aid}/mask-groups"
    r = await alice_client.post(
        base, json={"files": [{"filename": "e.png", "size": 0, "md5": MD5_EMPTY}]}
    )
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"] == "no-store"
    gid, target = r.json()["id"], r.json()["uploads"][0]
    put = await alice_client.put(target["url"], content=b"", headers=target["headers"])
    assert put.status_code == 200, put.text
    _assert_protected(put)
    assert (await alice_client.post(f"{base}/{gid}/complete")).status_code == 200
    mask = (await alice_client.get(f"{base}/{gid}/masks")).json()["items"][0]
    r = await alice_client.get(f"{base}/{gid}/masks/{mask['id']}/download-url")
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    _assert_protected(r)
    got = await alice_client.get(r.json()["url"])
    assert got.status_code == 200
    _assert_protected(got)


async def test_operational_pages_are_protected(inproc: InProcess) -> None:
    async with inproc.anonymous() as c:
        for path in ("/health", "/openapi.json", "/docs", "/redoc", "/metrics"):
            r = await c.get(path)
            assert r.status_code == 200, (path, r.text)
            _assert_protected(r)
        viewer = await c.get("/viewer")
    assert viewer.headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in viewer.headers["content-security-policy"]
    assert viewer.headers["x-content-type-options"] == "nosniff"


async def test_docs_load_their_assets_from_this_server(inproc: InProcess) -> None:
    async with inproc.anonymous() as c:
        for page in ("/docs", "/redoc"):
            html = (await c.get(page)).text
            sources = re.findall(r'(?:src|href)="([^"]+)"', html)
            assert sources, page
            for url in sources:
                assert url.startswith("/"), (page, url)  # nothing from another host
                r = await c.get(url)
                assert r.status_code == 200, (page, url)
            assert "cdn" not in html.lower()


async def test_local_store_files_and_database_are_private(
    inproc: InProcess, alice_client: httpx.AsyncClient
) -> None:
    aid = (await alice_client.post("/api/annotations", json={"study_instance_uid": "1.2"})).json()[
        "id"
    ]
    r = await alice_client.post(
        f"/api/annotations/{aid}/mask-groups",
        json={"files": [{"filename": "p.png", "size": 0, "md5": MD5_EMPTY}]},
    )
    target = r.json()["uploads"][0]
    assert (
        await alice_client.put(target["url"], content=b"", headers=target["headers"])
    ).is_success
    data_dir = Path(inproc.settings.server.data_dir)
    stored = data_dir / "objects" / target["object_key"]
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    folder = stored.parent
    while folder != data_dir:  # data_dir itself is the operator's (made by the fixture here)
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
        folder = folder.parent
    db_files = list(data_dir.glob("pacs_ext.db*"))
    assert db_files, "the embedded database is not where the default puts it"
    for db_file in db_files:
        assert stat.S_IMODE(db_file.stat().st_mode) == 0o600, db_file
