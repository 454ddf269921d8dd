"""Idempotency-Key on a group with multipart files (Ceph RGW): a replay returns the same group
with the same upload ids (parts already stored are kept) and fresh part URLs; concurrent
replays never start a second upload for a file."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from fixtures.factories import create_annotation, group_url, make_masks, put_all
from fixtures.objects import S3Objects, StoredObjects
from fixtures.rgw_outage import MiB, md5_b64, put_part
from fixtures.server import ServerProcess

pytestmark = pytest.mark.server_kinds("postgres-rgw")
CONCURRENCY = 8


def _create(client: httpx.Client, annotation_id: int, body: dict, key: str) -> httpx.Response:
    return client.post(
        f"/api/annotations/{annotation_id}/mask-groups",
        json=body,
        headers={"Idempotency-Key": key},
    )


def _volume(name: str, size: int, **extra: Any) -> dict[str, Any]:
    # Multipart on the RGW test server (above 8 MiB), in 5 MiB parts.
    return {
        "filename": name,
        "content_type": "application/octet-stream",
        "size": size,
        "part_size": 5 * MiB,
        **extra,
    }


def _parts(body: bytes) -> list[str]:
    return [md5_b64(body[i : i + 5 * MiB]) for i in range(0, len(body), 5 * MiB)]


def _multipart(group: dict) -> dict[str, dict]:
    return {u["filename"]: u for u in group["uploads"] if u["upload_id"]}


def test_replay_reuses_the_upload_and_its_parts(
    alice: httpx.Client, objects: StoredObjects
) -> None:
    volume = os.urandom(11 * MiB)  # parts of 5, 5 and 1 MiB
    masks = make_masks(1)
    annotation = create_annotation(alice)
    body = {
        "files": [m.spec() for m in masks]
        + [_volume("volume.nii", len(volume), md5=md5_b64(volume), part_md5s=_parts(volume))],
        # Long enough for the two PUTs below on a loaded machine (at 2 s a 5 MiB part took
        # the whole window at load 13, and the mask's URL had expired: AccessDenied); the
        # replay waits for the expiry, sleeping.
        "ttl_seconds": 8,
    }
    first = _create(alice, annotation["id"], body, "mp-replay")
    assert first.status_code == 201, first.text
    big = _multipart(first.json())["volume.nii"]
    prefix = big["object_key"].rsplit("/", 1)[0] + "/"
    put_part(big, volume, 1)
    put_all([u for u in first.json()["uploads"] if not u["upload_id"]], masks)

    # The client lost the answer and retries after its URLs expired.
    expired = datetime.fromisoformat(big["expires_at"])
    while datetime.now(UTC) <= expired:
        time.sleep(0.1)
    again = _create(alice, annotation["id"], {**body, "ttl_seconds": 600}, "mp-replay")
    assert again.status_code == 201, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    renewed = _multipart(again.json())["volume.nii"]
    assert renewed["upload_id"] == big["upload_id"]
    assert [p["size"] for p in renewed["parts"]] == [5 * MiB, 5 * MiB, MiB]
    assert renewed["parts"][1]["url"] != big["parts"][1]["url"]
    assert objects.uploads(prefix) == [big["object_key"]]  # no second upload started

    put_part(renewed, volume, 2)
    put_part(renewed, volume, 3)
    base = group_url(annotation["id"], first.json()["id"])
    done = alice.post(f"{base}/complete")
    assert done.status_code == 200, done.text
    assert done.json()["total_bytes"] == len(volume) + len(masks[0].body)
    assert objects.uploads(prefix) == []
    masks_by_name = {m["filename"]: m for m in alice.get(f"{base}/masks").json()["items"]}
    url = alice.get(f"{base}/masks/{masks_by_name['volume.nii']['id']}/download-url").json()["url"]
    assert md5_b64(httpx.get(url, timeout=60).content) == md5_b64(volume)

    # Once complete, a replay returns the group with nothing left to upload.
    late = _create(alice, annotation["id"], body, "mp-replay")
    assert (late.json()["status"], late.json()["uploads"]) == ("complete", [])


def test_concurrent_replays_share_one_upload_per_file(
    server: ServerProcess, alice: httpx.Client, objects: StoredObjects
) -> None:
    annotation = create_annotation(alice)
    body = {"files": [_volume("a.nii", 9 * MiB), _volume("b.nii", 12 * MiB)]}

    def create(_: int) -> httpx.Response:
        with server.client("alice") as c:
            return _create(c, annotation["id"], body, "mp-burst")

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        responses = list(pool.map(create, range(CONCURRENCY)))
    assert [r.status_code for r in responses] == [201] * CONCURRENCY, [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    upload_ids = [
        {name: u["upload_id"] for name, u in _multipart(r.json()).items()} for r in responses
    ]
    assert all(ids == upload_ids[0] for ids in upload_ids)
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == (
        CONCURRENCY - 1
    )
    assert alice.get(f"/api/annotations/{annotation['id']}/mask-groups").json()["total"] == 1
    group_id = responses[0].json()["id"]
    assert isinstance(objects, S3Objects)
    listed = objects.client.list_multipart_uploads(
        Bucket=objects.bucket, Prefix=f"mask/{annotation['id']}/{group_id}/"
    ).get("Uploads", [])
    assert sorted((u["Key"].rsplit("/", 1)[1], u["UploadId"]) for u in listed) == sorted(
        upload_ids[0].items()
    )


def test_replay_after_the_upload_vanished_starts_a_new_one(
    alice: httpx.Client, objects: StoredObjects
) -> None:
    volume = os.urandom(9 * MiB)
    annotation = create_annotation(alice)
    body = {"files": [_volume("gone.nii", len(volume))]}
    first = _create(alice, annotation["id"], body, "mp-vanished").json()
    big = _multipart(first)["gone.nii"]
    # Aborted behind the server's back (the bucket's lifecycle rule, an operator...).
    assert isinstance(objects, S3Objects)
    objects.client.abort_multipart_upload(
        Bucket=objects.bucket, Key=big["object_key"], UploadId=big["upload_id"]
    )
    again = _create(alice, annotation["id"], body, "mp-vanished")
    assert again.json()["id"] == first["id"]
    renewed = _multipart(again.json())["gone.nii"]
    assert renewed["upload_id"] != big["upload_id"]
    assert objects.uploads(big["object_key"]) == [big["object_key"]]
    put_part(renewed, volume, 1)
    put_part(renewed, volume, 2)
    r = alice.post(f"{group_url(annotation['id'], first['id'])}/complete")
    assert r.status_code == 200, r.text
