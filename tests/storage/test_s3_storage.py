"""S3Storage on Ceph RGW beyond the shared contract: multipart, per-key delete failures, error
translation, SSE and checksum headers, public endpoint, the AWS credential chain."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from fixtures.rgw import Rgw
from pacs_ext.storage.base import (
    CompletedPart,
    MultipartUploadNotFound,
    ObjectNotFound,
    StorageAccessDenied,
    StorageUnavailable,
    UploadSpec,
)
from pacs_ext.storage.s3.client import S3Storage

pytestmark = pytest.mark.rgw
MiB = 1024 * 1024


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


@pytest.fixture(scope="module")
def bucket(rgw: Rgw) -> Iterator[str]:
    with rgw.bucket() as name:
        yield name


def make(rgw: Rgw, bucket: str, **kwargs: object) -> S3Storage:
    args: dict = {
        "bucket": bucket,
        "endpoint": rgw.endpoint,
        "region": rgw.region,
        "access_key": rgw.access_key,
        "secret_key": rgw.secret_key,
        **kwargs,
    }
    return S3Storage(**args)


@pytest.fixture
async def s3(rgw: Rgw, bucket: str) -> AsyncIterator[S3Storage]:
    storage = make(rgw, bucket)
    yield storage
    await storage.close()


async def test_multipart_upload_with_bound_part_md5s(s3: S3Storage) -> None:
    key = "mp/volume.nii.gz"
    parts = [os.urandom(5 * MiB), os.urandom(1234)]
    upload_id = await s3.create_multipart(key, "application/gzip")
    assert [u.upload_id async for u in s3.list_multipart_uploads("mp/")] == [upload_id]
    async with httpx.AsyncClient(timeout=60) as http:
        signed = [
            s3.sign_upload_part(key, upload_id, n, 120, size=len(p), md5_b64=md5_b64(p))
            for n, p in enumerate(parts, start=1)
        ]
        assert signed[0].headers == {
            "Content-Length": str(5 * MiB),
            "Content-MD5": md5_b64(parts[0]),
        }
        # A part whose body differs from its declared MD5 is refused.
        bent = bytes([parts[1][0] ^ 1]) + parts[1][1:]
        r = await http.put(signed[1].url, content=bent, headers=signed[1].headers)
        assert r.status_code == 400
        assert "BadDigest" in r.text
        assert [p.part_number for p in await s3.list_parts(key, upload_id)] == []
        for part, target in zip(parts, signed, strict=True):
            r = await http.put(target.url, content=part, headers=target.headers)
            assert r.status_code == 200, r.text
    listed = await s3.list_parts(key, upload_id)
    assert [(p.part_number, p.size) for p in listed] == [(1, 5 * MiB), (2, 1234)]
    assert [p.etag for p in listed] == [hashlib.md5(p).hexdigest() for p in parts]
    await s3.complete_multipart(
        key, upload_id, [CompletedPart(p.part_number, p.etag) for p in listed]
    )
    info = await s3.head(key)
    assert info.size == 5 * MiB + 1234
    assert info.is_multipart
    assert info.etag.endswith("-2")
    assert await s3.get_bytes(key) == b"".join(parts)
    with pytest.raises(MultipartUploadNotFound):
        await s3.list_parts(key, upload_id)
    assert [u async for u in s3.list_multipart_uploads("mp/")] == []
    await s3.delete_prefix("mp/")


async def test_abort_and_delete_prefix_free_unfinished_uploads(s3: S3Storage) -> None:
    first = await s3.create_multipart("ab/1/a.bin", "application/octet-stream")
    await s3.create_multipart("ab/1/b.bin", "application/octet-stream")
    other = await s3.create_multipart("ab/2/c.bin", "application/octet-stream")
    await s3.abort_multipart("ab/1/a.bin", first)
    await s3.abort_multipart("ab/1/a.bin", first)  # twice: already gone is fine
    await s3.put_bytes("ab/1/x.png", b"x", "image/png")
    assert await s3.delete_prefix("ab/1/") == 1
    assert [u.key async for u in s3.list_multipart_uploads("ab/")] == ["ab/2/c.bin"]
    await s3.abort_multipart("ab/2/c.bin", other)
    with pytest.raises(MultipartUploadNotFound):
        await s3.list_parts("ab/2/c.bin", other)


async def test_delete_objects_per_key_errors_are_raised(
    rgw: Rgw, s3: S3Storage, bucket: str
) -> None:
    # DeleteObjects answers 200 and lists refused keys in its body: they must not be ignored.
    client = rgw.client()
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": ["s3:DeleteObject"],
                "Resource": [f"arn:aws:s3:::{bucket}/locked/*"],
            }
        ],
    }
    await s3.put_bytes("locked/a.png", b"a", "image/png")
    await s3.put_bytes("free/a.png", b"a", "image/png")
    client.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    try:
        with pytest.raises(StorageAccessDenied) as err:
            await s3.delete_many(["locked/a.png", "free/a.png"])
        assert "'locked/a.png' (AccessDenied)" in str(err.value)
        assert bucket in str(err.value)
        assert [o.key async for o in s3.list_prefix("")] == ["locked/a.png"]
    finally:
        client.delete_bucket_policy(Bucket=bucket)
    await s3.delete_many(["locked/a.png"])


async def test_wrong_secret_is_access_denied_naming_bucket_and_operation(
    rgw: Rgw, bucket: str
) -> None:
    bad = make(rgw, bucket, secret_key="not-the-secret")
    try:
        with pytest.raises(StorageAccessDenied) as err:
            [o async for o in bad.list_prefix("mask/")]
        assert f"ListObjectsV2 on bucket {bucket!r}" in str(err.value)
        assert "SignatureDoesNotMatch" in str(err.value)
        with pytest.raises(StorageAccessDenied, match="PutObject"):
            await bad.put_bytes("x.json", b"{}", "application/json")
        with pytest.raises(StorageAccessDenied, match="HeadBucket"):
            await bad.ping()
    finally:
        await bad.close()


async def test_missing_bucket_and_unreachable_endpoint_are_unavailable(rgw: Rgw) -> None:
    missing = make(rgw, "pacs-test-no-such-bucket")
    down = make(rgw, "pacs-masks", endpoint="http://127.0.0.1:9")
    try:
        for call in (missing.ping(), missing.put_bytes("a.json", b"{}", "application/json")):
            with pytest.raises(
                StorageUnavailable, match="'pacs-test-no-such-bucket' does not exist"
            ):
                await call
        with pytest.raises(
            StorageUnavailable, match=re.escape("cannot reach http://127.0.0.1:9 for HeadObject")
        ):
            await down.head("a.png")
    finally:
        await missing.close()
        await down.close()


async def test_head_of_a_missing_key_is_not_found(s3: S3Storage) -> None:
    with pytest.raises(ObjectNotFound):
        await s3.head("nothing/here.png")


async def test_sse_header_is_bound_into_the_signature(rgw: Rgw, bucket: str) -> None:
    sse = make(rgw, bucket, sse="AES256")
    body = b"mask"
    signed = sse.sign_upload(UploadSpec("sse/a.png", "image/png", len(body), md5_b64(body)), 60)
    assert signed.headers["x-amz-server-side-encryption"] == "AES256"
    query = parse_qs(urlsplit(signed.url).query)
    assert "x-amz-server-side-encryption" in query["X-Amz-SignedHeaders"][0].split(";")
    # Leaving the header out breaks the signature: storage never gets an unencrypted upload.
    # (Ceph RGW refuses SSE-S3 itself without TLS and a KMS, so the positive case is AWS-only.)
    without = {k: v for k, v in signed.headers.items() if not k.startswith("x-amz-server")}
    r = httpx.put(signed.url, content=body, headers=without)
    assert r.status_code == 403
    assert "SignatureDoesNotMatch" in r.text
    assert [o async for o in sse.list_prefix("sse/")] == []
    assert sse.capabilities.sse
    await sse.close()


async def test_sha256_header_only_when_declared_and_enabled(rgw: Rgw, bucket: str) -> None:
    body = b"mask body"
    sha = base64.b64encode(hashlib.sha256(body).digest()).decode()
    spec = UploadSpec("sha/a.png", "image/png", len(body), md5_b64(body), sha)
    enabled = make(rgw, bucket, checksum_sha256=True)
    signed = enabled.sign_upload(spec, 60)
    assert signed.headers["x-amz-checksum-sha256"] == sha
    r = httpx.put(signed.url, content=body, headers=signed.headers)
    assert r.status_code == 200, r.text
    no_sha = UploadSpec("sha/b.png", "image/png", len(body), md5_b64(body))
    assert "x-amz-checksum-sha256" not in enabled.sign_upload(no_sha, 60).headers
    disabled = make(rgw, bucket)
    assert "x-amz-checksum-sha256" not in disabled.sign_upload(spec, 60).headers
    await enabled.delete_prefix("sha/")
    await enabled.close()


async def test_public_endpoint_is_the_signed_host(rgw: Rgw, bucket: str) -> None:
    # The server reaches storage as 127.0.0.1, clients as localhost: the host is signed.
    public = f"http://localhost:{rgw.port}"
    s3 = make(rgw, bucket, public_endpoint=public)
    body = b"public"
    signed = s3.sign_upload(UploadSpec("pub/a.png", "image/png", len(body), md5_b64(body)), 60)
    assert signed.url.startswith(f"{public}/{bucket}/pub/a.png?")
    other_host = signed.url.replace(public, rgw.endpoint)
    assert httpx.put(other_host, content=body, headers=signed.headers).status_code == 403
    assert httpx.put(signed.url, content=body, headers=signed.headers).status_code == 200
    assert (await s3.head("pub/a.png")).size == len(body)  # through the internal endpoint
    await s3.delete_prefix("pub/")
    await s3.close()


@pytest.fixture
def no_aws_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A clean AWS credential chain: no keys in the environment, empty config files, no IMDS."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return tmp_path


async def test_credential_chain_from_the_environment(
    rgw: Rgw, bucket: str, no_aws_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", rgw.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", rgw.secret_key)
    s3 = make(rgw, bucket, access_key="", secret_key="")
    await s3.prepare_signing()
    body = b"chain"
    signed = s3.sign_upload(UploadSpec("chain/a.png", "image/png", len(body), md5_b64(body)), 60)
    assert f"X-Amz-Credential={rgw.access_key}%2F" in signed.url
    assert httpx.put(signed.url, content=body, headers=signed.headers).status_code == 200
    assert [o.key async for o in s3.list_prefix("chain/")] == ["chain/a.png"]
    await s3.delete_prefix("chain/")
    await s3.close()


async def test_no_credentials_anywhere_is_a_clear_error(
    rgw: Rgw, bucket: str, no_aws_config: Path
) -> None:
    s3 = make(rgw, bucket, access_key="", secret_key="")
    with pytest.raises(StorageAccessDenied, match="credential chain"):
        await s3.prepare_signing()
    with pytest.raises(StorageUnavailable, match="not loaded"):
        s3.sign_download("a.png", 60)
    with pytest.raises(StorageAccessDenied, match="credential"):
        await s3.head("a.png")
    await s3.close()


async def test_rotated_credentials_reach_the_presigner(
    rgw: Rgw, bucket: str, no_aws_config: Path
) -> None:
    # credential_process gives refreshable credentials (as an IAM role or SSO would); they
    # expire within botocore's refresh window, so every batch re-reads them.
    keys = no_aws_config / "keys.json"
    script = no_aws_config / "creds.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json, sys
            from datetime import datetime, timedelta, timezone
            keys = json.load(open({str(keys)!r}))
            expires = datetime.now(timezone.utc) + timedelta(minutes=5)
            print(json.dumps({{"Version": 1, "AccessKeyId": keys[0], "SecretAccessKey": keys[1],
                              "Expiration": expires.isoformat()}}))
            """
        )
    )
    (no_aws_config / "config").write_text(
        f"[default]\ncredential_process = {sys.executable} {script}\n"
    )
    s3 = make(rgw, bucket, access_key="", secret_key="")
    body = b"rotation"

    async def put(name: str) -> tuple[str, int]:
        # A key of its own per PUT: uploads are write-once (a second PUT of a key is a 412).
        spec = UploadSpec(f"rot/{name}.png", "image/png", len(body), md5_b64(body))
        await s3.prepare_signing()
        signed = s3.sign_upload(spec, 60)
        credential = parse_qs(urlsplit(signed.url).query)["X-Amz-Credential"][0]
        r = httpx.put(signed.url, content=body, headers=signed.headers)
        return credential.split("/")[0], r.status_code

    keys.write_text(json.dumps([rgw.access_key, rgw.secret_key]))
    assert await put("first") == (rgw.access_key, 200)
    keys.write_text(json.dumps(["AKIAROTATEDKEY000000", "rotated-secret"]))
    assert await put("rotated") == ("AKIAROTATEDKEY000000", 403)
    keys.write_text(json.dumps([rgw.access_key, rgw.secret_key]))
    assert await put("restored") == (rgw.access_key, 200)
    await s3.delete_prefix("rot/")
    await s3.close()


def test_expiry_is_never_later_than_the_signed_one(rgw: Rgw, bucket: str) -> None:
    s3 = make(rgw, bucket)
    signed = s3.sign_upload(UploadSpec("e/a.png", "image/png", 1, md5_b64(b"a")), 600)
    query = parse_qs(urlsplit(signed.url).query)
    signed_at = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    real = signed_at + timedelta(seconds=int(query["X-Amz-Expires"][0]))
    assert timedelta(0) <= real - signed.expires_at <= timedelta(seconds=1)
