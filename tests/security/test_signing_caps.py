"""Signing is bounded: per request, per group, and a multipart file's part URLs in pages
(issue 18, item 1). One POST of 40 files of 5 TiB used to answer 201 with 399,480 part URLs
(188 MB) and as many audit rows."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fixtures.databases import postgres_database
from fixtures.factories import create_annotation, create_group, group_url, make_masks
from fixtures.isolated import own_server
from fixtures.objects import S3Objects
from fixtures.rgw import Rgw
from fixtures.server import BIN, ServerProcess, make_token, s3_server
from pacs_ext.client.files import LocalFile
from pacs_ext.client.transfer import chunks, expected_urls

MiB = 1024 * 1024
TiB = 1024**4


def _huge(name: str) -> dict[str, Any]:
    # 5 TiB: the server grows the part size to stay within 10,000 parts.
    return {"filename": name, "content_type": "application/octet-stream", "size": 5 * TiB}


def _audit_rows(admin: httpx.Client, group_id: int) -> list[dict[str, Any]]:
    r = admin.get("/api/audit", params={"group_id": group_id, "action": "signed_url.issue"})
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


@pytest.mark.server_kinds("postgres-rgw")
def test_forty_five_tib_files_are_refused_before_anything_is_signed(
    alice: httpx.Client, server: ServerProcess
) -> None:
    annotation = create_annotation(alice)
    files = [_huge(f"v{i:02d}.nii") for i in range(40)]
    r = alice.post(f"/api/annotations/{annotation['id']}/mask-groups", json={"files": files})
    assert r.status_code == 422, r.status_code
    assert len(r.content) < 10_000
    body = r.json()
    assert "signed_url.max_urls_per_request" in body["detail"]
    assert body["limit"] == 10_000
    assert body["urls"] == 40_000  # a first page of 1,000 part URLs each
    # No multipart upload was started for any of them.
    assert isinstance(server.objects, S3Objects)
    assert server.objects.uploads(f"mask/{annotation['id']}/") == []


@pytest.mark.server_kinds("postgres-rgw")
def test_part_urls_come_in_pages_and_each_page_is_one_audit_row(
    alice: httpx.Client, admin: httpx.Client
) -> None:
    annotation = create_annotation(alice)
    spec = _huge("volume.nii")
    r = alice.post(f"/api/annotations/{annotation['id']}/mask-groups", json={"files": [spec]})
    assert r.status_code == 201, r.text
    assert len(r.content) < 1_000_000
    group = r.json()
    (target,) = group["uploads"]
    total = target["part_count"]
    assert total == -(-5 * TiB // target["part_size"])
    assert 9_000 < total <= 10_000
    assert [p["part_number"] for p in target["parts"]] == list(range(1, 1001))
    base = group_url(annotation["id"], group["id"])

    page = alice.post(
        f"{base}/upload-urls",
        json={"files": [spec], "parts": {"volume.nii": {"from": 8001, "count": 5000}}},
    )
    assert page.status_code == 200, page.text
    (more,) = page.json()["uploads"]
    assert more["upload_id"] == target["upload_id"]  # the same upload
    # At most a page (1,000), and never past the last part.
    assert [p["part_number"] for p in more["parts"]] == list(range(8001, min(9001, total + 1)))
    assert more["parts"][0]["size"] == target["parts"][0]["size"]

    rows = _audit_rows(admin, group["id"])
    # One row per request, a page of part URLs included: its URLs counted, its parts named.
    last = min(9000, total)
    assert sorted((row["part_number"], row["url_count"]) for row in rows) == [
        (1, 1000),
        (8001, last - 8000),
    ]
    key = target["object_key"]
    assert sorted(row["detail"]["parts"][key] for row in rows) == [[1, 1000], [8001, last]]
    assert alice.get(base).json()["file_count"] == 1

    past = alice.post(
        f"{base}/upload-urls",
        json={"files": [spec], "parts": {"volume.nii": {"from": total + 1, "count": 1}}},
    )
    assert past.status_code == 422
    assert "past the last part" in past.json()["detail"]
    stranger = alice.post(
        f"{base}/upload-urls",
        json={"files": [spec], "parts": {"other.nii": {"from": 1, "count": 1}}},
    )
    assert stranger.status_code == 422
    assert alice.delete(base).status_code == 204  # aborts the upload


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """SQLite + local store with tiny caps: 3 URLs per request, 5 per group."""
    env = {
        "APP_SIGNED_URL__MAX_URLS_PER_REQUEST": "3",
        "APP_SIGNED_URL__MAX_URLS_PER_GROUP": "5",
    }
    with own_server("sqlite", tmp_path_factory.mktemp("capped"), extra_env=env) as srv:
        yield srv


def test_caps_per_request_and_per_group(capped: ServerProcess) -> None:
    masks = make_masks(4)
    with capped.client("alice") as alice:
        annotation = create_annotation(alice)
        r = alice.post(
            f"/api/annotations/{annotation['id']}/mask-groups",
            json={"files": [m.spec() for m in masks]},
        )
        assert r.status_code == 422, r.text
        assert "signed_url.max_urls_per_request" in r.json()["detail"]

        group = create_group(alice, annotation["id"], masks[:3])  # 3 URLs
        base = group_url(annotation["id"], group["id"])
        renew = alice.post(f"{base}/upload-urls", json={"files": [m.spec() for m in masks[:2]]})
        assert renew.status_code == 200, renew.text  # 5 URLs in all
        again = alice.post(f"{base}/upload-urls", json={"files": [masks[3].spec()]})
        assert again.status_code == 409, again.text
        assert "signed_url.max_urls_per_group" in again.json()["detail"]
        assert alice.get(base).json()["file_count"] == 3  # nothing was declared


@pytest.fixture(scope="module")
def paged(rgw: Rgw, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """PostgreSQL + RGW, multipart from 8 MiB, one part URL per page."""
    folder = tmp_path_factory.mktemp("paged")
    with rgw.bucket() as bucket, postgres_database() as url:
        srv = s3_server(folder, url, rgw, bucket, multipart_threshold=8 * MiB)
        srv.extra_env["APP_SIGNED_URL__PART_URLS_PER_PAGE"] = "1"
        srv.start()
        try:
            yield srv
        finally:
            srv.stop()


@pytest.mark.postgres
@pytest.mark.rgw
def test_the_cli_fetches_part_pages_as_it_goes(paged: ServerProcess, tmp_path: Path) -> None:
    folder = tmp_path / "volumes"
    folder.mkdir()
    body = os.urandom(40 * MiB)  # three parts of the SDK's 16 MiB
    (folder / "volume.nii").write_bytes(body)
    with paged.client("alice") as alice:
        annotation = create_annotation(alice)
        env = paged.env()
        env.update(PACS_EXT_SERVER=paged.url, PACS_EXT_TOKEN=make_token("alice"))
        run = subprocess.run(
            [str(BIN), "upload", "-a", str(annotation["id"]), "--quiet", str(folder)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        (group,) = alice.get(f"/api/annotations/{annotation['id']}/mask-groups").json()["items"]
        assert group["status"] == "complete"
        base = group_url(annotation["id"], group["id"])
        (mask,) = alice.get(f"{base}/masks").json()["items"]
        url = alice.get(f"{base}/masks/{mask['id']}/download-url").json()["url"]
        got = httpx.get(url, timeout=120).content
        assert hashlib.sha256(got).digest() == hashlib.sha256(body).digest()


def test_the_sdk_batches_declarations_within_the_url_cap() -> None:
    """20 files of 20 GiB (1,280 parts each, a first page of 1,000) and small ones: no batch
    asks the server for more than 10,000 URLs."""
    big = [
        LocalFile(Path(f"v{i}.nii"), f"v{i}.nii", 20 * 1024 * MiB, 0, "application/octet-stream")
        for i in range(20)
    ]
    small = [
        LocalFile(Path(f"{i:04d}_a.png"), f"{i:04d}_a.png", 2048, 0, "image/png")
        for i in range(600)
    ]
    batches = chunks([*big, *small], 500)
    assert [f.name for b in batches for f in b] == [f.name for f in [*big, *small]]
    assert all(sum(expected_urls(f) for f in b) <= 10_000 for b in batches)
    assert all(len(b) <= 500 for b in batches)
    assert [len(b) for b in batches[:2]] == [10, 10]
