"""The policy `pacs-ext storage policy` prints is enough for everything the server does, and no
more: applied (with --principal) as the bucket policy for a second Ceph RGW user, whose keys
then drive S3Storage and `pacs-ext storage check`."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from fixtures.rgw import Rgw
from fixtures.storage_cli import check, run, statuses, storage_env
from pacs_ext.storage.base import ObjectNotFound, StorageAccessDenied
from pacs_ext.storage.s3.client import S3Storage

pytestmark = pytest.mark.rgw


class User(NamedTuple):
    uid: str
    access_key: str
    secret_key: str


@pytest.fixture(scope="module")
def user(rgw: Rgw) -> User:
    uid = f"limited-{uuid.uuid4().hex[:8]}"
    return User(uid, *rgw.create_user(uid))


@pytest.fixture(scope="module")
def bucket(rgw: Rgw, user: User, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A bucket provisioned by `storage init` whose policy grants `user` what it prints."""
    folder = tmp_path_factory.mktemp("least-privilege")
    with rgw.bucket() as name:
        env = storage_env(folder, rgw, name)
        assert run(env, "init").returncode == 0
        policy = run(env, "policy", "--principal", f"arn:aws:iam:::user/{user.uid}")
        assert policy.returncode == 0, policy.stderr
        rgw.client().put_bucket_policy(Bucket=name, Policy=policy.stdout)
        yield name


@pytest.fixture
async def s3(rgw: Rgw, bucket: str, user: User) -> AsyncIterator[S3Storage]:
    storage = S3Storage(
        bucket=bucket,
        endpoint=rgw.endpoint,
        region=rgw.region,
        access_key=user.access_key,
        secret_key=user.secret_key,
        probe_prefix="mask/",
    )
    yield storage
    await storage.close()


async def test_every_server_call_works_under_the_prefix(s3: S3Storage) -> None:
    # HeadBucket needs a ListBucket without prefix, which the policy does not grant: ping
    # falls back to listing the prefix, and keeps doing so.
    await s3.ping()
    await s3.ping()
    key = "mask/1/2/metadata.json"
    await s3.put_bytes(key, b"{}", "application/json")
    assert (await s3.head(key)).size == 2
    # A missing key is a 403 to these keys; head() still reports it as missing.
    with pytest.raises(ObjectNotFound):
        await s3.head("mask/1/2/0001_liver.png")
    assert [o.key async for o in s3.list_prefix("mask/1/")] == [key]
    upload_id = await s3.create_multipart("mask/1/2/volume.nii", "application/octet-stream")
    assert [u.upload_id async for u in s3.list_multipart_uploads("mask/1/")] == [upload_id]
    assert await s3.list_parts("mask/1/2/volume.nii", upload_id) == []
    # delete_prefix: DeleteObjects (needs the bucket-ARN statement on RGW), then the abort.
    assert await s3.delete_prefix("mask/1/") == 1
    assert [u async for u in s3.list_multipart_uploads("mask/1/")] == []
    assert [o async for o in s3.list_prefix("mask/1/")] == []


async def test_nothing_outside_the_prefix(s3: S3Storage) -> None:
    with pytest.raises(StorageAccessDenied):
        await s3.put_bytes("other/x.json", b"{}", "application/json")
    with pytest.raises(StorageAccessDenied):
        _ = [o async for o in s3.list_prefix("other/")]
    with pytest.raises(StorageAccessDenied):
        await s3.delete_many(["other/x.json"])


async def test_ping_with_a_wrong_secret_names_both_refusals(
    rgw: Rgw, bucket: str, user: User
) -> None:
    s3 = S3Storage(
        bucket=bucket,
        endpoint=rgw.endpoint,
        access_key=user.access_key,
        secret_key="not-" + user.secret_key,
        probe_prefix="mask/",
    )
    try:
        with pytest.raises(StorageAccessDenied) as err:
            await s3.ping()
    finally:
        await s3.close()
    assert "HeadBucket refused (403)" in str(err.value)
    assert "SignatureDoesNotMatch" in str(err.value)


def test_check_passes_with_only_the_policy(
    rgw: Rgw, bucket: str, user: User, tmp_path: Path
) -> None:
    env = storage_env(tmp_path, rgw, bucket, access_key=user.access_key, secret_key=user.secret_key)
    code, steps = check(env)
    assert code == 0, steps
    # The server never needs GetBucketLocation, so these keys cannot verify the region.
    assert steps["region"]["status"] == "WARN"
    assert "GetBucketLocation" in steps["region"]["detail"]
    # Plain-HTTP RGW (tls WARN) without CloudWatch (monitoring SKIP).
    others = {n: s for n, s in statuses(steps).items() if n not in ("region", "tls", "monitoring")}
    assert set(others.values()) == {"PASS"}
    assert (steps["tls"]["status"], steps["monitoring"]["status"]) == ("WARN", "SKIP")
