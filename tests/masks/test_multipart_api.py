"""Large files through the API on Ceph RGW: multipart targets, complete, renew, idempotency,
abort on delete. The RGW server goes multipart above 8 MiB (default parts of 16 MiB)."""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

import httpx
import pytest

from fixtures.factories import create_annotation, group_url
from fixtures.objects import S3Objects, StoredObjects
from fixtures.server import ServerProcess

pytestmark = pytest.mark.server_kinds("postgres-rgw")
MiB = 1024 * 1024


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def chunk_md5s(body: bytes, part_size: int) -> list[str]:
    return [md5_b64(body[i : i + part_size]) for i in range(0, len(body), part_size)]


def spec(name: str, body: bytes, **extra: Any) -> dict[str, Any]:
    return {
        "filename": name,
        "content_type": "application/octet-stream",
        "size": len(body),
        **extra,
    }


def new_group(client: httpx.Client, files: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    annotation = create_annotation(client)
    r = client.post(f"/api/annotations/{annotation['id']}/mask-groups", json={"files": files})
    assert r.status_code == 201, r.text
    group = r.json()
    return group_url(annotation["id"], group["id"]), group


def put_parts(target: dict[str, Any], body: bytes, only: set[int] | None = None) -> None:
    with httpx.Client(timeout=120) as http:
        for part in target["parts"]:
            n = part["part_number"]
            if only is not None and n not in only:
                continue
            chunk = body[(n - 1) * target["part_size"] : n * target["part_size"]]
            r = http.put(part["url"], content=chunk, headers=part["headers"])
            assert r.status_code == 200, r.text


def test_seventy_mib_file_completes_and_downloads_identical(
    alice: httpx.Client, objects: StoredObjects
) -> None:
    body = os.urandom(70 * MiB)
    small = os.urandom(3000)
    base, group = new_group(
        alice,
        [
            spec("ct_seg.dcm", body, md5=md5_b64(body), part_md5s=chunk_md5s(body, 16 * MiB)),
            spec("small.png", small, md5=md5_b64(small), content_type="image/png"),
        ],
    )
    big, single = sorted(group["uploads"], key=lambda u: u["filename"])
    assert big["url"] is None
    assert big["upload_id"]
    assert big["part_size"] == 16 * MiB
    assert [p["size"] for p in big["parts"]] == [16 * MiB] * 4 + [6 * MiB]
    assert big["parts"][0]["headers"] == {
        "Content-Length": str(16 * MiB),
        "Content-MD5": md5_b64(body[: 16 * MiB]),
    }
    assert single["upload_id"] is None
    assert single["url"]
    assert set(single["headers"]) == {
        "Content-Type",
        "Content-Length",
        "Content-MD5",
        "If-None-Match",  # write-once, signed
        "x-amz-tagging",  # the lifecycle moves tagged uploads only, never metadata.json
    }

    put_parts(big, body)
    r = httpx.put(single["url"], content=small, headers=single["headers"])
    assert r.status_code == 200
    done = alice.post(f"{base}/complete")
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "complete"
    assert done.json()["total_bytes"] == len(body) + len(small)

    masks = {m["filename"]: m for m in alice.get(f"{base}/masks").json()["items"]}
    assert masks["ct_seg.dcm"]["file_size"] == len(body)
    url = alice.get(f"{base}/masks/{masks['ct_seg.dcm']['id']}/download-url").json()["url"]
    got = httpx.get(url, timeout=120)
    assert got.status_code == 200
    assert hashlib.sha256(got.content).digest() == hashlib.sha256(body).digest()
    assert isinstance(objects, S3Objects)
    head = objects.client.head_object(Bucket=objects.bucket, Key=big["object_key"])
    assert head["ETag"].strip('"').endswith("-5")
    assert objects.uploads(big["object_key"]) == []


def test_missing_parts_are_409_naming_them_then_complete(alice: httpx.Client) -> None:
    body = os.urandom(12 * MiB)
    base, group = new_group(alice, [spec("vol.nii", body, part_size=5 * MiB)])
    (target,) = group["uploads"]
    assert [p["size"] for p in target["parts"]] == [5 * MiB, 5 * MiB, 2 * MiB]
    put_parts(target, body, only={1})
    r = alice.post(f"{base}/complete")
    assert r.status_code == 409, r.text
    assert r.json()["missing"] == [
        {
            "filename": "vol.nii",
            "object_key": target["object_key"],
            "reason": "parts 2-3 of 3 not uploaded",
            "expected_size": len(body),
        }
    ]
    assert alice.get(base).json()["status"] == "pending"
    put_parts(target, body, only={2, 3})
    r = alice.post(f"{base}/complete")
    assert r.status_code == 200, r.text
    assert alice.post(f"{base}/complete").json() == r.json()


def test_declared_part_md5s_are_bound_into_part_urls(alice: httpx.Client) -> None:
    body = os.urandom(11 * MiB)
    chunks = [body[: 6 * MiB], body[6 * MiB :]]
    md5s = [md5_b64(c) for c in chunks]
    base, group = new_group(alice, [spec("seg.dcm", body, part_size=6 * MiB, part_md5s=md5s)])
    (target,) = group["uploads"]
    assert [p["headers"]["Content-MD5"] for p in target["parts"]] == md5s
    bent = bytes([chunks[1][0] ^ 1]) + chunks[1][1:]
    r = httpx.put(target["parts"][1]["url"], content=bent, headers=target["parts"][1]["headers"])
    assert r.status_code == 400
    assert "BadDigest" in r.text
    put_parts(target, body)
    assert alice.post(f"{base}/complete").status_code == 200


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"part_size": 6 * MiB, "part_md5s": ["1B2M2Y8AsgTpgAmY7PhCfg=="]}, "files[0].part_md5s"),
        ({"part_size": 4 * MiB}, "part_size"),
        ({"part_md5s": ["not base64"]}, "part_md5s"),
    ],
)
def test_bad_part_declarations_are_422(
    alice: httpx.Client, extra: dict[str, Any], field: str
) -> None:
    annotation = create_annotation(alice)
    body = {"files": [{"filename": "v.nii", "size": 11 * MiB, **extra}]}
    r = alice.post(f"/api/annotations/{annotation['id']}/mask-groups", json=body)
    assert r.status_code == 422, r.text
    assert field in r.json()["detail"]


