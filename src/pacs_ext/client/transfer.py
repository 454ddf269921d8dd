"""PUT files to signed URLs: exactly the returned headers, retries with backoff, renewed URLs,
multipart parts; file reads happen in threads so the event loop never blocks on disk."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx

from ..core.clock import SYSTEM_CLOCK, Clock
from ..masks.schemas import PartTarget, UploadTarget
from .api import _describe, storage_message
from .errors import LocalFileError
from .expiry import Issued, has_expired, refused_as_expired
from .files import CHUNK, LocalFile, needs_part_md5s, part_size, read_range
from .lean_transport import LeanTransport
from .progress import TransferProgress
from .retry import RETRYABLE_STATUSES, RetryPolicy, retry_after_seconds
from .slots import Slots

# Bodies up to this size are read into memory in one go; larger ones are streamed.
STREAM_THRESHOLD = 8 * 1024 * 1024
# A renewed URL that expires again is renewed at most this often before the file fails.
MAX_RENEWALS = 3

Declare = Callable[[list[LocalFile]], Awaitable[list[UploadTarget]]]
# The target of one multipart file with its part URLs from part number `start` on (a page).
MoreParts = Callable[[LocalFile, int], Awaitable[UploadTarget]]


class FileUploadError(Exception):
    """One file could not be uploaded; the message says why (never the signed URL)."""


class StorageStalled(FileUploadError):
    """Storage answered none of the last PUTs in time, across all files: sending more would
    only wait out more timeouts. The upload stops; a rerun resumes it."""


class _Retry(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class _Expired(Exception):
    pass


@dataclass
class TransferStats:
    retries: int = 0
    renewed: int = 0
    files: int = 0
    bytes: int = 0


class Renewer:
    """Coalesces concurrent renewals into few `upload-urls` calls."""

    def __init__(
        self, declare: Declare, batch_size: int, stats: TransferStats, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self._declare = declare
        self._clock = clock
        self._batch_size = batch_size
        self._stats = stats
        self._pending: list[tuple[LocalFile, asyncio.Future[Issued]]] = []
        self._task: asyncio.Task[None] | None = None

    async def renew(self, f: LocalFile) -> Issued:
        fut: asyncio.Future[Issued] = asyncio.get_running_loop().create_future()
        self._pending.append((f, fut))
        if self._task is None:
            self._task = asyncio.create_task(self._flush())
        return await fut

    async def _flush(self) -> None:
        await asyncio.sleep(0.05)  # let the other workers whose URLs expired join in
        pending, self._pending, self._task = self._pending, [], None
        files = list({f.name: f for f, _ in pending}.values())
        results: dict[str, Issued] = {}
        error: Exception | None = None
        try:
            for batch in chunks(files, self._batch_size):
                for t in await self._declare(batch):
                    results[t.filename] = Issued(t, self._clock)
            self._stats.renewed += len(results)
        except Exception as exc:
            error = exc
        for f, fut in pending:
            if fut.done():
                continue
            if error is not None:
                fut.set_exception(FileUploadError(f"renewing its upload URL failed: {error}"))
            elif f.name in results:
                fut.set_result(results[f.name])
            else:
                fut.set_exception(FileUploadError("the server returned no renewed URL for it"))

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class Sender:
    """Sends files to their targets with at most `concurrency` PUTs in flight."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        retry: RetryPolicy,
        renewer: Renewer,
        progress: TransferProgress,
        stats: TransferStats,
        concurrency: int,
        more_parts: MoreParts | None = None,
        clock: Clock = SYSTEM_CLOCK,
        *,
        lean: LeanTransport | None = None,
    ) -> None:
        self._more_parts = more_parts
        self._clock = clock  # judges whether a URL has expired (storage's refusals aside)
        self._http = http
        # Bodies in memory go straight to the lean transport when the client has it.
        self._lean = lean
        self._timeouts = http.timeout.as_dict()
        self._agent = {"User-Agent": http.headers.get("user-agent", "pacs-ext-client")}
        self._retry = retry
        self._renewer = renewer
        self._progress = progress
        self._stats = stats
        self._slots = Slots(concurrency)
        # PUTs timed out in a row across all files, since the last one storage answered: two
        # rounds of every slot timing out is storage not answering, not a slow file.
        self._timeouts_in_a_row = 0
        self._stall_limit = max(2 * concurrency, 4)

    async def upload(self, f: LocalFile, issued: Issued) -> None:
        """Upload one file or raise FileUploadError; renews its URL when it has expired."""
        renewals = 0
        # Parts stored under an upload id: a renewal keeps the upload, so they are not resent.
        parts_done: dict[str, set[int]] = {}
        # Checked once: after a renewal we trust storage's refusal rather than our clock.
        if issued.expiring():
            issued = await self._renewer.renew(f)
            renewals += 1
        while True:
            try:
                await self._send(f, issued.target, parts_done)
                self._stats.files += 1
                self._stats.bytes += f.size
                f.body = None  # sent: the memory goes back
                self._progress.file_done(f.name)
                return
            except _Expired as exc:
                if renewals >= MAX_RENEWALS:
                    raise FileUploadError(
                        f"its upload URL expired again after {renewals} renewals ({exc}); "
                        "is this machine's clock right?"
                    ) from None
                self._progress.note(f"{f.name}: upload URL expired, renewing it")
                issued = await self._renewer.renew(f)
                renewals += 1
            except LocalFileError as exc:
                raise FileUploadError(str(exc)) from None

    async def _send(
        self, f: LocalFile, target: UploadTarget, parts_done: dict[str, set[int]]
    ) -> None:
        if not target.parts:
            if target.url is None:
                raise FileUploadError("the server returned a target without a URL")
            url, expires = target.url, target.expires_at
            await self._with_retries(
                f.name,
                lambda: self._put(url, target.headers, f.path, 0, f.size, expires, f.body),
            )
            return
        await self._multipart(f, target, parts_done.setdefault(target.upload_id or "", set()))

    async def _multipart(self, f: LocalFile, target: UploadTarget, done: set[int]) -> None:
        """PUT every part not yet stored, page after page of part URLs (the server signs
        at most a page per answer); the server completes the upload at `complete`."""
        while True:
            await self._page(f, target, done)
            assert target.parts is not None
            after = max(p.part_number for p in target.parts) + 1
            if not target.part_count or after > target.part_count:
                return
            if self._more_parts is None:
                raise FileUploadError("the server sent only some part URLs and no way to ask more")
            target = await self._more_parts(f, after)

    async def _page(self, f: LocalFile, target: UploadTarget, done: set[int]) -> None:
        if not target.parts or not target.part_size:
            raise FileUploadError("the server returned a multipart target without parts")
        part_size, expires = target.part_size, target.expires_at

        async def put_part(p: PartTarget) -> None:
            offset = (p.part_number - 1) * part_size
            await self._with_retries(
                f"{f.name} part {p.part_number}",
                lambda: self._put(p.url, p.headers, f.path, offset, p.size, expires),
            )
            done.add(p.part_number)

        tasks = [
            asyncio.create_task(put_part(p)) for p in target.parts if p.part_number not in done
        ]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _with_retries(self, what: str, op: Callable[[], Awaitable[None]]) -> None:
        attempt = 0
        while True:
            try:
                await op()
                return
            except _Retry as exc:
                attempt += 1
                if attempt >= self._retry.attempts:
                    raise FileUploadError(f"gave up after {attempt} attempts: {exc}") from None
                self._stats.retries += 1
                self._progress.note(f"{what}: {exc}; retrying")
                await asyncio.sleep(self._retry.delay(attempt, exc.retry_after))

    def _timed_out(self, exc: httpx.TimeoutException) -> None:
        self._timeouts_in_a_row += 1
        if self._timeouts_in_a_row >= self._stall_limit:
            raise StorageStalled(
                f"storage answered none of the last {self._timeouts_in_a_row} uploads in time "
                f"({_describe(exc)}): it seems stalled. Nothing is lost: run the same command "
                "again to resume"
            ) from None

    async def _put(
        self,
        url: str,
        headers: dict[str, str],
        path: Path,
        offset: int,
        length: int,
        expires_at: datetime,
        body: bytes | None = None,
    ) -> None:
        """PUT `length` bytes of `path` from `offset` (or `body`, the bytes hashed, when the
        hash kept them: a small file is read once)."""
        sent = [0]
        if not self._slots.try_take():
            await self._slots.take()
        try:
            content: bytes | AsyncIterator[bytes]
            if body is not None and offset == 0 and len(body) == length:
                content = body
            elif length <= STREAM_THRESHOLD:
                content = await asyncio.to_thread(read_range, path, offset, length)
            else:
                content = self._stream(path, offset, length, sent)
            try:
                # Exactly the signed headers: storage checks type, length and MD5 against them.
                if self._lean is not None and isinstance(content, bytes):
                    answer = await self._lean.send_bytes(
                        "PUT", url, {**self._agent, **headers}, content, self._timeouts
                    )
                    status = answer.status
                    self._timeouts_in_a_row = 0  # storage answers
                    if 200 <= status < 300 or status == 412:
                        self._progress.advance(length)
                        return
                    response = answer.response("PUT", url)
                else:
                    response = await self._http.put(url, content=content, headers=headers)
                    self._timeouts_in_a_row = 0  # storage answers
            except httpx.TransportError as exc:
                self._progress.advance(-sent[0])
                # Storage may drop the connection when it refuses a streamed body early.
                if has_expired(expires_at, clock=self._clock):
                    raise _Expired(f"{_describe(exc)} after the URL expired") from None
                if isinstance(exc, httpx.TimeoutException):
                    self._timed_out(exc)
                raise _Retry(_describe(exc)) from None
            except BaseException:  # cancelled (a sibling part failed): take the bytes back
                self._progress.advance(-sent[0])
                raise
        finally:
            self._slots.give()
        # 412: write-once storage already holds an object under this key (a retried PUT whose
        # first answer was lost, or a re-run): `complete` verifies what is stored.
        if 200 <= response.status_code < 300 or response.status_code == 412:
            if length <= STREAM_THRESHOLD:
                self._progress.advance(length)
            elif response.status_code == 412:
                self._progress.advance(length - sent[0])
            return
        self._progress.advance(-sent[0])
        reason = storage_message(response)
        if refused_as_expired(response, expires_at, self._clock):
            raise _Expired(reason)
        if response.status_code in RETRYABLE_STATUSES:
            raise _Retry(reason, retry_after_seconds(response))
        if "BadDigest" in reason:
            raise FileUploadError(
                f"its bytes differ from the MD5 computed before the upload (did the file "
                f"change while it was being uploaded?); storage refused them: {reason}"
            )
        raise FileUploadError(f"storage refused the upload: {reason}")

    async def _stream(
        self, path: Path, offset: int, length: int, sent: list[int]
    ) -> AsyncIterator[bytes]:
        fh = await asyncio.to_thread(open, path, "rb")
        try:
            await asyncio.to_thread(fh.seek, offset)
            left = length
            while left > 0:
                chunk = await asyncio.to_thread(fh.read, min(CHUNK, left))
                if not chunk:
                    raise LocalFileError(f"{path} is shorter than when it was hashed")
                left -= len(chunk)
                sent[0] += len(chunk)
                self._progress.advance(len(chunk))
                yield chunk
        finally:
            await asyncio.to_thread(fh.close)


# The server signs at most signed_url.max_urls_per_request (10,000 by default) URLs per
# request and at most a page of a multipart file's part URLs (1,000): batches stay within.
URLS_PER_REQUEST = 10_000
PART_PAGE = 1_000


def expected_urls(f: LocalFile) -> int:
    """URLs the server may sign for f in one answer (its first page if it goes in parts)."""
    if not needs_part_md5s(f.size):
        return 1
    return min(-(-f.size // (f.part_size or part_size(f.size))), PART_PAGE)


def chunks(items: Sequence[LocalFile], size: int) -> list[list[LocalFile]]:
    """Batches of at most `size` files whose URLs stay within URLS_PER_REQUEST."""
    out: list[list[LocalFile]] = []
    batch: list[LocalFile] = []
    urls = 0
    for f in items:
        n = expected_urls(f)
        if batch and (len(batch) >= size or urls + n > URLS_PER_REQUEST):
            out.append(batch)
            batch, urls = [], 0
        batch.append(f)
        urls += n
    if batch:
        out.append(batch)
    return out
