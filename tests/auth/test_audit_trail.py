"""The audit trail: a row for every change and for every request that hands out signed URLs
(never a URL itself), read back through GET /api/audit by admins with filters and
pagination."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx

from fixtures.factories import create_annotation, create_group, group_url, make_masks, put_all

from .conftest import Idp


def _trail(root: httpx.Client, **params: object) -> dict:
    r = root.get("/api/audit", params={"limit": 1000, **params})
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_every_action_leaves_one_row(idp: Idp, root: httpx.Client) -> None:
    subject = f"olga-{uuid.uuid4().hex[:6]}"
    started = datetime.now(UTC) - timedelta(seconds=1)
    queries: list[str] = []
    with idp.client(subject) as olga:
        annotation = create_annotation(olga)
        aid = annotation["id"]
        a = f"/api/annotations/{aid}"
        olga.patch(a, json={"description": "checked"}).raise_for_status()
        masks = make_masks(3)
        r = olga.post(
            f"{a}/mask-groups", json={"group_name": "seg", "files": [m.spec() for m in masks]}
        )
        assert r.status_code == 201
        group = r.json()
        create_request_id = r.headers["x-request-id"]
        queries += [urlsplit(u["url"]).query for u in group["uploads"]]
        base = group_url(aid, group["id"])
        # A failed complete (nothing uploaded yet) rolls back and leaves no row.
        assert olga.post(f"{base}/complete").status_code == 409
        renewed = olga.post(f"{base}/upload-urls", json={"files": [masks[0].spec()]}).json()
        queries += [urlsplit(u["url"]).query for u in renewed["uploads"]]
        put_all(group["uploads"], masks)
        olga.post(f"{base}/complete").raise_for_status()
        olga.post(f"{base}/complete").raise_for_status()  # idempotent: no second row
        olga.patch(base, json={"description": "v2"}).raise_for_status()
        mask_id = olga.get(f"{base}/masks").json()["items"][0]["id"]
        download = olga.get(f"{base}/masks/{mask_id}/download-url").json()
        queries.append(urlsplit(download["url"]).query)
        content = olga.get(f"{base}/masks/{mask_id}/content", follow_redirects=False)
        assert content.status_code == 307
        queries.append(urlsplit(content.headers["location"]).query)
        assert olga.delete(f"{base}/masks/{mask_id}").status_code == 204
        assert olga.delete(base).status_code == 204
        assert olga.delete(a).status_code == 204

    page = _trail(root, annotation_id=aid, subject=subject)
    rows = list(reversed(page["items"]))  # the API lists newest first
    assert page["total"] == len(rows) == 12
    assert [(r["action"], r["method"], r["url_count"]) for r in rows] == [
        ("annotation.create", None, None),
        ("annotation.update", None, None),
        ("mask_group.create", None, None),
        ("signed_url.issue", "PUT", 3),  # the group's 3 upload URLs: one row
        ("signed_url.issue", "PUT", 1),
        ("mask_group.complete", None, None),
        ("mask_group.update", None, None),
        ("signed_url.issue", "GET", 1),
        ("signed_url.issue", "GET", 1),
        ("mask.delete", None, None),
        ("mask_group.delete", None, None),
        ("annotation.delete", None, None),
    ]
    assert all(r["subject"] == subject for r in rows)
    assert rows[1]["detail"] == {"fields": ["description"]}
    assert rows[2]["detail"] == {"files": 3}
    assert rows[2]["request_id"] == rows[3]["request_id"] == create_request_id
    urls = [r for r in rows if r["action"] == "signed_url.issue"]
    prefix = f"mask/{aid}/{group['id']}/"
    for row in urls:
        assert row["group_id"] == group["id"]
        assert datetime.fromisoformat(row["expires_at"]) > datetime.fromisoformat(row["created_at"])
    batch = root.get(f"/api/audit/{urls[0]['id']}").json()
    assert batch["object_keys"] == [prefix + m.filename for m in masks]
    assert urls[0]["object_key"] is None
    assert urls[0]["object_count"] == 3
    assert urls[1]["object_key"] == prefix + masks[0].filename
    assert urls[2]["mask_id"] == urls[3]["mask_id"] == mask_id
    assert urls[2]["object_key"].startswith(prefix)
    assert rows[9]["object_key"].startswith(prefix)
    # Never the URL, its query or its signature.
    dumped = json.dumps(page) + json.dumps(batch)
    assert "signature" not in dumped.lower()
    assert "?" not in dumped
    assert all(q and q not in dumped for q in queries)
    assert _trail(root, annotation_id=aid, since=started.isoformat())["total"] == 12


def test_filters_and_pagination(idp: Idp, root: httpx.Client) -> None:
    subject = f"pat-{uuid.uuid4().hex[:6]}"
    before = datetime.now(UTC) - timedelta(seconds=1)
    with idp.client(subject) as pat:
        first = create_annotation(pat)
        second = create_annotation(pat)
        group = create_group(pat, second["id"], make_masks(4))
    after = datetime.now(UTC) + timedelta(seconds=1)

    mine = _trail(root, subject=subject)
    assert mine["total"] == 4  # 2 annotations, 1 group, 1 row for its 4 URLs
    assert [r["id"] for r in mine["items"]] == sorted(
        (r["id"] for r in mine["items"]), reverse=True
    )
    assert _trail(root, subject=subject, annotation_id=first["id"])["total"] == 1
    signed = _trail(root, subject=subject, action="signed_url.issue")
    assert signed["total"] == 1
    assert signed["items"][0]["url_count"] == 4
    assert {r["group_id"] for r in signed["items"]} == {group["id"]}
    # (with the subject: SQLite may reuse the id of a group deleted by another test)
    assert _trail(root, subject=subject, group_id=group["id"])["total"] == 2
    assert _trail(root, subject=subject, action="annotation.create")["total"] == 2

    window = {"from": before.isoformat(), "to": after.isoformat()}
    assert _trail(root, subject=subject, **window)["total"] == 4
    assert _trail(root, subject=subject, **{"from": after.isoformat()})["total"] == 0
    assert _trail(root, subject=subject, to=before.isoformat())["total"] == 0
    naive_utc = after.replace(tzinfo=None).isoformat()  # no offset: read as UTC
    assert _trail(root, subject=subject, to=naive_utc)["total"] == 4

    page = root.get("/api/audit", params={"subject": subject, "limit": 2, "offset": 1}).json()
    assert (page["total"], page["limit"], page["offset"]) == (4, 2, 1)
    assert [r["id"] for r in page["items"]] == [r["id"] for r in mine["items"][1:3]]


def test_audit_is_for_admins_only(idp: Idp) -> None:
    with idp.client("quinn") as quinn:
        create_annotation(quinn)
        r = quinn.get("/api/audit", params={"subject": "quinn"})
        assert r.status_code == 403
        assert r.json() == {"error": "Forbidden", "detail": "the audit trail is for admins only"}
    assert httpx.get(idp.server.url + "/api/audit").status_code == 401


def test_bad_filters_are_422(root: httpx.Client) -> None:
    for params in (
        {"action": "annotation.explode"},
        {"from": "yesterday"},
        {"annotation_id": "abc"},
        {"limit": 0},
        {"limit": 1001},
        {"offset": -1},
    ):
        r = root.get("/api/audit", params=params)
        assert r.status_code == 422, (params, r.text)
        assert r.json()["error"] == "ValidationError"


def test_five_thousand_urls_are_one_row(idp: Idp, root: httpx.Client) -> None:
    subject = f"ct-{uuid.uuid4().hex[:6]}"
    with idp.client(subject) as ct:
        annotation = create_annotation(ct)
        masks = make_masks(5000, labels=tuple(f"organ{i}" for i in range(10)), size=64)
        group = create_group(ct, annotation["id"], masks)
    assert len(group["uploads"]) == 5000
    page = _trail(root, subject=subject, group_id=group["id"], action="signed_url.issue")
    assert page["total"] == 1
    (row,) = page["items"]
    assert (row["url_count"], row["object_count"]) == (5000, 5000)
    keys = root.get(f"/api/audit/{row['id']}").json()["object_keys"]
    assert keys == [u["object_key"] for u in group["uploads"]]
    last = group["uploads"][-1]["object_key"]
    assert [r["id"] for r in _trail(root, object_key=last)["items"]] == [row["id"]]
