"""Mask-group rules: validation, TTLs, completion, idempotency, deletes leaving nothing."""

from __future__ import annotations

import httpx
import pytest

from fixtures.factories import (
    MaskFile,
    create_annotation,
    create_group,
    group_url,
    make_masks,
    put_all,
)
from fixtures.objects import StoredObjects
from fixtures.server import ServerProcess


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"filename": "../x.png"}, "filename"),
        ({"filename": "a/b.png"}, "filename"),
        ({"filename": ".hidden"}, "filename"),
        ({"filename": "a..b.png"}, "filename"),
        ({"filename": "metadata.json"}, "filename"),
        ({"filename": "name with space.png"}, "filename"),
        ({"slice_index": 1, "label_name": "../liver"}, "label_name"),
        ({"slice_index": -1, "label_name": "liver"}, "slice_index"),
        ({"slice_index": 1}, "files.0"),
        ({"filename": "ok.png", "md5": "not-base64!"}, "md5"),
        ({"filename": "ok.png", "md5": "AAAA"}, "md5"),
        ({"filename": "ok.png", "content_type": "not a type"}, "content_type"),
        ({"filename": "ok.png", "size": -1}, "size"),
        ({"filename": "ok.png", "sop_instance_uid": "1.2.abc"}, "sop_instance_uid"),
    ],
)
def test_bad_file_specs_are_422_naming_the_field(
    alice: httpx.Client, spec: dict, field: str
) -> None:
    annotation = create_annotation(alice)
    full = {"size": 10, "md5": "1B2M2Y8AsgTpgAmY7PhCfg==", **spec}
    r = alice.post(f"/api/annotations/{annotation['id']}/mask-groups", json={"files": [full]})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] == "ValidationError"
    assert field in body["detail"]
    assert alice.get(f"/api/annotations/{annotation['id']}/mask-groups").json()["total"] == 0


def test_missing_md5_and_duplicates_are_422(alice: httpx.Client) -> None:
    annotation = create_annotation(alice)
    url = f"/api/annotations/{annotation['id']}/mask-groups"
    r = alice.post(url, json={"files": [{"filename": "a.png", "size": 3}]})
    assert r.status_code == 422
    assert "files[0].md5" in r.json()["detail"]
    spec = {"slice_index": 1, "label_name": "liver", "size": 3, "md5": "1B2M2Y8AsgTpgAmY7PhCfg=="}
    r = alice.post(url, json={"files": [spec, spec]})
    assert r.status_code == 422
    assert "duplicate" in r.json()["detail"]
    assert alice.get(url).json()["total"] == 0


@pytest.mark.parametrize("ttl", [0, -5, 3601, 10**9])
def test_ttl_outside_range_is_422_naming_the_range(alice: httpx.Client, ttl: int) -> None:
    annotation = create_annotation(alice)
    r = alice.post(
        f"/api/annotations/{annotation['id']}/mask-groups",
        json={"files": [make_masks(1)[0].spec()], "ttl_seconds": ttl},
    )
    assert r.status_code == 422
    assert "between 1 and 3600" in r.json()["detail"]


def test_ttl_sets_expiry(alice: httpx.Client) -> None:
    from datetime import UTC, datetime

    annotation = create_annotation(alice)
    group = create_group(alice, annotation["id"], make_masks(1), ttl_seconds=3600)
    expires = datetime.fromisoformat(group["uploads"][0]["expires_at"])
    remaining = (expires - datetime.now(UTC)).total_seconds()
    assert 3500 < remaining <= 3600
    group = create_group(alice, annotation["id"], make_masks(1))
    expires = datetime.fromisoformat(group["uploads"][0]["expires_at"])
    assert 500 < (expires - datetime.now(UTC)).total_seconds() <= 600


def test_complete_with_missing_and_mismatched_files_is_409(alice: httpx.Client) -> None:
    masks = make_masks(4)
    annotation = create_annotation(alice)
    group = create_group(alice, annotation["id"], masks)
    # Upload only two; one of them with a body of another declared file's URL is impossible
    # (signed MD5), so simulate a mismatch by re-declaring a file with another size.
    put_all(group["uploads"][:2], masks)
    base = group_url(annotation["id"], group["id"])
    r = alice.post(f"{base}/complete")
    assert r.status_code == 409
    body = r.json()
    assert body["error"] == "Conflict"
    assert sorted(p["filename"] for p in body["missing"]) == sorted(m.filename for m in masks[2:])
    assert body["mismatched"] == []

    changed = MaskFile(masks[0].slice_index, masks[0].label_name, masks[0].body + b"more")
    r = alice.post(f"{base}/upload-urls", json={"files": [changed.spec()]})
    assert r.status_code == 200
    # Re-declaring removed the old object (write-once); the first URL, signed for the old
    # size and MD5, can still store the old bytes: those no longer match the declaration.
    put_all(group["uploads"][:1], masks)
    r = alice.post(f"{base}/complete")
    assert r.status_code == 409
    mismatched = r.json()["mismatched"]
    assert [p["filename"] for p in mismatched] == [masks[0].filename]
    assert mismatched[0]["expected_size"] == len(changed.body)
    assert mismatched[0]["actual_size"] == len(masks[0].body)
    assert alice.get(base).json()["status"] == "pending"
    assert alice.get(f"{base}/masks").json()["total"] == 0


