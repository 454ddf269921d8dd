"""InstrumentedStorage: any ObjectStorage, with every call counted by S3 operation and outcome.

An explicit wrapper: one method per method of the interface, each measuring its operation
(signing counted, I/O counted and timed) and then calling the backend. Nothing is generated
or looked up at run time, so reading this class tells what is measured; a method added to
ObjectStorage must be added here too, and tests/observability/test_instrumented_storage.py
fails until it is. A backend's own attributes are not reachable through the wrapper: code
that needs the backend itself (the local store's routes) is handed it by the app.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import structlog

from ..core import metrics
from ..core.logging import strip_query
from .base import (
    ArchiveState,
    Capabilities,
    CompletedPart,
    InvalidObjectKey,
    MultipartUploadInfo,
    ObjectInfo,
    ObjectNotFound,
    ObjectStorage,
    PartInfo,
    SignedRequest,
    StorageAccessDenied,
    StoredFile,
    UploadSpec,
)

log = structlog.get_logger(__name__)

T = TypeVar("T")


def outcome_of(exc: BaseException) -> str:
    """The S3 status class an error stands for: the caller's fault (4xx) or storage's (5xx)."""
    if isinstance(exc, ObjectNotFound | StorageAccessDenied | InvalidObjectKey):
        return metrics.CLIENT_ERROR
    return metrics.SERVER_ERROR


class _Op:
    """Pre-bound metric children of one operation: signing thousands of URLs stays cheap, and
    every outcome's series exists from the start (increase() cannot see a series' first
    increment, so an error series born with the first error would hide that error)."""

    def __init__(self, operation: str, timed: bool = True) -> None:
        self.outcomes = {
            outcome: metrics.STORAGE_OPERATIONS.labels(operation=operation, outcome=outcome)
            for outcome in (metrics.OK, metrics.CLIENT_ERROR, metrics.SERVER_ERROR)
        }
        self.ok = self.outcomes[metrics.OK]
        self.duration = metrics.STORAGE_DURATION.labels(operation=operation) if timed else None

    def record(self, outcome: str, seconds: float | None = None) -> None:
        self.outcomes[outcome].inc()
        if self.duration is not None and seconds is not None:
            self.duration.observe(seconds)


class InstrumentedStorage(ObjectStorage):
    def __init__(self, wrapped: ObjectStorage) -> None:
        self.wrapped = wrapped
        self._ops = {
            name: _Op(name, timed=not name.startswith("Presign"))
            for name in (
                "PresignPutObject",
                "PresignGetObject",
                "PresignUploadPart",
                "ListObjects",
                "HeadObject",
                "GetObject",
                "PutObject",
                "DeleteObjects",
                "CreateMultipartUpload",
                "CompleteMultipartUpload",
                "AbortMultipartUpload",
                "ListMultipartUploads",
                "ListParts",
                "Ping",
                "RestoreObject",
            )
        }
        self._signed_put = metrics.SIGNED_URLS.labels(method="PUT")
        self._signed_get = metrics.SIGNED_URLS.labels(method="GET")

    # ---- attributes the interface declares, read from (and written to) the backend ------

    @property
    def name(self) -> str:
        return self.wrapped.name

    @name.setter
    def name(self, value: str) -> None:
        self.wrapped.name = value

    @property
    def bucket(self) -> str:
        return self.wrapped.bucket

    @bucket.setter
    def bucket(self, value: str) -> None:
        self.wrapped.bucket = value

    @property
    def capabilities(self) -> Capabilities:
        return self.wrapped.capabilities

    @capabilities.setter
    def capabilities(self, value: Capabilities) -> None:
        self.wrapped.capabilities = value

    def __repr__(self) -> str:
        return f"InstrumentedStorage({self.wrapped!r})"

    # ---- measuring ---------------------------------------------------------------------

    async def _timed(self, operation: str, call: Callable[[], Any]) -> Any:
        op = self._ops[operation]
        started = time.perf_counter()
        try:
            result = await call()
        except asyncio.CancelledError:
            raise  # neither a success nor storage's fault
        except BaseException as exc:
            op.record(outcome_of(exc), time.perf_counter() - started)
            raise
        op.record(metrics.OK, time.perf_counter() - started)
        return result

    def _signed(self, operation: str, call: Callable[[], SignedRequest]) -> SignedRequest:
        op = self._ops[operation]
        try:
            signed = call()
        except Exception as exc:
            op.record(outcome_of(exc))
            raise
        op.ok.inc()
        if signed.method == "GET":
            self._signed_get.inc()
        else:
            self._signed_put.inc()
        return signed

    async def _iterate(self, operation: str, source: AsyncIterator[T]) -> AsyncIterator[T]:
        """Yield from source, timing only the time spent waiting on storage, not the caller."""
        op = self._ops[operation]
        waited = 0.0
        outcome = metrics.OK
        iterator = source.__aiter__()
        try:
            while True:
                started = time.perf_counter()
                try:
                    item = await iterator.__anext__()
                except StopAsyncIteration:
                    waited += time.perf_counter() - started
                    break
                except asyncio.CancelledError:
                    outcome = ""
                    raise
                except BaseException as exc:
                    waited += time.perf_counter() - started
                    outcome = outcome_of(exc)
                    raise
                waited += time.perf_counter() - started
                yield item
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()
            if outcome:
                op.record(outcome, waited)

    # ---- signing (pure CPU: counted, not timed) ----------------------------------------

    def sign_upload(self, spec: UploadSpec, ttl_seconds: int) -> SignedRequest:
        return self._signed("PresignPutObject", lambda: self.wrapped.sign_upload(spec, ttl_seconds))

    def read_locations(self, keys: Sequence[str], ttl_seconds: int) -> list[str]:
        return self.wrapped.read_locations(keys, ttl_seconds)

    def sign_download(
        self,
        key: str,
        ttl_seconds: int,
        *,
        content_disposition: str | None = None,
        content_type: str | None = None,
    ) -> SignedRequest:
        signed = self._signed(
            "PresignGetObject",
            lambda: self.wrapped.sign_download(
                key,
                ttl_seconds,
                content_disposition=content_disposition,
                content_type=content_type,
            ),
        )
        # One per download request (uploads sign thousands: those are counted, not logged).
        log.info(
            "signed_url.issued",
            method="GET",
            key=key,
            url=strip_query(signed.url),
            expires_at=signed.expires_at.isoformat(),
        )
        return signed

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
        return self._signed(
            "PresignUploadPart",
            lambda: self.wrapped.sign_upload_part(
                key, upload_id, part_number, ttl_seconds, size=size, md5_b64=md5_b64
            ),
        )

    # ---- I/O ---------------------------------------------------------------------------

    def list_prefix(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        return self._iterate("ListObjects", self.wrapped.list_prefix(prefix))

    async def head(self, key: str) -> ObjectInfo:
        info: ObjectInfo = await self._timed("HeadObject", lambda: self.wrapped.head(key))
        return info

    async def get_bytes(self, key: str) -> bytes:
        data: bytes = await self._timed("GetObject", lambda: self.wrapped.get_bytes(key))
        return data

    async def archive_state(self, key: str) -> ArchiveState:
        state: ArchiveState = await self._timed(
            "HeadObject", lambda: self.wrapped.archive_state(key)
        )
        return state

    async def restore(self, key: str, days: int, tier: str) -> None:
        await self._timed("RestoreObject", lambda: self.wrapped.restore(key, days, tier))

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        await self._timed("PutObject", lambda: self.wrapped.put_bytes(key, data, content_type))

    async def put_file(
        self, key: str, path: Path, content_type: str, md5_b64: str | None = None
    ) -> StoredFile:
        stored: StoredFile = await self._timed(
            "PutObject", lambda: self.wrapped.put_file(key, path, content_type, md5_b64)
        )
        return stored

    async def delete_many(self, keys: Iterable[str]) -> None:
        await self._timed("DeleteObjects", lambda: self.wrapped.delete_many(keys))

    async def delete_prefix(self, prefix: str) -> int:
        # The backend's own way (a listing and DeleteObjects batches), counted as one delete.
        count: int = await self._timed("DeleteObjects", lambda: self.wrapped.delete_prefix(prefix))
        return count

    async def ping(self) -> None:
        await self._timed("Ping", self.wrapped.ping)

    async def close(self) -> None:
        await self.wrapped.close()

    async def prepare_signing(self) -> None:
        # Loads rotating credentials, no bucket request: passed through, not an S3 operation.
        await self.wrapped.prepare_signing()

    # ---- multipart ---------------------------------------------------------------------

    async def create_multipart(self, key: str, content_type: str) -> str:
        upload_id: str = await self._timed(
            "CreateMultipartUpload", lambda: self.wrapped.create_multipart(key, content_type)
        )
        return upload_id

    async def complete_multipart(
        self, key: str, upload_id: str, parts: Sequence[CompletedPart]
    ) -> None:
        await self._timed(
            "CompleteMultipartUpload",
            lambda: self.wrapped.complete_multipart(key, upload_id, parts),
        )

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        await self._timed(
            "AbortMultipartUpload", lambda: self.wrapped.abort_multipart(key, upload_id)
        )

    async def list_parts(self, key: str, upload_id: str) -> list[PartInfo]:
        parts: list[PartInfo] = await self._timed(
            "ListParts", lambda: self.wrapped.list_parts(key, upload_id)
        )
        return parts

    def list_multipart_uploads(self, prefix: str) -> AsyncIterator[MultipartUploadInfo]:
        return self._iterate("ListMultipartUploads", self.wrapped.list_multipart_uploads(prefix))


def instrument(storage: ObjectStorage) -> ObjectStorage:
    """Wrap storage once (wrapping a wrapper would count every call twice)."""
    return storage if isinstance(storage, InstrumentedStorage) else InstrumentedStorage(storage)


def unwrap(storage: ObjectStorage) -> ObjectStorage:
    return storage.wrapped if isinstance(storage, InstrumentedStorage) else storage
