"""Bounded input (issue 12, item 4): request bodies, files per group over all calls, the size
of an annotation's JSON, and the length of a 409 from `complete`."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from fixtures.inprocess import AppFactory, InProcess


def _spec(name: str, body: bytes = b"") -> dict[str, Any]:
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    return {"filename": name, "size": len(body), "md5": md5}


async def _annotation(c: httpx.AsyncClient) -> int:
    r = await c.post("/api/annotations", json={"study_instance_uid": "1.2.3"})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def _count_annotations(app: InProcess) -> int:
    async with app.client("root", admin=True) as admin:
        return int((await admin.get("/api/annotations")).json()["total"])


async def test_declared_body_over_the_cap_is_413_before_parsing(make_app: AppFactory) -> None:
    app = await make_app(limits={"max_body_bytes": 4096})
    body = json.dumps({"study_instance_uid": "1.2.3", "description": "x" * 5000})
    async with app.client() as c:
        r = await c.post(
            "/api/annotations", content=body, headers={"content-type": "application/json"}
        )
    assert r.status_code == 413, r.text
    assert r.json()["error"] == "PayloadTooLarge"
    assert "limits.max_body_bytes" in r.json()["detail"]
    assert r.json()["limit"] == 4096
    assert await _count_annotations(app) == 0


async def test_streamed_body_over_the_cap_is_413(make_app: AppFactory) -> None:
    app = await make_app(limits={"max_body_bytes": 4096})
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"study_instance_uid": "1.2.3", "description": "'
        for _ in range(100):
            sent += 1
            yield b"x" * 1000
        yield b'"}'

    async with app.client() as c:
        r = await c.post(
            "/api/annotations", content=chunks(), headers={"content-type": "application/json"}
        )
    assert r.status_code == 413, r.text
    assert r.json()["error"] == "PayloadTooLarge"
    assert sent < 100  # refused while it was still arriving
    assert await _count_annotations(app) == 0


async def test_bodies_under_the_cap_pass(make_app: AppFactory) -> None:
    app = await make_app(limits={"max_body_bytes": 4096})
    async with app.client() as c:
        r = await c.post("/api/annotations", json={"study_instance_uid": "1.2.3"})
    assert r.status_code == 201, r.text


async def test_local_store_put_is_bounded_by_its_signed_size_not_the_api_cap(
    make_app: AppFactory,
) -> None:
    app = await make_app(limits={"max_body_bytes": 4096})
    payload = b"\x89PNG" + b"p" * 20_000
    async with app.client() as c:
        aid = await _annotation(c)
        r = await c.post(
            f"/api/annotations/{aid}/mask-groups", json={"files": [_spec("big.png", payload)]}
        )
        assert r.status_code == 201, r.text
        target = r.json()["uploads"][0]
        put = await c.put(target["url"], content=payload, headers=target["headers"])
        assert put.status_code == 200, put.text
        # One byte more than signed is refused by the store itself.
        longer = {**target["headers"], "Content-Length": str(len(payload) + 1)}
        put = await c.put(target["url"], content=payload + b"!", headers=longer)
        assert put.status_code == 403, put.text


async def test_files_per_group_are_capped_over_all_calls(make_app: AppFactory) -> None:
    app = await make_app(limits={"max_files_per_group": 5})
    async with app.client() as c:
        aid = await _annotation(c)
        url = f"/api/annotations/{aid}/mask-groups"
        r = await c.post(url, json={"files": [_spec(f"{i}.png") for i in range(6)]})
        assert r.status_code == 422, r.text
        assert "limits.max_files_per_group" in r.json()["detail"]

        r = await c.post(url, json={"files": [_spec(f"{i}.png") for i in range(3)]})
        assert r.status_code == 201, r.text
        more = f"{url}/{r.json()['id']}/upload-urls"
        r = await c.post(more, json={"files": [_spec("3.png"), _spec("4.png")]})
        assert r.status_code == 200, r.text
        # Renewing declared files adds nothing; one new file passes the cap.
        r = await c.post(more, json={"files": [_spec("0.png"), _spec("4.png")]})
        assert r.status_code == 200, r.text
        r = await c.post(more, json={"files": [_spec("5.png")]})
        assert r.status_code == 422, r.text
        body = r.json()
        assert body["limit"] == 5
        assert "would hold 6 files" in body["detail"]


async def test_annotation_data_size_is_capped(make_app: AppFactory) -> None:
    app = await make_app(limits={"annotation_data_max_bytes": 1000})
    async with app.client() as c:
        r = await c.post(
            "/api/annotations", json={"study_instance_uid": "1.2.3", "data": {"k": "v" * 2000}}
        )
        assert r.status_code == 422, r.text
        assert "limits.annotation_data_max_bytes" in r.json()["detail"]
        aid = await _annotation(c)
        r = await c.patch(f"/api/annotations/{aid}", json={"measurement_values": ["v" * 2000]})
        assert r.status_code == 422, r.text
        r = await c.patch(f"/api/annotations/{aid}", json={"data": {"k": "v" * 500}})
        assert r.status_code == 200, r.text
    assert await _count_annotations(app) == 1


async def test_complete_conflict_lists_at_most_n_names_with_counts(make_app: AppFactory) -> None:
    app = await make_app(limits={"conflict_max_names": 3})
    async with app.client() as c:
        aid = await _annotation(c)
        files = [_spec(f"{i:02d}.png", b"body%d" % i) for i in range(10)]
        r = await c.post(f"/api/annotations/{aid}/mask-groups", json={"files": files})
        assert r.status_code == 201, r.text
        r = await c.post(f"/api/annotations/{aid}/mask-groups/{r.json()['id']}/complete")
    assert r.status_code == 409, r.text
    body = r.json()
    assert len(body["missing"]) == 3
    assert body["missing_count"] == 10
    assert body["mismatched"] == []
    assert body["mismatched_count"] == 0
    assert body["truncated"] is True
    assert "10 file(s) missing" in body["detail"]