def test_renewal_keeps_the_upload_and_its_parts(
    alice: httpx.Client, objects: StoredObjects
) -> None:
    body = os.urandom(10 * MiB + 5)
    file = spec("renew.nii", body, part_size=5 * MiB)
    base, group = new_group(alice, [file])
    (first,) = group["uploads"]
    put_parts(first, body, only={1})
    r = alice.post(f"{base}/upload-urls", json={"files": [file], "ttl_seconds": 900})
    assert r.status_code == 200, r.text
    (renewed,) = r.json()["uploads"]
    assert renewed["upload_id"] == first["upload_id"]
    assert renewed["parts"][1]["url"] != first["parts"][1]["url"]
    put_parts(renewed, body, only={2, 3})
    assert alice.post(f"{base}/complete").status_code == 200
    assert objects.uploads(first["object_key"]) == []


def test_changed_declaration_starts_a_new_upload_and_aborts_the_old(
    alice: httpx.Client, objects: StoredObjects
) -> None:
    body = os.urandom(10 * MiB)
    base, group = new_group(alice, [spec("change.nii", body, part_size=5 * MiB)])
    (first,) = group["uploads"]
    put_parts(first, body, only={1})
    longer = body + os.urandom(100)
    r = alice.post(f"{base}/upload-urls", json={"files": [spec("change.nii", longer)]})
    assert r.status_code == 200, r.text
    (second,) = r.json()["uploads"]
    assert second["upload_id"] != first["upload_id"]
    assert second["part_size"] == 16 * MiB
    assert len(objects.uploads(first["object_key"])) == 1  # only the new one is left
    put_parts(second, longer)
    done = alice.post(f"{base}/complete")
    assert done.status_code == 200, done.text
    assert done.json()["total_bytes"] == len(longer)


def test_complete_after_storage_completed_but_commit_failed(
    alice: httpx.Client, objects: StoredObjects
) -> None:
    # As if a complete finished the multipart upload in storage and then lost its database
    # transaction: the next complete must find the object and succeed.
    body = os.urandom(9 * MiB)
    base, group = new_group(alice, [spec("crash.dcm", body, part_size=5 * MiB)])
    (target,) = group["uploads"]
    put_parts(target, body)
    assert isinstance(objects, S3Objects)
    parts = objects.client.list_parts(
        Bucket=objects.bucket, Key=target["object_key"], UploadId=target["upload_id"]
    )["Parts"]
    objects.client.complete_multipart_upload(
        Bucket=objects.bucket,
        Key=target["object_key"],
        UploadId=target["upload_id"],
        MultipartUpload={
            "Parts": [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in parts]
        },
    )
    r = alice.post(f"{base}/complete")
    assert r.status_code == 200, r.text
    assert r.json()["mask_count"] == 1


def test_aborted_upload_is_409_then_upload_urls_starts_again(
    alice: httpx.Client, objects: StoredObjects
) -> None:
    body = os.urandom(9 * MiB)
    file = spec("gone.dcm", body, part_size=5 * MiB)
    base, group = new_group(alice, [file])
    (target,) = group["uploads"]
    assert isinstance(objects, S3Objects)
    objects.client.abort_multipart_upload(
        Bucket=objects.bucket, Key=target["object_key"], UploadId=target["upload_id"]
    )
    r = alice.post(f"{base}/complete")
    assert r.status_code == 409
    assert "no longer exists" in r.json()["missing"][0]["reason"]
    (renewed,) = alice.post(f"{base}/upload-urls", json={"files": [file]}).json()["uploads"]
    assert renewed["upload_id"] != target["upload_id"]
    put_parts(renewed, body)
    assert alice.post(f"{base}/complete").status_code == 200


def test_group_delete_aborts_unfinished_uploads(
    alice: httpx.Client, objects: StoredObjects, server: ServerProcess
) -> None:
    body = os.urandom(9 * MiB)
    small = os.urandom(100)
    base, group = new_group(
        alice,
        [spec("a.dcm", body, part_size=5 * MiB), spec("b.png", small, md5=md5_b64(small))],
    )
    big, single = sorted(group["uploads"], key=lambda u: u["filename"])
    put_parts(big, body, only={1})
    assert httpx.put(single["url"], content=small, headers=single["headers"]).status_code == 200
    prefix = big["object_key"].rsplit("/", 1)[0] + "/"
    assert objects.keys(prefix) == [single["object_key"]]
    assert objects.uploads(prefix) == [big["object_key"]]
    assert alice.delete(base).status_code == 204
    assert objects.keys(prefix) == []
    assert objects.uploads(prefix) == []
