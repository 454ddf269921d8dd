"""One contract, every backend: the local store (served by a real server) and S3 on Ceph RGW
(a fresh bucket). Signed URLs are used over real HTTP; what storage must refuse, it refuses."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from fixtures.databases import sqlite_database
from fixtures.factories import png_like
from fixtures.rgw import Rgw
from fixtures.server import ServerProcess
from pacs_ext.core.clock import FakeClock
from pacs_ext.storage.base import (
    InvalidObjectKey,
    ObjectInfo,
    ObjectNotFound,
    ObjectStorage,
    SignedRequest,
    UploadSpec,
)
from pacs_ext.storage.local.store import LocalStorage
from pacs_ext.storage.s3.client import S3Storage

BACKENDS = ["local", pytest.param("s3", marks=pytest.mark.rgw)]


@pytest.fixture(scope="module", params=BACKENDS)
async def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ObjectStorage]:
    if request.param == "local":
        # The local store's URLs are served by the app: run one on the same folder and secret.
        folder = tmp_path_factory.mktemp("contract-local")
        with sqlite_database(folder) as url:
            srv = ServerProcess(data_dir=folder, database_url=url).start()
            try:
                secret = (folder / ".local_storage_secret").read_text().strip().encode()
                yield LocalStorage(folder / "objects", secret, srv.url)
            finally:
                srv.stop()
    else:
        rgw: Rgw = request.getfixturevalue("rgw")
        with rgw.bucket() as bucket:
            s3 = S3Storage(
                bucket=bucket,
                endpoint=rgw.endpoint,
                region=rgw.region,
                access_key=rgw.access_key,
                secret_key=rgw.secret_key,
            )
            try:
                yield s3
            finally:
                await s3.close()


@pytest.fixture
def prefix() -> str:
    """Each test works under its own prefix of the module's store."""
    return f"contract/{uuid.uuid4().hex[:8]}/"


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


async def listed(store: ObjectStorage, prefix: str) -> list[ObjectInfo]:
    return [o async for o in store.list_prefix(prefix)]


async def put_many(store: ObjectStorage, keys: list[str], concurrency: int = 24) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(key: str) -> None:
        async with gate:
            await store.put_bytes(key, key.encode(), "text/plain")

    await asyncio.gather(*(one(k) for k in keys))


def error_code(response: httpx.Response) -> str:
    """The error's code: JSON {"error"} from the local store, XML <Code> from S3."""
    if response.headers.get("content-type", "").startswith("application/json"):
        return str(response.json()["error"])
    m = re.search(r"<Code>([^<]+)</Code>", response.text)
    return m.group(1) if m else response.text[:200]


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def signature_param(url: str) -> str:
    names = [k for k, _ in parse_qsl(urlsplit(url).query)]
    return next(k for k in names if k.lower() in ("signature", "x-amz-signature"))


async def test_put_get_head_round_trip(store: ObjectStorage, prefix: str) -> None:
    body = png_like(3000, 1)
    await store.put_bytes(prefix + "a/metadata.json", body, "application/json")
    assert await store.get_bytes(prefix + "a/metadata.json") == body
    info = await store.head(prefix + "a/metadata.json")
    assert info.key == prefix + "a/metadata.json"
    assert info.size == len(body)
    assert info.etag == hashlib.md5(body).hexdigest()
    assert not info.is_multipart
    # Overwrite in place.
    await store.put_bytes(prefix + "a/metadata.json", b"{}", "application/json")
    assert await store.get_bytes(prefix + "a/metadata.json") == b"{}"


async def test_a_large_body_round_trips(store: ObjectStorage, prefix: str) -> None:
    # Above the size S3 hashes on the loop (storage/s3/digests.py): storage checks the
    # Content-MD5 computed in a thread against what arrived.
    body = png_like(300_000, 2)
    await store.put_bytes(prefix + "big/metadata.json", body, "application/json")
    assert await store.get_bytes(prefix + "big/metadata.json") == body
    assert (await store.head(prefix + "big/metadata.json")).etag == hashlib.md5(body).hexdigest()


