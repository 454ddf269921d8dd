"""InstrumentedStorage over the real local store, and over a multipart-capable stand-in for the
S3 backend: every call reaches the backend and is counted by operation and outcome."""

from __future__ import annotations

import abc
import base64
import hashlib
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from pacs_ext.storage.base import (
    Capabilities,
    CompletedPart,
    InvalidObjectKey,
    MultipartUploadInfo,
    ObjectInfo,
    ObjectNotFound,
    ObjectStorage,
    SignedRequest,
    StorageError,
    StorageUnavailable,
    UploadSpec,
)
from pacs_ext.storage.instrumented import InstrumentedStorage, instrument, unwrap
from pacs_ext.storage.local.store import LocalStorage


class Counts:
    """Differences of the process's own metric samples since this object was made."""

    def __init__(self) -> None:
        self._start = self._now()

    @staticmethod
    def _now() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in REGISTRY.collect()
            if family.name.startswith("pacs_")
            for s in family.samples
        }

    def __call__(self, name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        return self._now().get(key, 0.0) - self._start.get(key, 0.0)

    def op(self, operation: str, outcome: str = "2xx") -> float:
        return self("pacs_storage_operations_total", operation=operation, outcome=outcome)


@pytest.fixture
def local(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "objects", b"k" * 32, "http://127.0.0.1:9", bucket="masks")


async def test_local_store_calls_are_counted_by_operation_and_outcome(
    local: LocalStorage, tmp_path: Path
) -> None:
    storage = InstrumentedStorage(local)
    counts = Counts()

    await storage.put_bytes("mask/1/1/a.png", b"abc", "image/png")
    await storage.put_bytes("mask/1/1/b.png", b"defg", "image/png")
    assert (await storage.head("mask/1/1/a.png")).size == 3
    assert await storage.get_bytes("mask/1/1/b.png") == b"defg"
    with pytest.raises(ObjectNotFound):
        await storage.head("mask/1/1/missing.png")
    with pytest.raises(ObjectNotFound):
        await storage.get_bytes("mask/1/1/missing.png")
    assert [o.key async for o in storage.list_prefix("mask/1/")] == [
        "mask/1/1/a.png",
        "mask/1/1/b.png",
    ]
    async for _ in storage.list_prefix("mask/1/"):
        break  # a caller that stops early still closes (and counts) the listing once
    md5 = base64.b64encode(hashlib.md5(b"abc").digest()).decode()
    signed = storage.sign_upload(UploadSpec("mask/1/1/c.png", "image/png", 3, md5), 60)
    assert signed.method == "PUT"
    assert storage.sign_download("mask/1/1/a.png", 60).method == "GET"
    with pytest.raises(InvalidObjectKey):
        storage.sign_upload(UploadSpec("mask/../x.png", "image/png", 3, md5), 60)
    await storage.delete_many(["mask/1/1/a.png"])
    assert await storage.delete_prefix("mask/1/") == 1
    await storage.ping()

    assert counts.op("PutObject") == 2
    assert counts.op("HeadObject") == 1
    assert counts.op("HeadObject", "4xx") == 1
    assert counts.op("GetObject") == 1
    assert counts.op("GetObject", "4xx") == 1
    assert counts.op("ListObjects") == 2
    assert counts.op("PresignPutObject") == 1
    assert counts.op("PresignPutObject", "4xx") == 1
    assert counts.op("PresignGetObject") == 1
    assert counts.op("DeleteObjects") == 2
    assert counts.op("Ping") == 1
    assert counts("pacs_signed_urls_total", method="PUT") == 1
    assert counts("pacs_signed_urls_total", method="GET") == 1
    for op, n in {"PutObject": 2, "HeadObject": 2, "ListObjects": 2, "DeleteObjects": 2}.items():
        assert counts("pacs_storage_operation_duration_seconds_count", operation=op) == n
    # Signing is pure CPU measured by bench/, not timed per URL.
    assert not counts("pacs_storage_operation_duration_seconds_count", operation="PresignPutObject")

    # Storage gone: the caller's error is storage's fault (5xx).
    (tmp_path / "objects").rename(tmp_path / "gone")
    with pytest.raises(StorageError):
        await storage.put_bytes("mask/1/1/d.png", b"x", "image/png")
    with pytest.raises(StorageError):
        await storage.ping()
    assert counts.op("PutObject", "5xx") == 1
    assert counts.op("Ping", "5xx") == 1


def test_attributes_and_backend_specific_members_come_from_the_backend(
    local: LocalStorage,
) -> None:
    storage = instrument(local)
    assert instrument(storage) is storage  # never counted twice
    assert unwrap(storage) is local
    assert isinstance(storage, ObjectStorage)
    assert (storage.name, storage.bucket, storage.capabilities) == (
        "local",
        "masks",
        Capabilities(),
    )
    # Explicit: a backend's own attributes are not reached through the wrapper.
    with pytest.raises(AttributeError):
        _ = storage.root  # type: ignore[attr-defined]


class MultipartStore(ObjectStorage):
    """Stands in for the S3 backend's interface: records calls, answers like S3 would."""

    name = "s3"
    capabilities = Capabilities(multipart=True, sse=True)

    def __init__(self, fail: bool = False) -> None:
        self.bucket = "pacs-masks"
        self.endpoint_url = "http://rgw.internal:7480"
        self.calls: list[tuple[Any, ...]] = []
        self.fail = fail

    def _call(self, *args: Any) -> None:
        self.calls.append(args)
        if self.fail:
            raise StorageUnavailable("connection refused")

    def _signed(self, method: str, key: str) -> SignedRequest:
        url = f"{self.endpoint_url}/{self.bucket}/{key}?X-Amz-Signature=abc"
        return SignedRequest(method, url, {}, datetime.now(UTC))

    def sign_upload(self, spec: UploadSpec, ttl_seconds: int) -> SignedRequest:
        return self._signed("PUT", spec.key)

    def sign_download(
        self, key: str, ttl_seconds: int, *, content_disposition: str | None = None
    ) -> SignedRequest:
        return self._signed("GET", key)

    async def list_prefix(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        self._call("list_prefix", prefix)
        yield ObjectInfo(prefix + "a", 1, "0" * 32)

    async def head(self, key: str) -> ObjectInfo:
        self._call("head", key)
        return ObjectInfo(key, 1, "0" * 32)

    async def get_bytes(self, key: str) -> bytes:
        self._call("get_bytes", key)
        return b""

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        self._call("put_bytes", key)

    async def delete_many(self, keys: Iterable[str]) -> None:
        self._call("delete_many", list(keys))

    async def create_multipart(self, key: str, content_type: str) -> str:
        self._call("create_multipart", key, content_type)
        return "upload-1"

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
        self.calls.append(("sign_upload_part", key, upload_id, part_number, size))
        return self._signed("PUT", f"{key}?partNumber={part_number}")

    async def complete_multipart(
        self, key: str, upload_id: str, parts: Sequence[CompletedPart]
    ) -> None:
        self._call("complete_multipart", key, upload_id, len(parts))

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        self._call("abort_multipart", key, upload_id)

    async def list_multipart_uploads(self, prefix: str) -> AsyncIterator[MultipartUploadInfo]:
        self._call("list_multipart_uploads", prefix)
        yield MultipartUploadInfo(prefix + "big", "upload-1")

    async def ping(self) -> None:
        self._call("ping")

    async def close(self) -> None:
        self.calls.append(("close",))


async def test_multipart_calls_reach_the_backend_and_are_counted() -> None:
    backend = MultipartStore()
    storage = InstrumentedStorage(backend)
    counts = Counts()
    assert storage.capabilities.multipart
    assert (storage.name, storage.bucket) == ("s3", "pacs-masks")

    assert await storage.create_multipart("mask/1/1/big.nii", "application/octet-stream") == (
        "upload-1"
    )
    part = storage.sign_upload_part("mask/1/1/big.nii", "upload-1", 2, 60, size=5 << 20)
    assert part.method == "PUT"
    await storage.complete_multipart("mask/1/1/big.nii", "upload-1", [CompletedPart(1, "e")])
    await storage.abort_multipart("mask/1/1/other.nii", "upload-2")
    uploads = [u async for u in storage.list_multipart_uploads("mask/")]
    assert uploads == [MultipartUploadInfo("mask/big", "upload-1")]
    await storage.close()

    assert [c[0] for c in backend.calls] == [
        "create_multipart",
        "sign_upload_part",
        "complete_multipart",
        "abort_multipart",
        "list_multipart_uploads",
        "close",
    ]
    assert backend.calls[1] == ("sign_upload_part", "mask/1/1/big.nii", "upload-1", 2, 5 << 20)
    for op in (
        "CreateMultipartUpload",
        "PresignUploadPart",
        "CompleteMultipartUpload",
        "AbortMultipartUpload",
        "ListMultipartUploads",
    ):
        assert counts.op(op) == 1, op
    assert counts("pacs_signed_urls_total", method="PUT") == 1


async def test_storage_unavailable_is_a_5xx_outcome() -> None:
    storage = InstrumentedStorage(MultipartStore(fail=True))
    counts = Counts()
    with pytest.raises(StorageUnavailable):
        await storage.create_multipart("k", "t")
    with pytest.raises(StorageUnavailable):
        [u async for u in storage.list_prefix("mask/")]
    with pytest.raises(StorageUnavailable):
        await storage.delete_many(["k"])
    assert counts.op("CreateMultipartUpload", "5xx") == 1
    assert counts.op("ListObjects", "5xx") == 1
    assert counts.op("DeleteObjects", "5xx") == 1
    assert counts.op("ListObjects") == 0


def _not_wrapped() -> list[str]:
    """Methods of the storage interface that InstrumentedStorage does not define itself."""
    interface = {
        name
        for klass in ObjectStorage.__mro__
        if klass is not object
        for name, value in vars(klass).items()
        if not name.startswith("_") and callable(value)
    }
    interface |= set(ObjectStorage.__abstractmethods__)
    return sorted(name for name in interface if name not in vars(InstrumentedStorage))


def test_every_method_of_the_interface_is_wrapped_and_measured() -> None:
    """Whoever adds a storage method must add it to the wrapper: nothing passes by magic."""
    assert _not_wrapped() == []


def test_a_method_added_to_the_interface_and_not_wrapped_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def copy_object(self: ObjectStorage, src: str, dst: str) -> None:
        raise NotImplementedError

    monkeypatch.setattr(
        ObjectStorage, "copy_object", abc.abstractmethod(copy_object), raising=False
    )
    monkeypatch.setattr(
        ObjectStorage,
        "__abstractmethods__",
        ObjectStorage.__abstractmethods__ | {"copy_object"},
    )
    assert _not_wrapped() == ["copy_object"]


async def test_list_parts_is_timed(monkeypatch: pytest.MonkeyPatch) -> None:
    async def backend_list_parts(self: ObjectStorage, key: str, upload_id: str) -> list[int]:
        if upload_id == "gone":
            raise ObjectNotFound(upload_id)
        return [1, 2]

    monkeypatch.setattr(MultipartStore, "list_parts", backend_list_parts, raising=False)
    storage: Any = InstrumentedStorage(MultipartStore())
    counts = Counts()
    assert await storage.list_parts("k", "upload-1") == [1, 2]
    with pytest.raises(ObjectNotFound):
        await storage.list_parts("k", "gone")
    assert counts.op("ListParts") == 1
    assert counts.op("ListParts", "4xx") == 1


def test_every_interface_member_is_delegated() -> None:
    public = {name for name in vars(ObjectStorage) if not name.startswith("_")}
    assert public >= {"name", "bucket", "capabilities", "create_multipart", "sign_upload_part"}
    assert public <= set(vars(InstrumentedStorage))
