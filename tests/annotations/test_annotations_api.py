"""Annotations CRUD, filters, pagination, and owner / shared-read / admin rules on every route."""

from __future__ import annotations

import httpx
import pytest

from fixtures.factories import create_annotation, create_group, group_url, make_masks, put_all
from fixtures.server import ServerProcess, make_token


def test_crud_and_partial_update(alice: httpx.Client) -> None:
    created = create_annotation(
        alice, tool_name="TotalSegmentator", data={"k": 1}, measurement_values=[1, 2]
    )
    assert created["owner"] == "alice"
    assert created["data"] == {"k": 1}
    r = alice.patch(f"/api/annotations/{created['id']}", json={"description": "checked"})
    assert r.status_code == 200
    body = r.json()
    assert body["description"] == "checked"
    assert body["tool_name"] == "TotalSegmentator"
    assert body["measurement_values"] == [1, 2]
    assert body["updated_at"] >= created["updated_at"]
    assert alice.get(f"/api/annotations/{created['id']}").json() == body
    assert alice.delete(f"/api/annotations/{created['id']}").status_code == 204
    assert alice.get(f"/api/annotations/{created['id']}").status_code == 404


def test_list_filters_and_pagination(server: ServerProcess) -> None:
    subject = f"lister-{server.port}"
    with server.client(subject) as c:
        study = "1.2.826.0.1.3680043.8.498.1"
        ids = [
            create_annotation(c, study_instance_uid=study, viewer_software="OHIF")["id"]
            for _ in range(5)
        ]
        create_annotation(
            c, study_instance_uid="1.2.826.0.1.3680043.8.498.2", viewer_software="Weasis"
        )
        page = c.get(
            "/api/annotations", params={"study_instance_uid": study, "limit": 2, "offset": 1}
        ).json()
        assert page["total"] == 5
        assert page["limit"] == 2
        assert page["offset"] == 1
        assert [a["id"] for a in page["items"]] == ids[1:3]
        weasis = c.get("/api/annotations", params={"viewer_software": "Weasis"}).json()
        assert all(a["viewer_software"] == "Weasis" for a in weasis["items"])
        assert c.get("/api/annotations", params={"limit": 0}).status_code == 422
        assert c.get("/api/annotations", params={"offset": -1}).status_code == 422


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"study_instance_uid": "not-a-uid"},
        {"study_instance_uid": "1.2.3", "unknown_field": 1},
        {"study_instance_uid": "1.2.3", "data": [1, 2]},
        {"study_instance_uid": "1." + "2" * 70},
    ],
)
def test_invalid_annotation_is_422(alice: httpx.Client, body: dict) -> None:
    r = alice.post("/api/annotations", json=body)
    assert r.status_code == 422
    assert r.json()["error"] == "ValidationError"


def test_malformed_json_is_422_not_500(alice: httpx.Client) -> None:
    r = alice.post(
        "/api/annotations", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 422


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": "Basic YWxpY2U6cHc="},
        {"Authorization": "Bearer " + make_token("alice", ttl=-120)},
    ],
)
def test_missing_or_bad_token_is_401(server: ServerProcess, headers: dict) -> None:
    r = httpx.get(server.url + "/api/annotations", headers=headers)
    assert r.status_code == 401
    assert r.json()["error"] == "Unauthorized"


def test_token_signed_with_another_secret_is_401(server: ServerProcess) -> None:
    import jwt

    forged = jwt.encode(
        {"sub": "alice", "exp": 4102444800, "roles": ["admin"]},
        "a-different-secret-of-sufficient-length-0123456789",
        algorithm="HS256",
    )
    r = httpx.get(server.url + "/api/annotations", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401


def test_cross_user_access_on_every_route(
    alice: httpx.Client, bob: httpx.Client, admin: httpx.Client
) -> None:
    masks = make_masks(2)
    private = create_annotation(alice)
    group = create_group(alice, private["id"], masks)
    put_all(group["uploads"], masks)
    base = group_url(private["id"], group["id"])
    alice.post(f"{base}/complete").raise_for_status()
    mask_id = alice.get(f"{base}/masks").json()["items"][0]["id"]
    a = f"/api/annotations/{private['id']}"
    spec = {"files": [make_masks(3)[2].spec()]}
    routes = [
        ("GET", a, None),
        ("PATCH", a, {"description": "x"}),
        ("DELETE", a, None),
        ("GET", f"{a}/mask-groups", None),
        ("POST", f"{a}/mask-groups", spec),
        ("GET", base, None),
        ("PATCH", base, {"description": "x"}),
        ("DELETE", base, None),
        ("POST", f"{base}/upload-urls", spec),
        ("POST", f"{base}/complete", None),
        ("GET", f"{base}/masks", None),
        ("GET", f"{base}/masks/{mask_id}", None),
        ("GET", f"{base}/masks/{mask_id}/download-url", None),
        ("GET", f"{base}/masks/{mask_id}/content", None),
        ("DELETE", f"{base}/masks/{mask_id}", None),
    ]
    for method, path, body in routes:
        r = bob.request(method, path, json=body)
        assert r.status_code == 403, (method, path, r.status_code, r.text)
        assert r.json()["error"] == "Forbidden"
    assert private["id"] not in [
        x["id"] for x in bob.get("/api/annotations", params={"limit": 1000}).json()["items"]
    ]
    # Nothing changed for the owner.
    assert alice.get(f"{base}/masks").json()["total"] == 2

    # Shared: others may read, never write.
    alice.patch(a, json={"is_shared": True}).raise_for_status()
    for method, path, body in routes:
        r = bob.request(method, path, json=body)
        if method == "GET":
            assert r.status_code in (200, 307), (method, path, r.text)
        else:
            assert r.status_code == 403, (method, path, r.text)

    # Admin: everything, including deleting another user's annotation.
    assert admin.get(f"{base}/masks/{mask_id}").status_code == 200
    assert admin.patch(base, json={"description": "by admin"}).status_code == 200
    r = admin.delete(a)
    assert r.status_code == 204, r.text
    assert alice.get(a).status_code == 404
