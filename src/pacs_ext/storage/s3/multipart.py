"""S3Storage's multipart uploads: part URLs (SigV4Presigner) and the multipart calls."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from ..base import (
    CompletedPart,
    MultipartUploadInfo,
    MultipartUploadNotFound,
    ObjectNotFound,
    PartInfo,
    SignedRequest,
    validate_key,
)

if TYPE_CHECKING:
    from .client import S3Storage


class S3Multipart:
    """S3Storage's multipart uploads; receives the client object it calls through."""

    def __init__(self, client: S3Storage) -> None:
        self.client = client

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
        validate_key(key)
        if not 1 <= part_number <= 10_000:
            raise ValueError(f"part_number must be 1..10000: {part_number}")
        headers = {} if size is None else {"Content-Length": str(size)}
        if md5_b64:
            headers["Content-MD5"] = md5_b64
        expires_at = self.client.expiry.at(ttl_seconds)
        url = self.client.signer().presign(
            "PUT",
            key,
            expires_in=ttl_seconds,
            headers=headers,
            query={"partNumber": str(part_number), "uploadId": upload_id},
        )
        return SignedRequest("PUT", url, headers, expires_at)

    async def create_multipart(self, key: str, content_type: str) -> str:
        validate_key(key)
        kwargs: dict[str, Any] = {"Key": key, "ContentType": content_type}
        if self.client.sse:
            kwargs["ServerSideEncryption"] = self.client.sse
        if self.client.object_tagging:
            kwargs["Tagging"] = self.client.object_tagging
        resp = await self.client.call("CreateMultipartUpload", key, **kwargs)
        return str(resp["UploadId"])

    async def list_parts(self, key: str, upload_id: str) -> list[PartInfo]:
        validate_key(key)
        parts: list[PartInfo] = []
        kwargs: dict[str, Any] = {"Key": key, "UploadId": upload_id, "MaxParts": 1000}
        while True:
            try:
                page = await self.client.call("ListParts", key, **kwargs)
            except ObjectNotFound as exc:  # Ceph RGW answers NoSuchKey for a finished upload
                raise MultipartUploadNotFound(
                    f"multipart upload of {key!r} no longer exists in bucket {self.client.bucket!r}"
                ) from exc
            parts.extend(
                PartInfo(
                    part_number=int(p["PartNumber"]),
                    size=int(p["Size"]),
                    etag=str(p.get("ETag", "")).strip('"'),
                )
                for p in page.get("Parts", ())
            )
            marker = page.get("NextPartNumberMarker")
            if not page.get("IsTruncated") or not marker:
                break
            kwargs["PartNumberMarker"] = marker
        parts.sort(key=lambda p: p.part_number)
        return parts

    async def complete_multipart(
        self, key: str, upload_id: str, parts: Sequence[CompletedPart]
    ) -> None:
        validate_key(key)
        await self.client.call(
            "CompleteMultipartUpload",
            key,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={
                "Parts": [{"PartNumber": p.part_number, "ETag": f'"{p.etag}"'} for p in parts]
            },
        )

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        validate_key(key)
        # Already completed or aborted: nothing left to free.
        with contextlib.suppress(MultipartUploadNotFound):
            await self.client.call("AbortMultipartUpload", key, Key=key, UploadId=upload_id)

    async def list_multipart_uploads(self, prefix: str) -> AsyncIterator[MultipartUploadInfo]:
        kwargs: dict[str, Any] = {"Prefix": prefix, "MaxUploads": 1000}
        while True:
            page = await self.client.call("ListMultipartUploads", None, **kwargs)
            for u in page.get("Uploads", ()):
                yield MultipartUploadInfo(
                    key=u["Key"], upload_id=u["UploadId"], initiated=u.get("Initiated")
                )
            key_marker = page.get("NextKeyMarker")
            if not page.get("IsTruncated") or not key_marker:
                return
            kwargs["KeyMarker"] = key_marker
            kwargs["UploadIdMarker"] = page.get("NextUploadIdMarker", "")
