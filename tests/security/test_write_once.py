"""Write-once uploads (issue 12 item 3): a signed PUT never replaces an object, a verified mask
never changes, a re-declared file's old object goes before its new URL is handed out, and a
URL issued for a deleted group stores nothing the janitor leaves behind."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from fixtures.factories import create_annotation, group_url
from fixtures.objects import StoredObjects
from fixtures.rgw import Rgw
from fixtures.server import ServerProcess
from pacs_ext.client.expiry import Issued
from pacs_ext.client.files import LocalFile
from pacs_ext.client.progress import TransferProgress
from pacs_ext.client.retry import RetryPolicy
from pacs_ext.client.transfer import Renewer, Sender, TransferStats
from pacs_ext.masks.schemas import UploadTarget
from pacs_ext.storage.base import UploadSpec
from pacs_ext.storage.s3.client import S3Storage

pytestmark = pytest.mark.server_kinds("sqlite", "postgres-rgw")


def spec(name: str, body: bytes) -> dict[str, Any]:
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    return {"filename": name, "size": len(body), "md5": md5}


def new_group(alice: httpx.Client, *files: tuple[str, bytes]) -> tuple[str, list[dict[str, Any]]]:
    annotation = create_annotation(alice)
    r = alice.post(
        f"/api/annotations/{annotation['id']}/mask-groups",
        json={"files": [spec(n, b) for n, b in files], "ttl_seconds": 3600},
    )
    assert r.status_code == 201, r.text
    return group_url(annotation["id"], r.json()["id"]), r.json()["uploads"]


def put(target: dict[str, Any], body: bytes) -> httpx.Response:
    with httpx.Client(timeout=30) as http:
        return http.put(target["url"], content=body, headers=target["headers"])


def test_upload_targets_carry_the_write_once_header(
    server: ServerProcess, alice: httpx.Client
) -> None:
    _, (target,) = new_group(alice, ("c1.png", b"x" * 120))
    if server.storage == "local":
        assert "If-None-Match" not in target["headers"]  # the local store enforces it itself
    else:
        assert target["headers"]["If-None-Match"] == "*"
        assert "if-none-match" in target["url"].lower()  # signed: cannot be left out


def test_a_put_url_cannot_replace_what_it_stored(
    alice: httpx.Client, objects: StoredObjects
) -> None:
    body = b"a" * 120
    _, (target,) = new_group(alice, ("c1.png", body))
    assert put(target, body).status_code == 200
    again = put(target, body)
    assert again.status_code == 412, again.text
    assert objects.read(target["object_key"]) == body


def test_an_old_url_cannot_change_a_redeclared_and_verified_mask(
    alice: httpx.Client, objects: StoredObjects
) -> None:
    first, second = b"1" * 120, b"2" * 125
    base, (old,) = new_group(alice, ("c1.png", first))
    assert put(old, first).status_code == 200
    r = alice.post(f"{base}/upload-urls", json={"files": [spec("c1.png", second)]})
    assert r.status_code == 200, r.text
    # The old object is gone before the new URL is handed out: the new PUT can store.
    assert not objects.exists(old["object_key"])
    (new,) = r.json()["uploads"]
    assert put(new, second).status_code == 200
    assert alice.post(f"{base}/complete").status_code == 200

    replay = put(old, first)
    assert replay.status_code in (403, 412), replay.text
    assert objects.read(old["object_key"]) == second
    (mask,) = alice.get(f"{base}/masks").json()["items"]
    assert mask["md5"] == spec("c1.png", second)["md5"]


def test_a_mismatched_object_is_removed_so_the_right_bytes_can_follow(
    alice: httpx.Client, objects: StoredObjects
) -> None:
    """An old declaration's URL used after the file was declared again stores the old bytes;
    `complete` refuses them and removes them, so the new URL works."""
    first, second = b"1" * 120, b"2" * 125
    base, (old,) = new_group(alice, ("c1.png", first))
    r = alice.post(f"{base}/upload-urls", json={"files": [spec("c1.png", second)]})
    (new,) = r.json()["uploads"]
    assert put(old, first).status_code == 200  # signed for the old size: still a valid PUT
    assert put(new, second).status_code == 412
    refused = alice.post(f"{base}/complete")
    assert refused.status_code == 409
    assert [m["filename"] for m in refused.json()["mismatched"]] == ["c1.png"]
    assert put(new, second).status_code == 200
    assert alice.post(f"{base}/complete").status_code == 200
    assert objects.read(new["object_key"]) == second


def test_a_url_of_a_deleted_group_stores_nothing_that_stays(
    server: ServerProcess, alice: httpx.Client, objects: StoredObjects
) -> None:
    body = b"d" * 100
    base, (target,) = new_group(alice, ("c1.png", body))
    assert alice.delete(base).status_code == 204
    replay = put(target, body)
    if server.storage == "local":
        assert replay.status_code == 403, replay.text
        assert not objects.exists(target["object_key"])
        return
    # Measured on Ceph RGW: the key is free again, so the conditional PUT stores an orphan
    # (as it would on AWS S3 and MinIO). The janitor removes it once past the grace period.
    assert replay.status_code == 200
    assert objects.exists(target["object_key"])
    r = server.run_cli("janitor", "--json", "--grace", "0", "--apply", check=False)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["orphan_objects"]["acted"] >= 1
    assert not objects.exists(target["object_key"])


async def test_the_sdk_takes_412_on_a_retried_put_as_already_stored(
    alice: httpx.Client, objects: StoredObjects, tmp_path: Path
) -> None:
    body = b"s" * 300
    path = tmp_path / "c1.png"
    path.write_bytes(body)
    base, (target,) = new_group(alice, ("c1.png", body))
    assert put(target, body).status_code == 200  # the first attempt stored it; answer lost
    local = LocalFile(
        path, "c1.png", len(body), path.stat().st_mtime_ns, "image/png", md5=spec("c1", body)["md5"]
    )

    async def no_renewals(batch: list[LocalFile]) -> list[UploadTarget]:
        raise AssertionError("no renewal expected")

    stats = TransferStats()
    async with httpx.AsyncClient(timeout=30) as http:
        sender = Sender(
            http, RetryPolicy(), Renewer(no_renewals, 10, stats), TransferProgress(), stats, 2
        )
        await sender.upload(local, Issued(UploadTarget.model_validate(target)))
    assert stats.files == 1
    assert alice.post(f"{base}/complete").status_code == 200


@pytest.mark.rgw
async def test_rgw_enforces_a_signed_if_none_match(rgw: Rgw) -> None:
    """Measures the store: what write-once on S3 relies on."""
    with rgw.bucket() as bucket:
        s3 = S3Storage(
            bucket=bucket,
            endpoint=rgw.endpoint,
            region=rgw.region,
            access_key=rgw.access_key,
            secret_key=rgw.secret_key,
        )
        try:
            body = b"w" * 64
            md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
            signed = s3.sign_upload(UploadSpec("m/1/1/a.png", "image/png", len(body), md5), 60)
            assert signed.headers["If-None-Match"] == "*"
            async with httpx.AsyncClient(timeout=30) as http:
                first = await http.put(signed.url, content=body, headers=signed.headers)
                second = await http.put(signed.url, content=body, headers=signed.headers)
                without = {k: v for k, v in signed.headers.items() if k != "If-None-Match"}
                left_out = await http.put(signed.url, content=body, headers=without)
            assert first.status_code == 200
            assert second.status_code == 412
            assert "PreconditionFailed" in second.text
            assert left_out.status_code == 403  # the header is signed
            assert (await s3.get_bytes("m/1/1/a.png")) == body
        finally:
            await s3.close()


@pytest.mark.server_kinds("sqlite")
def test_the_janitor_runs_inside_the_server_by_default(server: ServerProcess) -> None:
    """What a replayed URL stores on S3 after a DELETE is removed without any cron job."""
    lines = server.log_path.read_text().splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    (scheduled,) = [e for e in events if e.get("event") == "janitor.scheduled"][:1]
    assert scheduled["interval_seconds"] > 0
    assert scheduled["apply"] is True
