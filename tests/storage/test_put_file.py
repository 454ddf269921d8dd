"""put_file on every backend: streamed in, checked by storage (Content-MD5), multipart for large
files with an ETag the local file reproduces."""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fixtures.rgw import Rgw
from pacs_ext.legacy.tree import checksums, same_content
from pacs_ext.storage.base import ChecksumMismatch, ObjectNotFound, ObjectStorage
from pacs_ext.storage.local.store import LocalStorage
from pacs_ext.storage.s3.client import S3Storage

MiB = 1024 * 1024


@pytest.fixture(scope="module", params=["local", pytest.param("s3", marks=pytest.mark.rgw)])
async def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ObjectStorage]:
    if request.param == "local":
        yield LocalStorage(tmp_path_factory.mktemp("put-file"), b"k" * 32, "http://127.0.0.1:1")
        return
    rgw: Rgw = request.getfixturevalue("rgw")
    with rgw.bucket() as bucket:
        s3 = S3Storage(
            bucket=bucket,
            endpoint=rgw.endpoint,
            region=rgw.region,
            access_key=rgw.access_key,
            secret_key=rgw.secret_key,
            multipart_threshold=6 * MiB,
            multipart_part_size=5 * MiB,
        )
        try:
            yield s3
        finally:
            await s3.close()


def _file(tmp_path: Path, size: int) -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = tmp_path / f"{uuid.uuid4().hex}.png"
    path.write_bytes(data)
    return path, data


async def test_small_file_round_trip(store: ObjectStorage, tmp_path: Path) -> None:
    path, data = _file(tmp_path, 20_000)
    key = f"pf/{uuid.uuid4().hex}/0001_liver.png"
    stored = await store.put_file(key, path, "image/png")
    assert stored.size == len(data)
    assert stored.md5 == hashlib.md5(data).hexdigest()
    assert stored.etag == stored.md5
    assert await store.get_bytes(key) == data
    assert (await store.head(key)).etag == stored.md5


async def test_declared_md5_that_differs_is_refused(store: ObjectStorage, tmp_path: Path) -> None:
    path, _ = _file(tmp_path, 5_000)
    key = f"pf/{uuid.uuid4().hex}/bad.png"
    wrong = base64.b64encode(hashlib.md5(b"something else").digest()).decode()
    with pytest.raises(ChecksumMismatch):
        await store.put_file(key, path, "image/png", wrong)
    with pytest.raises(ObjectNotFound):
        await store.head(key)


async def test_large_file_goes_in_parts(store: ObjectStorage, tmp_path: Path) -> None:
    path, data = _file(tmp_path, 11 * MiB + 123)
    key = f"pf/{uuid.uuid4().hex}/volume.bin"
    stored = await store.put_file(key, path, "application/octet-stream")
    assert stored.md5 == hashlib.md5(data).hexdigest()
    assert await store.get_bytes(key) == data
    md5, etags = checksums(path, (5 * MiB,))
    assert md5 == stored.md5
    assert same_content(md5, etags, (await store.head(key)).etag)
    if store.capabilities.multipart:
        assert stored.etag.endswith("-3")
        assert [u async for u in store.list_multipart_uploads("pf/")] == []
