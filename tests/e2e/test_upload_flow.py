"""The whole direct-upload flow over real HTTP: declare, PUT to signed URLs, complete, download."""

from __future__ import annotations

import json

import httpx

from fixtures.factories import create_annotation, create_group, group_url, make_masks, put_all
from fixtures.objects import LocalObjects, StoredObjects


def test_fifty_files_round_trip(alice: httpx.Client, objects: StoredObjects) -> None:
    masks = make_masks(50, size=4096)
    annotation = create_annotation(alice, series_instance_uid="1.2.3.4")
    group = create_group(
        alice, annotation["id"], masks, model_name="TotalSegmentator", modality="CT"
    )
    assert group["status"] == "pending"
    assert group["file_count"] == 50
    assert len(group["uploads"]) == 50
    assert {u["filename"] for u in group["uploads"]} == {m.filename for m in masks}
    for u in group["uploads"]:
        assert u["object_key"] == f"mask/{annotation['id']}/{group['id']}/{u['filename']}"
        # Exactly what the client must send: on S3 also the signed write-once header and the
        # tag the lifecycle's transition rule filters on.
        s3_only = {"If-None-Match", "x-amz-tagging"}
        write_once = set() if isinstance(objects, LocalObjects) else s3_only
        assert set(u["headers"]) == {"Content-Type", "Content-Length", "Content-MD5"} | write_once

    put_all(group["uploads"], masks)
    base = group_url(annotation["id"], group["id"])
    done = alice.post(f"{base}/complete")
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["status"] == "complete"
    assert body["mask_count"] == 50
    assert body["total_bytes"] == sum(len(m.body) for m in masks)
    assert body["slice_count"] == 25

    listed = alice.get(f"{base}/masks", params={"limit": 1000}).json()
    assert listed["total"] == 50
    by_name = {m.filename: m for m in masks}
    with httpx.Client(timeout=30) as anon:
        for item in listed["items"]:
            url = alice.get(f"{base}/masks/{item['id']}/download-url").json()["url"]
            got = anon.get(url)
            assert got.status_code == 200
            assert got.content == by_name[item["filename"]].body
            assert item["md5"] == by_name[item["filename"]].md5

    prefix = f"mask/{annotation['id']}/{group['id']}/"
    assert objects.keys(prefix) == sorted(
        [prefix + m.filename for m in masks] + [prefix + "metadata.json"]
    )
    meta = json.loads(objects.read(prefix + "metadata.json"))
    assert meta["annotation"]["series_instance_uid"] == "1.2.3.4"
    assert meta["group"]["model_name"] == "TotalSegmentator"
    assert len(meta["files"]) == 50
    first = next(f for f in meta["files"] if f["filename"] == masks[0].filename)
    assert first["label_name"] == masks[0].label_name
    assert first["slice_index"] == masks[0].slice_index
    assert first["size"] == len(masks[0].body)


def test_content_redirects_to_signed_get(alice: httpx.Client) -> None:
    masks = make_masks(2)
    annotation = create_annotation(alice)
    group = create_group(alice, annotation["id"], masks)
    put_all(group["uploads"], masks)
    base = group_url(annotation["id"], group["id"])
    assert alice.post(f"{base}/complete").status_code == 200
    mask = alice.get(f"{base}/masks", params={"slice_index": 1, "label_name": "liver"}).json()[
        "items"
    ][0]
    r = alice.get(f"{base}/masks/{mask['id']}/content")
    assert r.status_code == 307
    assert "signature=" in r.headers["location"].lower()
    followed = httpx.get(r.headers["location"])
    assert followed.content == masks[0].body
    assert followed.headers["content-type"] == "image/png"
    # <img src> cannot send headers: the token may come as a query parameter instead.
    token = alice.headers["Authorization"].split()[1]
    with httpx.Client(base_url=str(alice.base_url)) as anon:
        assert anon.get(f"{base}/masks/{mask['id']}/content").status_code == 401
        r = anon.get(f"{base}/masks/{mask['id']}/content", params={"access_token": token})
        assert r.status_code == 307


def test_download_url_with_attachment_disposition(alice: httpx.Client) -> None:
    masks = make_masks(1)
    annotation = create_annotation(alice)
    group = create_group(alice, annotation["id"], masks)
    put_all(group["uploads"], masks)
    base = group_url(annotation["id"], group["id"])
    alice.post(f"{base}/complete")
    mask = alice.get(f"{base}/masks").json()["items"][0]
    r = alice.get(
        f"{base}/masks/{mask['id']}/download-url", params={"attachment": True, "ttl_seconds": 60}
    )
    got = httpx.get(r.json()["url"])
    assert got.status_code == 200
    assert got.headers["content-disposition"] == f'attachment; filename="{masks[0].filename}"'
