"""The object-storage interface every backend implements, and its storage-neutral errors."""

from __future__ import annotations

import abc
import hashlib
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path


class StorageError(Exception):
    """Base class of storage-neutral errors; the app's one handler maps them to HTTP.

    `operation` names what the server was doing (set by storage/errors.py's `during`), so the
    answer can say "storage unavailable during complete"."""

    operation: str | None = None


class ObjectNotFound(StorageError):
    pass


class ObjectExists(StorageError):
    """A write-once PUT found the key taken (S3's 412 PreconditionFailed)."""


class StorageAccessDenied(StorageError):
    pass


class StorageUnavailable(StorageError):
    pass


class InvalidObjectKey(StorageError, ValueError):
    pass


class MultipartUploadNotFound(ObjectNotFound):
    """The multipart upload was completed, aborted, or expired (S3's NoSuchUpload)."""


class ObjectArchived(StorageError):
    """The object is in an archive class (S3 Glacier Flexible Retrieval, Deep Archive) and
    must be restored before it can be read (S3's 403 InvalidObjectState)."""


class ChecksumMismatch(StorageError):
    """The body storage received differs from the declared MD5 (S3's BadDigest)."""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int
    # Hex MD5 of the body for single-part objects; "<hex>-<parts>" for multipart ones.
    etag: str
    last_modified: datetime | None = None

    @property
    def is_multipart(self) -> bool:
        return "-" in self.etag


@dataclass(frozen=True, slots=True)
class StoredFile:
    """What put_file stored: the ETag storage reports and the hex MD5 of the body sent."""

    key: str
    size: int
    etag: str
    md5: str


@dataclass(frozen=True, slots=True)
class SignedRequest:
    method: str
    url: str
    # Exactly the headers the client must send with the request.
    headers: dict[str, str]
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class UploadSpec:
    """What the client declared for one object; a signed PUT binds all of it."""

    key: str
    content_type: str
    size: int
    md5_b64: str | None = None
    sha256_b64: str | None = None


@dataclass(frozen=True, slots=True)
class CompletedPart:
    part_number: int
    etag: str


@dataclass(frozen=True, slots=True)
class PartInfo:
    """A part stored for a multipart upload in progress."""

    part_number: int
    size: int
    # Hex MD5 of the part's body (without SSE-KMS/SSE-C), as S3 reports it in ListParts.
    etag: str


@dataclass(frozen=True, slots=True)
class MultipartUploadInfo:
    key: str
    upload_id: str
    initiated: datetime | None = None


@dataclass(frozen=True, slots=True)
class ArchiveState:
    """Where an object's bytes are: its storage class and whether a restore makes it readable."""

    storage_class: str
    # None: never restored; "ongoing": a restore runs; "done": a restored copy is readable.
    restore: str | None = None


@dataclass(frozen=True, slots=True)
class Capabilities:
    multipart: bool = False
    sse: bool = False
    checksum_sha256: bool = False
    extra: dict[str, bool] = field(default_factory=dict)