async def test_missing_object_is_object_not_found(store: ObjectStorage, prefix: str) -> None:
    with pytest.raises(ObjectNotFound):
        await store.head(prefix + "nothing.png")
    with pytest.raises(ObjectNotFound):
        await store.get_bytes(prefix + "nothing.png")
    assert await listed(store, prefix) == []


@pytest.mark.parametrize("key", ["a/./b.png", "a/../b.png", "../b.png", "/abs.png", "", "a\x00b"])
async def test_keys_that_http_clients_rewrite_are_refused(
    store: ObjectStorage, prefix: str, key: str
) -> None:
    full = key if key in ("", "/abs.png", "../b.png") else prefix + key
    with pytest.raises(InvalidObjectKey):
        store.sign_upload(UploadSpec(full, "image/png", 1, md5_b64(b"x")), 60)
    with pytest.raises(InvalidObjectKey):
        store.sign_download(full, 60)
    with pytest.raises(InvalidObjectKey):
        await store.put_bytes(full, b"x", "image/png")
    with pytest.raises(InvalidObjectKey):
        await store.head(full)
    with pytest.raises(InvalidObjectKey):
        await store.delete_many([full])


async def test_list_is_in_key_order_within_the_prefix(store: ObjectStorage, prefix: str) -> None:
    keys = [prefix + k for k in ("b.png", "a/2.png", "a/10.png", "a-b.png", "c/d/e.png")]
    await put_many(store, keys)
    await store.put_bytes(prefix[:-1] + "-sibling/x.png", b"x", "image/png")
    got = await listed(store, prefix)
    assert [o.key for o in got] == sorted(keys)
    assert {o.key: o.size for o in got} == {k: len(k.encode()) for k in keys}
    assert all(o.etag == hashlib.md5(o.key.encode()).hexdigest() for o in got)
    assert [o.key for o in await listed(store, prefix + "a/")] == sorted(keys[1:3])
    await store.delete_many([prefix[:-1] + "-sibling/x.png"])


async def test_list_and_delete_over_a_thousand_keys(store: ObjectStorage, prefix: str) -> None:
    # More than one ListObjectsV2 page and more than one DeleteObjects batch (1,000 each).
    keys = [f"{prefix}{i:05d}.png" for i in range(1105)]
    await put_many(store, keys)
    got = await listed(store, prefix)
    assert [o.key for o in got] == keys
    # Missing keys among them are not an error.
    await store.delete_many([*keys[:1050], prefix + "never-existed.png"])
    assert [o.key for o in await listed(store, prefix)] == keys[1050:]
    assert await store.delete_prefix(prefix) == 55
    assert await listed(store, prefix) == []
    assert await store.delete_prefix(prefix) == 0


async def test_delete_prefix_removes_only_that_prefix(store: ObjectStorage, prefix: str) -> None:
    await put_many(store, [prefix + "1/a.png", prefix + "1/b/c.png", prefix + "10/a.png"])
    assert await store.delete_prefix(prefix + "1/") == 2
    assert [o.key for o in await listed(store, prefix)] == [prefix + "10/a.png"]
    await store.delete_prefix(prefix)


