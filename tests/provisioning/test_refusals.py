"""`storage init` when the store refuses settings: MinIO's community edition has no bucket CORS
or public access block API. The refusals are injected (answered as MinIO answers them) into a
real client on Ceph RGW, which does everything else for real; init reports each refusal with
what to do instead and carries on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from fixtures.rgw import Rgw
from pacs_ext.core.config import Settings
from pacs_ext.provisioning.bucket_init import Provisioner
from pacs_ext.storage.s3.client import S3Storage

pytestmark = pytest.mark.rgw
VIEWER = "http://viewer.test"


Refuse = Callable[[dict[str, Any]], bool]


def always(_: dict[str, Any]) -> bool:
    return True


def with_abort(params: dict[str, Any]) -> bool:
    rules = params["LifecycleConfiguration"]["Rules"]
    return any("AbortIncompleteMultipartUpload" in rule for rule in rules)


class RefusingClient:
    """The real aiobotocore client, except that `refused` operations (when their predicate
    says so) answer 501 NotImplemented with MinIO's message and Server header."""

    def __init__(self, client: Any, refused: dict[str, Refuse]) -> None:
        self._client = client
        self._refused = refused
        self.refusals: list[str] = []

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._client, name)
        if name not in self._refused:
            return real

        async def maybe_refuse(**params: Any) -> Any:
            if not self._refused[name](params):
                return await real(**params)
            self.refusals.append(name)
            raise ClientError(
                {
                    "Error": {
                        "Code": "NotImplemented",
                        "Message": "A header you provided implies functionality that is not "
                        "implemented",
                    },
                    "ResponseMetadata": {"HTTPStatusCode": 501, "HTTPHeaders": {"server": "MinIO"}},
                },
                name,
            )

        handler: Callable[..., Awaitable[Any]] = maybe_refuse
        return handler


@pytest.fixture
def bucket(rgw: Rgw) -> Iterator[str]:
    with rgw.bucket() as name:
        yield name


def settings_for(rgw: Rgw, bucket: str, **bucket_settings: object) -> Settings:
    return Settings(
        server={"cors_allowed_origins": [VIEWER]},
        bucket=bucket_settings,
        object_storage={
            "provider": "minio",
            "endpoint": rgw.endpoint,
            "region": rgw.region,
            "bucket_name": bucket,
            "access_key": rgw.access_key,
            "secret_key": rgw.secret_key,
        },
    )


async def test_minio_refusals_are_reported_and_the_rest_applied(rgw: Rgw, bucket: str) -> None:
    # RGW has a STANDARD class (and no other), so one transition survives the class probe.
    settings = settings_for(
        rgw, bucket, lifecycle_ia_storage_class="STANDARD", lifecycle_archive_days=0
    )
    storage = S3Storage(
        bucket=bucket,
        endpoint=rgw.endpoint,
        access_key=rgw.access_key,
        secret_key=rgw.secret_key,
        name="minio",
    )
    refused: dict[str, Refuse] = {
        "get_bucket_cors": always,
        "put_bucket_cors": always,
        "get_public_access_block": always,
        # MinIO documents AbortIncompleteMultipartUpload as unsupported in lifecycle rules.
        "put_bucket_lifecycle_configuration": with_abort,
    }
    try:
        client = RefusingClient(await storage.client(), refused)
        first = await Provisioner(settings, client).run()
        second = await Provisioner(settings, client).run()
    finally:
        await storage.close()
    assert "failed" not in {o.status for o in first + second}
    by_setting = {(o.setting, o.status): o for o in first}

    cors = by_setting["cors", "refused"]
    assert cors.detail.startswith("MinIO refused it (NotImplemented: A header you provided")
    assert f"MINIO_API_CORS_ALLOW_ORIGIN={VIEWER}" in cors.instead
    assert "public access block API" in by_setting["public access block", "refused"].instead
    # The rule went in without the abort part; the refusal says how MinIO cleans up instead.
    assert by_setting["lifecycle", "changed"].detail == (
        "mask/ tagged pacs-ext-lifecycle=transition: STANDARD after 90 d"
    )
    assert "stale_uploads_expiry" in by_setting["lifecycle", "refused"].instead
    (rule,) = rgw.client().get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    # RGW reads the tag filter back as Filter{Prefix, Tag}.
    assert rule["Filter"] == {
        "Prefix": "mask/",
        "Tag": {"Key": "pacs-ext-lifecycle", "Value": "transition"},
    }
    assert rule["Transitions"] == [{"Days": 90, "StorageClass": "STANDARD"}]
    assert "AbortIncompleteMultipartUpload" not in rule
    # RGW's own refusal of SSE-S3, explained for the configured provider.
    assert "MinIO needs a KMS" in by_setting["encryption", "refused"].instead
    assert by_setting["versioning", "unchanged"].detail == "off"
    # Idempotent under refusals too: the second run finds everything as the first left it.
    assert [o.status for o in second if o.setting == "lifecycle"] == ["unchanged", "refused"]
    assert "changed" not in {o.status for o in second}


async def test_dry_run_reads_but_never_writes(rgw: Rgw, bucket: str) -> None:
    settings = settings_for(rgw, bucket)
    storage = S3Storage(
        bucket=bucket, endpoint=rgw.endpoint, access_key=rgw.access_key, secret_key=rgw.secret_key
    )
    writes = {"put_bucket_cors", "put_bucket_lifecycle_configuration", "put_public_access_block"}
    writes |= {"put_bucket_encryption", "put_object", "create_bucket", "delete_bucket_lifecycle"}
    try:
        client = RefusingClient(await storage.client(), dict.fromkeys(writes, always))
        provisioner = Provisioner(settings, client, dry_run=True)
        outcomes = await provisioner.run()
    finally:
        await storage.close()
    assert client.refusals == []  # not one write was attempted
    assert [r.operation for r in provisioner.requests] == [
        "PutBucketCors",
        "PutPublicAccessBlock",
        "PutBucketLifecycleConfiguration",
        "PutBucketEncryption",
    ]
    assert [o.status for o in outcomes if o.setting != "bucket"].count("changed") == 4