def test_upload_urls_renews_and_adds_then_complete_twice(alice: httpx.Client) -> None:
    masks = make_masks(3)
    annotation = create_annotation(alice)
    group = create_group(alice, annotation["id"], masks[:2], ttl_seconds=1)
    base = group_url(annotation["id"], group["id"])
    r = alice.post(
        f"{base}/upload-urls", json={"files": [m.spec() for m in masks], "ttl_seconds": 120}
    )
    assert r.status_code == 200
    uploads = r.json()["uploads"]
    assert [u["filename"] for u in uploads] == [m.filename for m in masks]
    put_all(uploads, masks)
    first = alice.post(f"{base}/complete")
    assert first.status_code == 200
    second = alice.post(f"{base}/complete")
    assert second.status_code == 200
    assert second.json() == first.json()
    assert first.json()["mask_count"] == 3
    assert alice.get(f"{base}/masks").json()["total"] == 3
    # A complete group takes no more files.
    r = alice.post(f"{base}/upload-urls", json={"files": [make_masks(5)[4].spec()]})
    assert r.status_code == 409


def test_complete_without_files_is_409(alice: httpx.Client) -> None:
    annotation = create_annotation(alice)
    r = alice.post(f"/api/annotations/{annotation['id']}/mask-groups", json={"group_name": "empty"})
    assert r.status_code == 201
    assert r.json()["uploads"] == []
    r = alice.post(f"{group_url(annotation['id'], r.json()['id'])}/complete")
    assert r.status_code == 409


def test_group_under_wrong_annotation_is_404(alice: httpx.Client) -> None:
    a1 = create_annotation(alice)
    a2 = create_annotation(alice)
    masks = make_masks(1)
    group = create_group(alice, a1["id"], masks)
    put_all(group["uploads"], masks)
    alice.post(f"{group_url(a1['id'], group['id'])}/complete").raise_for_status()
    mask_id = alice.get(f"{group_url(a1['id'], group['id'])}/masks").json()["items"][0]["id"]
    wrong = group_url(a2["id"], group["id"])
    for method, path in [
        ("GET", ""),
        ("PATCH", ""),
        ("DELETE", ""),
        ("POST", "/complete"),
        ("GET", "/masks"),
        ("GET", f"/masks/{mask_id}"),
        ("GET", f"/masks/{mask_id}/download-url"),
        ("GET", f"/masks/{mask_id}/content"),
        ("DELETE", f"/masks/{mask_id}"),
    ]:
        kwargs = {"json": {}} if method == "PATCH" else {}
        r = alice.request(method, wrong + path, **kwargs)
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["error"] == "NotFound"
    r = alice.post(f"{wrong}/upload-urls", json={"files": [masks[0].spec()]})
    assert r.status_code == 404
    assert alice.get(f"/api/annotations/{a1['id']}/mask-groups/999999").status_code == 404


def test_patch_group_updates_metadata_json(alice: httpx.Client, objects: StoredObjects) -> None:
    import json

    masks = make_masks(2)
    annotation = create_annotation(alice)
    group = create_group(alice, annotation["id"], masks)
    put_all(group["uploads"], masks)
    base = group_url(annotation["id"], group["id"])
    alice.post(f"{base}/complete").raise_for_status()
    r = alice.patch(base, json={"description": "reviewed", "version": "2"})
    assert r.status_code == 200
    assert r.json()["description"] == "reviewed"
    meta = json.loads(objects.read(f"mask/{annotation['id']}/{group['id']}/metadata.json"))
    assert meta["group"]["description"] == "reviewed"
    assert meta["group"]["version"] == "2"


def test_deletes_leave_no_object_behind(
    alice: httpx.Client, objects: StoredObjects, server: ServerProcess
) -> None:
    masks = make_masks(6)
    annotation = create_annotation(alice)
    g1 = create_group(alice, annotation["id"], masks[:3])
    g2 = create_group(alice, annotation["id"], masks[3:])
    put_all(g1["uploads"], masks)
    put_all(g2["uploads"], masks)
    for g in (g1, g2):
        alice.post(f"{group_url(annotation['id'], g['id'])}/complete").raise_for_status()
    prefix1 = f"mask/{annotation['id']}/{g1['id']}/"
    assert len(objects.keys(prefix1)) == 4  # 3 masks + metadata.json

    # One mask: its object goes, metadata.json follows.
    base1 = group_url(annotation["id"], g1["id"])
    item = alice.get(f"{base1}/masks").json()["items"][0]
    assert alice.delete(f"{base1}/masks/{item['id']}").status_code == 204
    assert not objects.exists(item["object_key"])
    assert alice.get(f"{base1}/masks/{item['id']}").status_code == 404
    assert len(objects.keys(prefix1)) == 3

    # A group: every object under its prefix goes, and the folder with it.
    assert alice.delete(base1).status_code == 204
    assert objects.keys(prefix1) == []
    if server.storage == "local":  # and the folder with it
        assert not (server.data_dir / "objects" / prefix1).exists()
    assert alice.get(base1).status_code == 404

    # An annotation: cascades to groups, masks and objects.
    assert alice.delete(f"/api/annotations/{annotation['id']}").status_code == 204
    assert objects.keys(f"mask/{annotation['id']}/") == []
    assert alice.get(f"/api/annotations/{annotation['id']}").status_code == 404
    assert alice.get(group_url(annotation["id"], g2["id"])).status_code == 404


def test_pending_group_delete_removes_uploaded_objects(
    alice: httpx.Client, objects: StoredObjects
) -> None:
    masks = make_masks(2)
    annotation = create_annotation(alice)
    group = create_group(alice, annotation["id"], masks)
    put_all(group["uploads"], masks)
    prefix = f"mask/{annotation['id']}/{group['id']}/"
    assert len(objects.keys(prefix)) == 2
    assert alice.delete(group_url(annotation["id"], group["id"])).status_code == 204
    assert objects.keys(prefix) == []
