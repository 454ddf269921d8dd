"""Downloads of masks the lifecycle moved to Glacier Flexible Retrieval: an in-process app on
moto's server (which, like S3, refuses GetObject of a GLACIER object until it is restored).
The test moves the object to GLACIER itself (what the lifecycle does after
bucket.lifecycle_archive_days) and the app's FakeClock past those days."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from fixtures.factories import MaskFile, png_like
from fixtures.inprocess import AppFactory
from fixtures.moto import KEY, REGION, Moto

MASK = MaskFile(1, "liver", png_like(3000, 1))
DAY = 86400


@pytest.fixture
def bucket(moto: Moto) -> str:
    """A bucket of its own (moto keeps it in memory until the server stops)."""
    name = moto.new_bucket_name()
    moto.client().create_bucket(Bucket=name)
    return name


def sections(moto: Moto, bucket: str, archive_class: str) -> dict[str, dict[str, Any]]:
    return {
        "object_storage": {
            "provider": "s3",
            "endpoint": moto.endpoint,
            "region": REGION,
            "bucket_name": bucket,
            "access_key": KEY,
            "secret_key": KEY,
        },
        "bucket": {"lifecycle_archive_storage_class": archive_class, "archive_restore_days": 3},
    }


async def _completed_mask(c: httpx.AsyncClient) -> tuple[str, str]:
    """(mask URL, object key) of a completed one-file group; the PUT goes to moto."""
    r = await c.post("/api/annotations", json={"study_instance_uid": "1.2.3"})
    aid = r.json()["id"]
    r = await c.post(
        f"/api/annotations/{aid}/mask-groups", json={"group_name": "seg", "files": [MASK.spec()]}
    )
    assert r.status_code == 201, r.text
    group = r.json()
    (target,) = group["uploads"]
    # The signed PUT binds the transition tag: the lifecycle may archive this mask...
    assert target["headers"]["x-amz-tagging"] == "pacs-ext-lifecycle=transition"
    put = httpx.put(target["url"], content=MASK.body, headers=target["headers"])
    assert put.status_code == 200, put.text
    base = f"/api/annotations/{aid}/mask-groups/{group['id']}"
    assert (await c.post(f"{base}/complete")).status_code == 200
    mask = (await c.get(f"{base}/masks")).json()["items"][0]
    return f"{base}/masks/{mask['id']}", target["object_key"]


def _archive(moto: Moto, bucket: str, key: str, storage_class: str) -> None:
    """What the lifecycle rule does to a tagged object after lifecycle_archive_days."""
    moto.client().copy_object(
        Bucket=bucket,
        Key=key,
        CopySource={"Bucket": bucket, "Key": key},
        StorageClass=storage_class,
        MetadataDirective="COPY",
    )


@pytest.mark.moto
async def test_an_archived_mask_answers_409_starts_a_restore_then_downloads(
    make_app: AppFactory, moto: Moto, bucket: str
) -> None:
    app = await make_app(**sections(moto, bucket, "GLACIER"))
    s3 = moto.client()
    async with app.client() as c:
        mask_url, key = await _completed_mask(c)
        # ...and metadata.json carries no tag: the transition rule never matches it.
        meta = key.rsplit("/", 1)[0] + "/metadata.json"
        assert s3.get_object_tagging(Bucket=bucket, Key=meta)["TagSet"] == []
        _archive(moto, bucket, key, "GLACIER")
        # Younger than lifecycle_archive_days (365): no HEAD, the URL is signed as always.
        assert (await c.get(f"{mask_url}/download-url")).status_code == 200
        assert "Restore" not in s3.head_object(Bucket=bucket, Key=key)
        app.clock.advance(366 * DAY)
        r = await c.get(f"{mask_url}/download-url")
        assert r.status_code == 409, r.text
        body = r.json()
        assert body["error"] == "ObjectArchived"
        assert body["storage_class"] == "GLACIER"
        assert body["restore"] == "started"
        assert r.headers["Retry-After"] == str(5 * 3600) == str(body["retry_after_seconds"])
        assert "retry in about 5 h" in body["detail"]
        # The restore was asked for (moto completes it at once; S3 takes hours).
        assert 'ongoing-request="false"' in s3.head_object(Bucket=bucket, Key=key)["Restore"]
        content = await c.get(f"{mask_url}/content")
        assert content.status_code == 307
        got = httpx.get(content.headers["location"])
        assert got.status_code == 200
        assert got.content == MASK.body


@pytest.mark.moto
async def test_glacier_instant_retrieval_downloads_without_a_restore(
    make_app: AppFactory, moto: Moto, bucket: str
) -> None:
    app = await make_app(**sections(moto, bucket, "GLACIER_IR"))
    async with app.client() as c:
        mask_url, key = await _completed_mask(c)
        _archive(moto, bucket, key, "GLACIER_IR")
        app.clock.advance(400 * DAY)
        r = await c.get(f"{mask_url}/download-url")
        assert r.status_code == 200, r.text
        assert httpx.get(r.json()["url"]).content == MASK.body
        assert "Restore" not in moto.client().head_object(Bucket=bucket, Key=key)


@pytest.mark.moto
async def test_reindex_reports_archived_metadata_instead_of_failing(
    make_app: AppFactory, moto: Moto, bucket: str
) -> None:
    from pacs_ext.recovery.reindex import reindex

    app = await make_app(**sections(moto, bucket, "GLACIER"))
    async with app.client() as c:
        _, key = await _completed_mask(c)
        await _completed_mask(c)
    # Written before metadata.json was kept out of transitions, one document got archived.
    meta = key.rsplit("/", 1)[0] + "/metadata.json"
    _archive(moto, bucket, meta, "DEEP_ARCHIVE")
    state = app.app.state
    report = await reindex(state.storage, state.sessionmaker, "mask/", merge=True, dry_run=True)
    assert report.documents == 2
    assert report.archived == [meta]
    assert report.as_dict()["archived"] == [meta]
    assert any(
        p.startswith(f"{meta}: archived, not readable until restored") for p in report.problems
    )
    assert report.groups_present == 1  # the other document was read