class ObjectStorage(abc.ABC):
    """Async object storage. Signing is pure CPU and synchronous; everything else is I/O."""

    name: str = "abstract"
    bucket: str = ""
    capabilities: Capabilities = Capabilities()

    @abc.abstractmethod
    def sign_upload(self, spec: UploadSpec, ttl_seconds: int) -> SignedRequest: ...

    @abc.abstractmethod
    def sign_download(
        self,
        key: str,
        ttl_seconds: int,
        *,
        content_disposition: str | None = None,
        content_type: str | None = None,
    ) -> SignedRequest:
        """A signed GET answered inert (storage/inert.py): with content_type (default: the
        stored type on the local store, application/octet-stream on S3), no content encoding,
        and content_disposition (default: inline for images, else an attachment)."""

    @abc.abstractmethod
    def list_prefix(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        """Every object whose key starts with prefix, with size and ETag, in key order."""

    @abc.abstractmethod
    async def head(self, key: str) -> ObjectInfo: ...

    @abc.abstractmethod
    async def get_bytes(self, key: str) -> bytes: ...

    @abc.abstractmethod
    async def put_bytes(self, key: str, data: bytes, content_type: str) -> None: ...

    async def put_file(
        self, key: str, path: Path, content_type: str, md5_b64: str | None = None
    ) -> StoredFile:
        """Stream a local file into key without holding it in memory; md5_b64 (of the whole
        file) is checked by storage (Content-MD5), and computed from the bytes read when None.
        Large files go as multipart uploads where the backend has them, each part with its
        own Content-MD5. Raises ChecksumMismatch when what arrived differs."""
        raise NotImplementedError(f"{self.name} storage cannot store files")

    @abc.abstractmethod
    async def delete_many(self, keys: Iterable[str]) -> None:
        """Delete keys; missing keys are not an error. Raises StorageError if any fails."""

    async def delete_prefix(self, prefix: str) -> int:
        keys = [obj.key async for obj in self.list_prefix(prefix)]
        if keys:
            await self.delete_many(keys)
        return len(keys)

    async def archive_state(self, key: str) -> ArchiveState:
        """The object's storage class and restore status (ObjectNotFound if missing). Stores
        without archive classes answer STANDARD."""
        await self.head(key)
        return ArchiveState("STANDARD")

    async def restore(self, key: str, days: int, tier: str) -> None:
        """Ask for a readable copy of an archived object for `days` (RestoreObject); a restore
        already under way is not an error."""
        raise NotImplementedError(f"{self.name} storage has no archive classes")

    async def ping(self) -> None:
        """Cheap reachability probe; raises StorageError when storage is not usable."""
        async for _ in self.list_prefix("\x00ping/"):
            break

    async def close(self) -> None:
        return None

    def read_locations(self, keys: Sequence[str], ttl_seconds: int) -> list[str]:
        """Where another process can read each object without this one: a presigned GET URL
        (call prepare_signing first), or a file path on the local store. Secrets: never log."""
        return [self.sign_download(k, ttl_seconds).url for k in keys]

    async def prepare_signing(self) -> None:
        """Call before a batch of sign_* calls: loads or refreshes rotating credentials, so
        that a batch is signed with one frozen set. A no-op for static keys and local storage."""
        return None

    # Multipart: only backends whose capabilities say so implement these.
    async def create_multipart(self, key: str, content_type: str) -> str:
        raise NotImplementedError(f"{self.name} storage has no multipart uploads")

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
        raise NotImplementedError(f"{self.name} storage has no multipart uploads")

    async def complete_multipart(
        self, key: str, upload_id: str, parts: Sequence[CompletedPart]
    ) -> None:
        raise NotImplementedError(f"{self.name} storage has no multipart uploads")

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        raise NotImplementedError(f"{self.name} storage has no multipart uploads")

    async def list_parts(self, key: str, upload_id: str) -> list[PartInfo]:
        """The parts uploaded so far, by part number; MultipartUploadNotFound when it is gone."""
        raise NotImplementedError(f"{self.name} storage has no multipart uploads")

    def list_multipart_uploads(self, prefix: str) -> AsyncIterator[MultipartUploadInfo]:
        raise NotImplementedError(f"{self.name} storage has no multipart uploads")


# C0 controls (NUL, newline...), DEL and C1 controls.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def validate_key(key: str) -> str:
    """Refuse keys that HTTP clients would rewrite or that could escape a root, and keys with
    control characters (a newline in a key splits log lines and listings)."""
    if not key or key[0] == "/" or "\\" in key or _CONTROL.search(key):
        raise InvalidObjectKey(f"invalid object key {key!r}")
    # A '.' or '..' segment exists iff '/./' or '/../' appears once the key is framed by '/'.
    if "." in key:
        framed = f"/{key}/"
        if "/./" in framed or "/../" in framed:
            raise InvalidObjectKey(f"object key {key!r} has a '.' or '..' segment")
    return key


async def delete_refusing_none(storage: ObjectStorage, keys: list[str]) -> list[str]:
    """Delete keys; those storage refuses as keys (written by another tool, or named by a
    hostile document) are skipped, one by one, instead of failing the whole batch.
    Returns the refusals ("key: reason"); raises StorageError for any other failure."""
    try:
        await storage.delete_many(keys)
        return []
    except InvalidObjectKey:
        pass
    refused = []
    for key in keys:
        try:
            await storage.delete_many([key])
        except InvalidObjectKey as exc:
            refused.append(f"{key!r}: {exc}")
    return refused


def multipart_etag(part_md5s: Sequence[bytes]) -> str:
    """S3's ETag of a multipart object: hex MD5 of the parts' binary MD5s, "-", part count."""
    digest = hashlib.md5(b"".join(part_md5s)).hexdigest()  # noqa: S324 - S3's ETag contract
    return f"{digest}-{len(part_md5s)}"
