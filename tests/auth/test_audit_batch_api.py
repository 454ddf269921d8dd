"""Issue 18, item 1: a request that signs N URLs writes one audit row, not N.

Through GET /api/audit (in-process, SQLite + local store): the row of a group's creation and
of each upload-urls call says who got how many URLs for which objects until when; GET
/api/audit/{id} lists the keys; ?object_key= finds every row that made an object reachable.
Before the change, each signed URL was a row of its own (5 files: 5 rows).
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime
from typing import Any

import httpx

from fixtures.inprocess import InProcess


def _spec(name: str) -> dict[str, Any]:
    body = name.encode()
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    return {"filename": name, "size": len(body), "md5": md5}


async def _trail(admin: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    r = await admin.get("/api/audit", params={"limit": 1000, **params})
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_a_request_that_signs_n_urls_writes_one_row(inproc: InProcess) -> None:
    async with inproc.client("dora") as dora, inproc.client("root", admin=True) as admin:
        aid = (await dora.post("/api/annotations", json={"study_instance_uid": "1.2"})).json()["id"]
        files = [_spec(f"{i}.png") for i in range(5)]
        r = await dora.post(f"/api/annotations/{aid}/mask-groups", json={"files": files})
        assert r.status_code == 201, r.text
        group = r.json()
        gid = group["id"]
        keys = [u["object_key"] for u in group["uploads"]]
        more = await dora.post(
            f"/api/annotations/{aid}/mask-groups/{gid}/upload-urls",
            json={"files": files[:2], "ttl_seconds": 60},
        )
        assert more.status_code == 200, more.text

        page = await _trail(admin, group_id=gid, action="signed_url.issue")
        assert page["total"] == 2  # one per request, not one per URL (7)
        renewed, created = page["items"]  # newest first
        assert created["subject"] == "dora"
        assert (created["method"], created["url_count"], created["object_count"]) == ("PUT", 5, 5)
        assert created["object_key"] is None  # several objects: GET /api/audit/{id} lists them
        assert created["expires_at"] == max(u["expires_at"] for u in group["uploads"])
        assert (renewed["url_count"], renewed["object_count"]) == (2, 2)
        assert datetime.fromisoformat(renewed["expires_at"]) < datetime.fromisoformat(
            created["expires_at"]
        )
        assert "object_keys" not in created  # lists stay small: 10,000 keys a row at most

        detail = await admin.get(f"/api/audit/{created['id']}")
        assert detail.status_code == 200, detail.text
        assert detail.json()["object_keys"] == keys
        assert {k: v for k, v in detail.json().items() if k != "object_keys"} == created
        renewed_keys = (await admin.get(f"/api/audit/{renewed['id']}")).json()["object_keys"]
        assert renewed_keys == keys[:2]

        # Who was handed URLs for this object, and until when: both rows name keys[0].
        reach = await _trail(admin, object_key=keys[0])
        assert [r["id"] for r in reach["items"]] == [renewed["id"], created["id"]]
        assert [r["id"] for r in (await _trail(admin, object_key=keys[4]))["items"]] == [
            created["id"]
        ]
        assert (await _trail(admin, object_key=keys[0] + "x"))["total"] == 0
        # Never the URL, its query or its signature.
        dumped = json.dumps(page) + detail.text
        assert "?" not in dumped
        assert "signature" not in dumped.lower()


async def test_the_event_route_is_for_admins_and_bounded(inproc: InProcess) -> None:
    async with inproc.client("erin") as erin, inproc.client("root", admin=True) as admin:
        r = await erin.get("/api/audit/1")
        assert r.status_code == 403
        assert r.json()["detail"] == "the audit trail is for admins only"
        assert (await admin.get("/api/audit/999999999")).status_code == 404
        for bad in ("0", "-1", str(2**63), "abc"):
            assert (await admin.get(f"/api/audit/{bad}")).status_code == 422, bad
        long_key = "k" * 1025
        assert (await admin.get("/api/audit", params={"object_key": long_key})).status_code == 422
