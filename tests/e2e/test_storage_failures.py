"""Storage failures through the API on Ceph RGW: refused credentials and a dead gateway are a
clear 503 naming bucket and operation, nothing is half-committed, and a retry succeeds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fixtures.databases import sqlite_database
from fixtures.factories import create_annotation, create_group, group_url, make_masks, put_all
from fixtures.rgw import Rgw
from fixtures.server import s3_server

pytestmark = pytest.mark.rgw


@pytest.fixture
def bucket(rgw: Rgw) -> Iterator[str]:
    with rgw.bucket() as name:
        yield name


def test_wrong_secret_is_a_clear_503(rgw: Rgw, bucket: str, tmp_path: Path) -> None:
    with sqlite_database(tmp_path) as url:
        # A new database reserves its first block of ids in the bucket's high-water mark
        # before the first create commits: refused credentials refuse that create.
        srv = s3_server(tmp_path, url, rgw, bucket, secret_key="not-the-secret-key").start()
        try:
            with srv.client("alice") as alice:
                r = alice.post("/api/annotations", json={"study_instance_uid": "1.2.3"})
                assert r.status_code == 503, r.text
                body = r.json()
                assert body["error"] == "ServiceUnavailable"
                assert "storage refused access during reserving ids" in body["detail"]
                assert "not-the-secret-key" not in r.text
                assert alice.get("/api/annotations").json()["total"] == 0  # nothing committed
        finally:
            srv.stop()
        # With the ids reserved by a server that may use the bucket, signing and creating
        # need no call to storage; the upload itself, and complete, are refused.
        good = s3_server(tmp_path, url, rgw, bucket).start()
        try:
            with good.client("alice") as alice:
                create_group(alice, create_annotation(alice)["id"], make_masks(1))
        finally:
            good.stop()
        srv = s3_server(tmp_path, url, rgw, bucket, secret_key="not-the-secret-key").start()
        try:
            with srv.client("alice") as alice:
                masks = make_masks(2)
                annotation = create_annotation(alice)
                group = create_group(alice, annotation["id"], masks)
                target = group["uploads"][0]
                r = httpx.put(target["url"], content=masks[0].body, headers=target["headers"])
                assert r.status_code == 403
                r = alice.post(f"{group_url(annotation['id'], group['id'])}/complete")
                assert r.status_code == 503, r.text
                body = r.json()
                assert body["error"] == "ServiceUnavailable"
                assert "storage refused access during complete" in body["detail"]
                assert f"ListObjectsV2 on bucket {bucket!r}" in body["detail"]
                assert "not-the-secret-key" not in r.text
                ready = httpx.get(srv.url + "/ready")
                assert ready.status_code == 503
                assert ready.json()["failing"] == ["storage"]
                assert "HeadBucket" in ready.json()["checks"]["storage"]
            assert "not-the-secret-key" not in srv.log_path.read_text()
        finally:
            srv.stop()


def test_storage_down_is_503_nothing_committed_then_complete_succeeds(
    outage_rgw: Rgw, tmp_path: Path
) -> None:
    rgw = outage_rgw
    with rgw.bucket() as bucket, sqlite_database(tmp_path) as url:
        srv = s3_server(tmp_path, url, rgw, bucket).start()
        assert srv.objects is not None
        try:
            with srv.client("alice") as alice:
                masks = make_masks(6)
                annotation = create_annotation(alice)
                group = create_group(alice, annotation["id"], masks)
                put_all(group["uploads"], masks)
                base = group_url(annotation["id"], group["id"])
                prefix = f"mask/{annotation['id']}/{group['id']}/"
                rgw.gateway("stop-gw")
                try:
                    r = alice.post(f"{base}/complete")
                    assert r.status_code == 503, r.text
                    detail = r.json()["detail"]
                    assert "storage unavailable during complete" in detail
                    assert f"cannot reach {rgw.endpoint} for ListObjectsV2" in detail
                    assert bucket in detail
                    # The database side is untouched and still answers.
                    read = alice.get(base).json()
                    assert (read["status"], read["mask_count"]) == ("pending", 0)
                    assert alice.get(f"{base}/masks").json()["total"] == 0
                    assert httpx.get(srv.url + "/ready").status_code == 503
                finally:
                    rgw.gateway("restart-gw")
                assert "metadata.json" not in {
                    k.rsplit("/", 1)[1] for k in srv.objects.keys(prefix)
                }
                r = alice.post(f"{base}/complete")
                assert r.status_code == 200, r.text
                assert (r.json()["status"], r.json()["mask_count"]) == ("complete", 6)
                assert len(srv.objects.keys(prefix)) == 7
                assert httpx.get(srv.url + "/ready").status_code == 200
        finally:
            srv.stop()
