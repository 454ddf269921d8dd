"""Projects from the token's projects claim: read for members, write with the write role;
owner / shared / admin rules unchanged; listing includes readable project annotations."""

from __future__ import annotations

import uuid

import httpx

from fixtures.factories import create_annotation, create_group, group_url, make_masks, put_all

from .conftest import WRITE_ROLE, Idp


def _ids(page: dict) -> list[int]:
    return [a["id"] for a in page["items"]]


def test_project_members_read_and_writers_write(idp: Idp) -> None:
    project, other = f"lung-{uuid.uuid4().hex[:6]}", f"liver-{uuid.uuid4().hex[:6]}"
    with (
        idp.client("carol", projects=[project]) as carol,
        idp.client("dave", projects=[project]) as dave,
        idp.client("frank", projects=[project], roles=[WRITE_ROLE]) as frank,
        idp.client("erin", projects=[other], roles=[WRITE_ROLE]) as erin,
        idp.client("nobody") as nobody,
    ):
        annotation = create_annotation(carol, project_id=project)
        assert annotation["project_id"] == project
        a = f"/api/annotations/{annotation['id']}"
        masks = make_masks(2)

        # A member without the write role: read only, and the annotation is in their list.
        assert dave.get(a).status_code == 200
        listed = dave.get("/api/annotations", params={"project_id": project}).json()
        assert _ids(listed) == [annotation["id"]]
        assert annotation["id"] in _ids(dave.get("/api/annotations").json())
        for method, path, body in [
            ("PATCH", a, {"description": "x"}),
            ("DELETE", a, None),
            ("POST", f"{a}/mask-groups", {"files": [masks[0].spec()]}),
        ]:
            r = dave.request(method, path, json=body)
            assert r.status_code == 403, (method, path, r.text)
            assert r.json()["error"] == "Forbidden"

        # A member with the write role: changes the annotation and uploads masks to it.
        r = frank.patch(a, json={"description": "reviewed by frank"})
        assert r.status_code == 200, r.text
        assert r.json()["owner"] == "carol"
        group = create_group(frank, annotation["id"], masks)
        put_all(group["uploads"], masks)
        assert frank.post(f"{group_url(annotation['id'], group['id'])}/complete").status_code == 200
        assert dave.get(f"{group_url(annotation['id'], group['id'])}/masks").json()["total"] == 2
        # ...but who else may see it stays the owner's decision.
        assert frank.patch(a, json={"is_shared": True}).json()["error"] == "Forbidden"
        assert frank.patch(a, json={"project_id": None}).status_code == 403

        # The write role does not reach into projects the token does not list.
        for client in (erin, nobody):
            assert client.get(a).status_code == 403
            assert client.patch(a, json={"description": "x"}).status_code == 403
            assert annotation["id"] not in _ids(
                client.get("/api/annotations", params={"limit": 1000}).json()
            )


def test_project_assignment_needs_membership(idp: Idp, root: httpx.Client) -> None:
    project = f"p-{uuid.uuid4().hex[:6]}"
    with idp.client("grace", projects=[project]) as grace:
        r = grace.post("/api/annotations", json={"study_instance_uid": "1.2.3", "project_id": "x"})
        assert r.status_code == 403
        assert "project 'x'" in r.json()["detail"]
        mine = create_annotation(grace)
        a = f"/api/annotations/{mine['id']}"
        assert grace.patch(a, json={"project_id": "elsewhere"}).status_code == 403
        r = grace.patch(a, json={"project_id": project})
        assert r.status_code == 200
        assert r.json()["project_id"] == project
        r = grace.patch(a, json={"project_id": None})
        assert r.json()["project_id"] is None
        assert (
            grace.post(
                "/api/annotations", json={"study_instance_uid": "1.2.3", "project_id": ""}
            ).status_code
            == 422
        )
    # Admins may file annotations anywhere and see every project.
    theirs = create_annotation(root, project_id="any-project")
    assert root.get(f"/api/annotations/{theirs['id']}").status_code == 200
    assert theirs["id"] in _ids(
        root.get("/api/annotations", params={"project_id": "any-project"}).json()
    )


def test_shared_and_owner_rules_still_hold(idp: Idp) -> None:
    with idp.client("henry") as henry, idp.client("ivy", projects=["unrelated"]) as ivy:
        shared = create_annotation(henry, is_shared=True)
        private = create_annotation(henry)
        assert ivy.get(f"/api/annotations/{shared['id']}").status_code == 200
        assert (
            ivy.patch(f"/api/annotations/{shared['id']}", json={"description": "x"}).status_code
            == 403
        )
        assert ivy.get(f"/api/annotations/{private['id']}").status_code == 403
        listed = _ids(ivy.get("/api/annotations", params={"limit": 1000}).json())
        assert shared["id"] in listed
        assert private["id"] not in listed