async def test_signed_put_then_signed_get(store: ObjectStorage, prefix: str) -> None:
    body = png_like(5000, 2)
    key = prefix + "0001_liver.png"
    signed = store.sign_upload(UploadSpec(key, "image/png", len(body), md5_b64(body)), 120)
    assert signed.method == "PUT"
    # Write-once: S3 stores enforce a signed If-None-Match; the local store does it itself.
    write_once = {} if store.name == "local" else {"If-None-Match": "*"}
    assert signed.headers == {
        "Content-Type": "image/png",
        "Content-Length": str(len(body)),
        "Content-MD5": md5_b64(body),
        **write_once,
    }
    assert 100 < signed.expires_at.timestamp() - time.time() <= 120
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.put(signed.url, content=body, headers=signed.headers)
        assert r.status_code == 200, r.text
        info = await store.head(key)
        assert (info.size, info.etag) == (len(body), hashlib.md5(body).hexdigest())

        # Answered with the type it was signed for (S3: response-content-type), inline.
        get = store.sign_download(key, 60, content_type="image/png")
        r = await http.get(get.url)
        assert r.status_code == 200
        assert r.content == body
        assert r.headers["content-type"] == "image/png"
        assert r.headers["content-disposition"] == "inline"
        get = store.sign_download(key, 60, content_disposition='attachment; filename="a b.png"')
        r = await http.get(get.url)
        assert r.headers["content-disposition"] == 'attachment; filename="a b.png"'
        # Tampering with a signed GET is refused too.
        r = await http.get(with_query(get.url, **{signature_param(get.url): "0" * 64}))
        assert r.status_code == 403


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ("tampered_signature", 403, "SignatureDoesNotMatch"),
        ("other_key", 403, "SignatureDoesNotMatch"),
        ("wrong_content_type", 403, "SignatureDoesNotMatch"),
        ("wrong_content_length", 403, "SignatureDoesNotMatch"),
        ("wrong_md5_header", 403, "SignatureDoesNotMatch"),
        ("body_not_matching_md5", 400, "BadDigest"),
        ("no_signature", 403, "AccessDenied"),
    ],
)
async def test_bent_signed_put_is_refused_and_nothing_stored(
    store: ObjectStorage, prefix: str, change: str, status: int, code: str
) -> None:
    body = png_like(4000, 3)
    key = prefix + "0001_liver.png"
    signed = store.sign_upload(UploadSpec(key, "image/png", len(body), md5_b64(body)), 120)
    url, headers, content = signed.url, dict(signed.headers), body
    if change == "tampered_signature":
        name = signature_param(url)
        sig = dict(parse_qsl(urlsplit(url).query))[name]
        url = with_query(url, **{name: ("0" if sig[0] != "0" else "1") + sig[1:]})
    elif change == "other_key":
        url = url.replace("0001_liver.png", "0002_liver.png")
    elif change == "wrong_content_type":
        headers["Content-Type"] = "image/jpeg"
    elif change == "wrong_content_length":
        content = body + b"x"
        headers["Content-Length"] = str(len(content))
    elif change == "wrong_md5_header":
        headers["Content-MD5"] = md5_b64(b"another body")
    elif change == "body_not_matching_md5":
        content = bytes([body[0] ^ 1]) + body[1:]
    elif change == "no_signature":
        url = url.split("?")[0]
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.put(url, content=content, headers=headers)
    assert (r.status_code, error_code(r)) == (status, code), r.text
    assert await listed(store, prefix) == []


def signed_an_hour_ago(store: ObjectStorage, spec: UploadSpec) -> SignedRequest:
    """A 1 s upload URL signed an hour ago: expired by the store's own clock, without waiting."""
    past = datetime.now(UTC) - timedelta(hours=1)
    if isinstance(store, LocalStorage):
        now, store.clock = store.clock, FakeClock(past)
        try:
            return store.sign_upload(spec, 1)
        finally:
            store.clock = now
    assert isinstance(store, S3Storage)
    headers = store.sign_upload(spec, 1).headers  # exactly the headers the store signs
    # The store's own presigner, at a signing time an hour back (the service judges expiry).
    url = store.signer().presign("PUT", spec.key, expires_in=1, headers=headers, now=past)
    return SignedRequest("PUT", url, headers, past + timedelta(seconds=1))


async def test_expired_signed_put_is_refused(store: ObjectStorage, prefix: str) -> None:
    body = png_like(1000, 4)
    key = prefix + "late.png"
    spec = UploadSpec(key, "image/png", len(body), md5_b64(body))
    signed = signed_an_hour_ago(store, spec)
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.put(signed.url, content=body, headers=signed.headers)
        assert r.status_code == 403, r.text
        assert error_code(r) == "AccessDenied"
        assert await listed(store, prefix) == []
        # The same request signed now is taken: only the time made the difference.
        fresh = store.sign_upload(spec, 60)
        assert (await http.put(fresh.url, content=body, headers=fresh.headers)).status_code == 200


async def test_ping(store: ObjectStorage) -> None:
    await store.ping()
