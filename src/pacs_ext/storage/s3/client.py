"""S3-compatible object storage (AWS S3, MinIO, Ceph RGW): aiobotocore for I/O, SigV4Presigner
for the thousands of signed URLs an upload session needs."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore.exceptions import BotoCoreError, ClientError

from ...core.clock import SYSTEM_CLOCK, Clock
from ...core.config import TRANSITION_TAG, ConfigError, Settings
from ..base import (
    ArchiveState,
    Capabilities,
    CompletedPart,
    MultipartUploadInfo,
    ObjectInfo,
    ObjectNotFound,
    ObjectStorage,
    PartInfo,
    SignedRequest,
    StorageAccessDenied,
    StorageError,
    StorageUnavailable,
    StoredFile,
    UploadSpec,
    validate_key,
)
from ..expiry import Expiries
from ..inert import FALLBACK_TYPE, IDENTITY, disposition, normalise
from . import timestamps
from .digests import content_md5
from .errors import S3Failure
from .files import MiB, S3Files
from .multipart import S3Multipart
from .quickack import QuickAckHTTPSession
from .sigv4 import SigV4Presigner

# An outage must become a quick 503, not a minute of retries: a refused or black-holed
# connection costs at most ~2 x CONNECT_TIMEOUT plus one short backoff.
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 30.0
MAX_ATTEMPTS = 2
DELETE_BATCH = 1000  # DeleteObjects' limit
DELETE_CONCURRENCY = 4
_DNS_BUCKET = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
_FAILURES = (BotoCoreError, ClientError, aiohttp.ClientError, asyncio.TimeoutError, OSError)


class S3Storage(ObjectStorage):
    """One aiobotocore client per app (created on first use, closed by close()).

    The one client object of the S3 backend: the multipart calls (multipart.py) and file
    uploads (files.py) are helper objects that receive it, not mixins sharing its private
    attributes; it delegates those interface methods to them."""

    multipart_threshold: int = 64 * MiB
    multipart_part_size: int = 16 * MiB

    def __init__(
        self,
        *,
        bucket: str,
        region: str = "us-east-1",
        endpoint: str = "",
        public_endpoint: str = "",
        access_key: str = "",
        secret_key: str = "",
        session_token: str | None = None,
        sse: str | None = None,
        addressing_style: Literal["auto", "path", "virtual"] = "auto",
        checksum_sha256: bool = False,
        probe_prefix: str = "",
        name: str = "s3",
        multipart_threshold: int | None = None,
        multipart_part_size: int | None = None,
        clock: Clock = SYSTEM_CLOCK,
        object_tagging: str = "",
    ) -> None:
        if bool(access_key) != bool(secret_key):
            raise ValueError(
                "access_key and secret_key: give both, or neither to use the AWS credential chain"
            )
        self.name = name
        self.bucket = bucket
        # Signing time and reported expiry of the URLs handed out; the service judges expiry
        # on its own clock, so a test's clock set back an hour gets URLs it refuses.
        self.clock = clock
        self.expiry = Expiries(clock.time)
        if multipart_threshold:
            self.multipart_threshold = multipart_threshold
        if multipart_part_size:
            self.multipart_part_size = multipart_part_size
        self.capabilities = Capabilities(
            multipart=True, sse=bool(sse), checksum_sha256=checksum_sha256
        )
        self.region = region
        self.endpoint = endpoint
        self.sse = sse or None
        # Tags every client upload carries ("k=v", URL-encoded): the lifecycle's transition
        # rule filters on it, so what the server writes itself is never archived.
        self.object_tagging = object_tagging
        self._signing_endpoint = public_endpoint or endpoint
        self.public_endpoint_differs = self._signing_endpoint != endpoint
        self.addressing_style: Literal["path", "virtual"]
        if addressing_style != "auto":
            self.addressing_style = addressing_style
        elif endpoint or not _DNS_BUCKET.fullmatch(bucket):
            # S3-compatible stores rarely have wildcard DNS for buckets; dotted or odd bucket
            # names cannot be a TLS host name.
            self.addressing_style = "path"
        else:
            self.addressing_style = "virtual"
        self.fail = S3Failure(bucket, endpoint or f"AWS S3 ({region})")
        self._session = AioSession()
        timestamps.use_fast_parser(self._session)
        self._static = (access_key, secret_key, session_token or None) if access_key else None
        self._presigner: SigV4Presigner | None = None
        self.frozen_credentials: tuple[str, str, str | None] | None = None
        if self._static:
            self._presigner = self._new_presigner(*self._static)
        else:
            # Refuse a bad endpoint, region or bucket now rather than on the first upload.
            self._new_presigner("-", "-", None)
            self.frozen_credentials = None
        self._client_cm: Any = None
        self._client_obj: Any = None
        self._lock = asyncio.Lock()
        # ping() lists one key under this prefix when HeadBucket is not granted.
        self._probe_prefix = probe_prefix
        self._ping_by_listing = False
        self._multipart = S3Multipart(self)
        self._files = S3Files(self)

    # ---- client and credentials ----------------------------------------------------------

    def _new_presigner(self, access: str, secret: str, token: str | None) -> SigV4Presigner:
        self.frozen_credentials = (access, secret, token)
        return SigV4Presigner(
            access_key=access,
            secret_key=secret,
            session_token=token,
            region=self.region,
            endpoint=self._signing_endpoint,
            bucket=self.bucket,
            addressing_style=self.addressing_style,
            clock=self.clock.time,
        )

    async def client(self) -> Any:
        """The aiobotocore S3 client, for bucket administration (`pacs-ext storage`)."""
        return await self._client()

    async def _client(self) -> Any:
        if self._client_obj is not None:
            return self._client_obj
        async with self._lock:
            if self._client_obj is None:
                static = self._static or (None, None, None)
                config = AioConfig(
                    region_name=self.region,
                    signature_version="s3v4",
                    s3={"addressing_style": self.addressing_style},
                    connect_timeout=CONNECT_TIMEOUT,
                    read_timeout=READ_TIMEOUT,
                    retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"},
                    max_pool_connections=32,
                    # Newer botocore adds CRC checksums to every upload by default; many
                    # S3-compatible stores (Ceph before Squid, older MinIO) refuse them.
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                    # Loading the S3 model is blocking file I/O: do it in a thread.
                    warm_up_loader_caches=True,
                    http_session_cls=QuickAckHTTPSession,
                )
                cm = self._session.create_client(
                    "s3",
                    region_name=self.region,
                    endpoint_url=self.endpoint or None,
                    aws_access_key_id=static[0],
                    aws_secret_access_key=static[1],
                    aws_session_token=static[2],
                    config=config,
                )
                try:
                    self._client_obj = await cm.__aenter__()
                except _FAILURES as exc:
                    raise self.fail.translate(exc, "creating the S3 client") from exc
                self._client_cm = cm
        return self._client_obj

    def service_client(self, service: str) -> Any:
        """An async context manager giving a client of another AWS service (CloudWatch for
        `pacs-ext storage monitoring`) with the same credentials and region. Its endpoint is
        AWS's, or botocore's own AWS_ENDPOINT_URL_<SERVICE> variable when set."""
        static = self._static or (None, None, None)
        return self._session.create_client(
            service,
            region_name=self.region,
            aws_access_key_id=static[0],
            aws_secret_access_key=static[1],
            aws_session_token=static[2],
            config=AioConfig(
                connect_timeout=CONNECT_TIMEOUT,
                read_timeout=READ_TIMEOUT,
                retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"},
            ),
        )

    async def prepare_signing(self) -> None:
        if self._static:
            return
        try:
            credentials = await self._session.get_credentials()
            frozen = None if credentials is None else await credentials.get_frozen_credentials()
        except _FAILURES as exc:
            raise self.fail.translate(exc, "loading credentials") from exc
        if frozen is None or not frozen.access_key or not frozen.secret_key:
            raise StorageAccessDenied(
                f"no credentials to sign URLs for bucket {self.bucket!r}: "
                "object_storage.access_key/secret_key are empty and the AWS credential chain "
                "(environment, shared profile, web identity, IAM role) found none"
            )
        current = (frozen.access_key, frozen.secret_key, frozen.token or None)
        if current == self.frozen_credentials:
            return
        if self._presigner is None:
            self._presigner = self._new_presigner(*current)
        else:
            # Rotated (refreshable credentials: role, SSO, credential_process): URLs signed
            # from here on use the new set; earlier ones stay valid while the old set is.
            self._presigner.set_credentials(*current)
            self.frozen_credentials = current

    def signer(self) -> SigV4Presigner:
        if self._presigner is None:
            raise StorageUnavailable(
                "S3 signing credentials are not loaded yet (prepare_signing() was not awaited)"
            )
        return self._presigner

    async def close(self) -> None:
        await self._files.close()
        cm, self._client_cm, self._client_obj = self._client_cm, None, None
        if cm is not None:
            await cm.__aexit__(None, None, None)

    async def call(self, operation: str, key: str | None, **kwargs: Any) -> Any:
        client = await self._client()
        method: Callable[..., Awaitable[Any]] = getattr(client, _METHODS[operation])
        try:
            return await method(Bucket=self.bucket, **kwargs)
        except _FAILURES as exc:
            raise self.fail.translate(exc, operation, key) from exc

    # ---- signing (pure CPU) --------------------------------------------------------------

    def sign_upload(self, spec: UploadSpec, ttl_seconds: int) -> SignedRequest:
        validate_key(spec.key)
        headers = {"Content-Type": spec.content_type, "Content-Length": str(spec.size)}
        if spec.md5_b64:
            headers["Content-MD5"] = spec.md5_b64
        if self.sse:
            headers["x-amz-server-side-encryption"] = self.sse
        if spec.sha256_b64 and self.capabilities.checksum_sha256:
            headers["x-amz-checksum-sha256"] = spec.sha256_b64
        if self.object_tagging:
            headers["x-amz-tagging"] = self.object_tagging
        # Write-once: a signed conditional PUT never replaces an object (412 if the key is
        # taken: AWS S3 since 2024, MinIO, Ceph RGW as measured). Signed, so it cannot be left out.
        headers["If-None-Match"] = "*"
        # Expiry read before signing: the reported time is never later than the real one.
        expires_at = self.expiry.at(ttl_seconds)
        url = self.signer().presign("PUT", spec.key, expires_in=ttl_seconds, headers=headers)
        return SignedRequest("PUT", url, headers, expires_at)

    def sign_download(
        self,
        key: str,
        ttl_seconds: int,
        *,
        content_disposition: str | None = None,
        content_type: str | None = None,
    ) -> SignedRequest:
        validate_key(key)
        # Signed, so they hold whatever headers the object was stored with (a PUT may carry
        # Content-Encoding or Content-Disposition beside its signed ones, and S3 keeps them).
        # botocore's order (GetObject's members), which the signer keeps in the URL.
        served = normalise(content_type) if content_type else FALLBACK_TYPE
        query = {
            "response-content-disposition": content_disposition or disposition(served, key),
            "response-content-encoding": IDENTITY,
            "response-content-type": served,
        }
        expires_at = self.expiry.at(ttl_seconds)
        url = self.signer().presign("GET", key, expires_in=ttl_seconds, query=query)
        return SignedRequest("GET", url, {}, expires_at)

    # ---- objects -------------------------------------------------------------------------

    async def list_prefix(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        kwargs: dict[str, Any] = {"Prefix": prefix, "MaxKeys": 1000}
        while True:
            page = await self.call("ListObjectsV2", None, **kwargs)
            for obj in page.get("Contents", ()):
                yield ObjectInfo(
                    key=obj["Key"],
                    size=int(obj["Size"]),
                    etag=str(obj.get("ETag", "")).strip('"'),
                    last_modified=obj.get("LastModified"),
                )
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            kwargs["ContinuationToken"] = token

    async def head(self, key: str) -> ObjectInfo:
        validate_key(key)
        try:
            resp = await self.call("HeadObject", key, Key=key)
        except StorageAccessDenied as denied:
            # A HEAD of a missing key is a 403 when the credentials may list only under the
            # key prefix (the least-privilege policy): the listing tells missing from refused.
            try:
                page = await self.call("ListObjectsV2", key, Prefix=key, MaxKeys=1)
            except StorageAccessDenied:
                raise denied from None
            if not any(o.get("Key") == key for o in page.get("Contents", ())):
                raise ObjectNotFound(key) from None
            raise
        return ObjectInfo(
            key=key,
            size=int(resp["ContentLength"]),
            etag=str(resp.get("ETag", "")).strip('"'),
            last_modified=resp.get("LastModified"),
        )

    async def archive_state(self, key: str) -> ArchiveState:
        validate_key(key)
        try:
            resp = await self.call("HeadObject", key, Key=key)
        except StorageAccessDenied:
            await self.head(key)  # a missing key under least privilege: ObjectNotFound
            raise
        restore = str(resp.get("Restore") or "")
        state = None
        if 'ongoing-request="true"' in restore:
            state = "ongoing"
        elif 'ongoing-request="false"' in restore:
            state = "done"
        return ArchiveState(str(resp.get("StorageClass") or "STANDARD"), state)

    async def restore(self, key: str, days: int, tier: str) -> None:
        validate_key(key)
        request = {"Days": days, "GlacierJobParameters": {"Tier": tier}}
        try:
            await self.call("RestoreObject", key, Key=key, RestoreRequest=request)
        except StorageError as exc:
            # RestoreAlreadyInProgress (409): what was asked for is happening.
            if "RestoreAlreadyInProgress" not in str(exc):
                raise

    async def get_bytes(self, key: str) -> bytes:
        validate_key(key)
        resp = await self.call("GetObject", key, Key=key)
        try:
            async with resp["Body"] as body:
                data: bytes = await body.read()
        except _FAILURES as exc:
            raise self.fail.translate(exc, "GetObject (reading the body)", key) from exc
        return data

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        validate_key(key)
        kwargs: dict[str, Any] = {
            "Key": key,
            "Body": data,
            "ContentType": content_type,
            # Server-written objects (metadata.json): storage checks what arrived.
            "ContentMD5": await content_md5(data),
        }
        if self.sse:
            kwargs["ServerSideEncryption"] = self.sse
        await self.call("PutObject", key, **kwargs)

    async def delete_many(self, keys: Iterable[str]) -> None:
        wanted = [validate_key(k) for k in keys]
        batches = [wanted[i : i + DELETE_BATCH] for i in range(0, len(wanted), DELETE_BATCH)]
        if not batches:
            return
        gate = asyncio.Semaphore(DELETE_CONCURRENCY)

        async def one(batch: list[str]) -> list[dict[str, Any]]:
            async with gate:
                resp = await self.call(
                    "DeleteObjects",
                    batch[0],
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )
            # DeleteObjects answers 200 even when keys fail: the failures are in the body.
            return [e for e in resp.get("Errors", ()) if e.get("Code") != "NoSuchKey"]

        results = await asyncio.gather(*(one(b) for b in batches), return_exceptions=True)
        errors: list[dict[str, Any]] = []
        for result in results:
            if isinstance(result, BaseException):
                raise result
            errors.extend(result)
        if errors:
            raise self._delete_failed(errors)

    def _delete_failed(self, errors: list[dict[str, Any]]) -> StorageError:
        codes = sorted({str(e.get("Code")) for e in errors})
        sample = ", ".join(f"{e.get('Key')!r} ({e.get('Code')})" for e in errors[:3])
        detail = (
            f"DeleteObjects on bucket {self.bucket!r} failed for {len(errors)} key(s): {sample}"
        )
        if set(codes) <= {"AccessDenied"}:
            return StorageAccessDenied(detail + "; check the credentials' delete permission")
        if set(codes) <= {"InternalError", "SlowDown", "ServiceUnavailable"}:
            return StorageUnavailable(detail + "; retry")
        return StorageError(detail)

    async def delete_prefix(self, prefix: str) -> int:
        count = await super().delete_prefix(prefix)
        # Unfinished multipart uploads hold stored parts that no listing of objects shows.
        uploads = [u async for u in self.list_multipart_uploads(prefix)]
        for upload in uploads:
            await self.abort_multipart(upload.key, upload.upload_id)
        return count

    async def ping(self) -> None:
        """HeadBucket, the cheapest call; under a policy that grants listing only under the
        key prefix (`pacs-ext storage policy`) HeadBucket is refused, and a one-key listing
        of the prefix is the probe from then on."""
        refused: StorageAccessDenied | None = None
        if not self._ping_by_listing:
            try:
                await self.call("HeadBucket", None)
                return
            except ObjectNotFound:  # HEAD has no body: a bare 404 means no such bucket
                raise StorageUnavailable(
                    f"bucket {self.bucket!r} does not exist at {self.fail.endpoint}; "
                    "create it or fix object_storage.bucket_name"
                ) from None
            except StorageAccessDenied as exc:
                if not self._probe_prefix:
                    raise
                refused = exc
        try:
            await self.call("ListObjectsV2", None, Prefix=self._probe_prefix, MaxKeys=1)
        except StorageAccessDenied as exc:
            if refused is None:
                raise
            raise StorageAccessDenied(f"HeadBucket refused (403), and {exc}") from None
        if refused is not None:
            self._ping_by_listing = True

    # ---- delegated to the helpers that receive this client ---------------------------------

    def sign_upload_part(
        self,
        key: str,
        upload_id: str,
        part_number: int,
        ttl_seconds: int,
        *,
        size: int | None = None,
        md5_b64: str | None = None,
    ) -> SignedRequest:
        return self._multipart.sign_upload_part(
            key, upload_id, part_number, ttl_seconds, size=size, md5_b64=md5_b64
        )

    async def create_multipart(self, key: str, content_type: str) -> str:
        return await self._multipart.create_multipart(key, content_type)

    async def list_parts(self, key: str, upload_id: str) -> list[PartInfo]:
        return await self._multipart.list_parts(key, upload_id)

    async def complete_multipart(
        self, key: str, upload_id: str, parts: Sequence[CompletedPart]
    ) -> None:
        await self._multipart.complete_multipart(key, upload_id, parts)

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        await self._multipart.abort_multipart(key, upload_id)

    def list_multipart_uploads(self, prefix: str) -> AsyncIterator[MultipartUploadInfo]:
        return self._multipart.list_multipart_uploads(prefix)

    async def put_file(
        self, key: str, path: Path, content_type: str, md5_b64: str | None = None
    ) -> StoredFile:
        return await self._files.put_file(key, path, content_type, md5_b64)


_METHODS = {
    "ListObjectsV2": "list_objects_v2",
    "HeadObject": "head_object",
    "GetObject": "get_object",
    "PutObject": "put_object",
    "DeleteObjects": "delete_objects",
    "HeadBucket": "head_bucket",
    "RestoreObject": "restore_object",
    "CreateMultipartUpload": "create_multipart_upload",
    "ListParts": "list_parts",
    "UploadPart": "upload_part",
    "CompleteMultipartUpload": "complete_multipart_upload",
    "AbortMultipartUpload": "abort_multipart_upload",
    "ListMultipartUploads": "list_multipart_uploads",
}


def create(settings: Settings, clock: Clock = SYSTEM_CLOCK) -> S3Storage:
    """The registry's factory for providers "s3" and "minio". `clock` signs the URLs handed
    out (the S3 service decides on its own clock whether one has expired)."""
    o = settings.object_storage
    try:
        return S3Storage(
            bucket=o.bucket_name,
            region=o.region,
            endpoint=o.endpoint,
            public_endpoint=o.public_endpoint,
            access_key=o.access_key,
            secret_key=o.secret_key.get_secret_value(),
            session_token=o.session_token.get_secret_value() or None,
            sse=o.sse or None,
            addressing_style=o.addressing_style,
            checksum_sha256=o.checksum_sha256,
            probe_prefix=o.key_prefix,
            name=o.provider,
            multipart_threshold=o.multipart_threshold,
            multipart_part_size=o.multipart_part_size,
            clock=clock,
            object_tagging="=".join(TRANSITION_TAG) if settings.bucket.transitions_on else "",
        )
    except ValueError as exc:
        raise ConfigError(f"object_storage: {exc}") from None
