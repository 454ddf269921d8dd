"""A multipart object completes only with the bytes its part MD5s declared (issue 18, item 2).

`complete` compares the stored object's ETag (from the listing: Ceph RGW's
CompleteMultipartUpload answers an empty one) with the MD5 of the declared part MD5s and
`-N`; the SDK always declares part MD5s, so storage refuses a part that changed on the way.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from fixtures.factories import create_annotation, group_url
from fixtures.objects import S3Objects
from fixtures.server import ServerProcess, make_token

MiB = 1024 * 1024
CHANGING_UPLOAD = Path(__file__).resolve().parent.parent / "fixtures" / "changing_upload.py"


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def _volume(body: bytes, part_size: int = 5 * MiB, **extra: Any) -> dict[str, Any]:
    chunks = [body[i : i + part_size] for i in range(0, len(body), part_size)]
    return {
        "filename": "volume.nii",
        "content_type": "application/octet-stream",
        "size": len(body),
        "md5": md5_b64(body),
        "part_size": part_size,
        "part_md5s": [md5_b64(c) for c in chunks],
        **extra,
    }


def _new_group(client: httpx.Client, files: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    annotation = create_annotation(client)
    r = client.post(f"/api/annotations/{annotation['id']}/mask-groups", json={"files": files})
    assert r.status_code == 201, r.text
    return group_url(annotation["id"], r.json()["id"]), r.json()


@pytest.mark.server_kinds("postgres-rgw")
def test_parts_stored_in_swapped_order_are_a_409(
    alice: httpx.Client, server: ServerProcess
) -> None:
    body = os.urandom(10 * MiB)  # two parts of 5 MiB (multipart above 8 MiB here)
    base, group = _new_group(alice, [_volume(body)])
    (target,) = group["uploads"]
    first, second = body[: 5 * MiB], body[5 * MiB :]

    # Through the signed URLs storage refuses a swapped part: each binds its Content-MD5.
    part1 = target["parts"][0]
    refused = httpx.put(part1["url"], content=second, headers=part1["headers"], timeout=60)
    assert refused.status_code == 400
    assert "BadDigest" in refused.text

    # A writer that skips that check (a store that ignores Content-MD5, or one holding the
    # bucket's keys) stores them swapped: complete must refuse the object.
    assert isinstance(server.objects, S3Objects)
    s3, bucket = server.objects.client, server.objects.bucket
    for number, chunk in ((1, second), (2, first)):
        s3.upload_part(
            Bucket=bucket,
            Key=target["object_key"],
            UploadId=target["upload_id"],
            PartNumber=number,
            Body=chunk,
        )
    r = alice.post(f"{base}/complete")
    assert r.status_code == 409, r.text
    (problem,) = r.json()["mismatched"]
    assert problem["filename"] == "volume.nii"
    assert "part MD5s" in problem["reason"]
    assert alice.get(base).json()["status"] == "pending"
    # The listing carries the multipart ETag that was checked (RGW's Complete answer is empty).
    (listed,) = s3.list_objects_v2(Bucket=bucket, Prefix=target["object_key"])["Contents"]
    assert listed["ETag"].strip('"').endswith("-2")


@pytest.mark.server_kinds("postgres-rgw")
def test_parts_as_declared_complete_with_the_checked_etag(
    alice: httpx.Client, server: ServerProcess
) -> None:
    body = os.urandom(10 * MiB)
    base, group = _new_group(alice, [_volume(body)])
    (target,) = group["uploads"]
    for part in target["parts"]:
        n = part["part_number"]
        chunk = body[(n - 1) * 5 * MiB : n * 5 * MiB]
        assert httpx.put(part["url"], content=chunk, headers=part["headers"]).status_code == 200
    r = alice.post(f"{base}/complete")
    assert r.status_code == 200, r.text
    (mask,) = alice.get(f"{base}/masks").json()["items"]
    assert mask["md5"] == md5_b64(body)


@pytest.mark.server_kinds("postgres-rgw")
def test_md5_without_part_md5s_is_refused_for_a_multipart_file(alice: httpx.Client) -> None:
    body = os.urandom(10 * MiB)
    spec = _volume(body)
    del spec["part_md5s"]
    annotation = create_annotation(alice)
    r = alice.post(f"/api/annotations/{annotation['id']}/mask-groups", json={"files": [spec]})
    assert r.status_code == 422, r.text
    assert "files[0].part_md5s" in r.json()["detail"]


@pytest.mark.server_kinds("postgres-rgw", "sqlite")
def test_a_file_changed_during_upload_fails_the_cli(
    alice: httpx.Client, server: ServerProcess, tmp_path: Path
) -> None:
    """RGW: multipart in 16 MiB parts, the changed part refused by its Content-MD5. The local
    store has no multipart uploads: every file is one PUT whose MD5 the store checks."""
    folder = tmp_path / "volumes"
    folder.mkdir()
    path = folder / "volume.nii"
    path.write_bytes(os.urandom(20 * MiB))
    annotation = create_annotation(alice)
    env = server.env()
    env.update(PACS_EXT_SERVER=server.url, PACS_EXT_TOKEN=make_token("alice"), COLUMNS="200")
    run = subprocess.run(
        [
            sys.executable,
            str(CHANGING_UPLOAD),
            str(path),
            str(17 * MiB),
            "upload",
            "-a",
            str(annotation["id"]),
            "--retries",
            "1",
            "--quiet",
            str(folder),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode != 0, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    assert "volume.nii" in run.stderr
    assert "did the file change while it was being uploaded?" in run.stderr
    (group,) = alice.get(f"/api/annotations/{annotation['id']}/mask-groups").json()["items"]
    assert group["status"] == "pending"
    assert group["mask_count"] == 0
