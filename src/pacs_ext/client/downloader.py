"""download_mask_group(): every verified mask of a group into a folder, checked by MD5.

Files already present with the right size and MD5 are kept (a re-run resumes); others are
fetched through signed GET URLs, written to a temporary name and renamed when verified.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import httpx

from ..core.schemas import MaskGroupStatus
from ..masks.schemas import MaskGroupRead, MaskRead
from .api import RAW_BYTES, PacsClient, _describe, storage_message
from .errors import ClientError, DownloadFailed, FileFailure
from .files import CHUNK
from .progress import TransferProgress
from .retry import RETRYABLE_STATUSES


@dataclass
class DownloadResult:
    group: MaskGroupRead
    files_total: int
    bytes_total: int
    files_downloaded: int
    bytes_downloaded: int
    files_skipped: int
    seconds: float


class _Failed(Exception):
    def __init__(self, reason: str, retry: bool, *, missing: bool = False) -> None:
        super().__init__(reason)
        self.retry = retry
        self.missing = missing


async def download_mask_group(
    client: PacsClient,
    annotation_id: int,
    group_id: int,
    dest: Path,
    *,
    concurrency: int = 16,
    progress: TransferProgress | None = None,
) -> DownloadResult:
    """Download the group's masks into `dest`; raises DownloadFailed naming what failed."""
    started = time.perf_counter()
    progress = progress or TransferProgress()
    group = await client.get_group(annotation_id, group_id)
    if group.status != MaskGroupStatus.COMPLETE:
        raise ClientError(
            f"mask group {group_id} is {group.status}: it has no verified masks to download yet"
        )
    masks = [m async for m in client.iter_masks(annotation_id, group_id)]
    for m in masks:
        # The server checks names; still, never write outside dest.
        if "/" in m.filename or "\\" in m.filename or m.filename.startswith("."):
            raise ClientError(f"refusing to write a file named {m.filename!r}")
    await asyncio.to_thread(dest.mkdir, parents=True, exist_ok=True)
    progress.start(len(masks), sum(m.file_size for m in masks))
    present = await asyncio.to_thread(_already_present, dest, masks)
    todo = [m for m in masks if m.id not in present]
    skipped = [m for m in masks if m.id in present]
    progress.skipped(len(skipped), sum(m.file_size for m in skipped))

    slots = asyncio.Semaphore(concurrency)
    failures: list[FileFailure] = []
    done = [0, 0]

    async def one(m: MaskRead) -> None:
        async with slots:
            try:
                await _fetch_with_retries(client, annotation_id, group_id, m, dest, progress)
            except _Failed as exc:
                failures.append(FileFailure(m.filename, str(exc), missing=exc.missing))
                return
            done[0] += 1
            done[1] += m.file_size
            progress.file_done(m.filename)

    await asyncio.gather(*(one(m) for m in todo))
    if failures:
        raise DownloadFailed(failures)
    return DownloadResult(
        group=group,
        files_total=len(masks),
        bytes_total=sum(m.file_size for m in masks),
        files_downloaded=done[0],
        bytes_downloaded=done[1],
        files_skipped=len(skipped),
        seconds=time.perf_counter() - started,
    )


def _already_present(dest: Path, masks: list[MaskRead]) -> set[int]:
    out = set()
    for m in masks:
        path = dest / m.filename
        try:
            if path.stat().st_size != m.file_size:
                continue
            if m.md5 is None or _md5_b64(path) == m.md5:
                out.add(m.id)
        except OSError:
            continue
    return out


def _md5_b64(path: Path) -> str:
    h = hashlib.md5()  # noqa: S324 - integrity check against the recorded MD5
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return base64.b64encode(h.digest()).decode()


async def _fetch_with_retries(
    client: PacsClient,
    annotation_id: int,
    group_id: int,
    m: MaskRead,
    dest: Path,
    progress: TransferProgress,
) -> None:
    attempt = 0
    while True:
        attempt += 1
        try:
            # A fresh signed URL each attempt: an expired one is simply replaced.
            signed = await client.download_url(annotation_id, group_id, m.id)
            await _fetch(client.storage, signed.url, m, dest, progress)
            return
        except _Failed as exc:
            if not exc.retry or attempt >= client.retry.attempts:
                raise
            progress.note(f"{m.filename}: {exc}; retrying")
            await asyncio.sleep(client.retry.delay(attempt))
        except ClientError as exc:
            raise _Failed(str(exc), retry=False) from None


_PART_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_BINARY", 0)


def _open_part(tmp: Path) -> BinaryIO:
    """A new .part file, never opened through a symlink planted at its name (which would
    overwrite what it points to): a stale regular .part of an earlier run is removed first,
    anything else there is refused."""
    try:
        fd = os.open(tmp, _PART_FLAGS, 0o666)
    except FileExistsError:
        if not stat.S_ISREG(os.lstat(tmp).st_mode):
            raise _Failed(
                f"{tmp} exists and is not a regular file (a symlink?): refusing to write "
                "through it; remove it and run again",
                retry=False,
            ) from None
        os.unlink(tmp)
        try:
            fd = os.open(tmp, _PART_FLAGS, 0o666)
        except FileExistsError:
            raise _Failed(f"{tmp} was created again meanwhile; refusing it", retry=False) from None
    return os.fdopen(fd, "wb")


async def _fetch(
    http: httpx.AsyncClient, url: str, m: MaskRead, dest: Path, progress: TransferProgress
) -> None:
    final = dest / m.filename
    tmp = dest / f".{m.filename}.part"
    digest = hashlib.md5()  # noqa: S324 - integrity check against the recorded MD5
    received = 0
    fh = await asyncio.to_thread(_open_part, tmp)
    try:
        try:
            # Mask bytes exactly as stored: never decoded (a Content-Encoding stored beside the
            # object would otherwise make httpx gunzip a PNG), so the MD5 check sees them.
            async with http.stream("GET", url, headers=RAW_BYTES) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise _Failed(
                        f"storage answered {storage_message(response)}",
                        retry=response.status_code in RETRYABLE_STATUSES
                        or response.status_code == 403,
                        missing=response.status_code == 404,
                    )
                async for chunk in response.aiter_raw(CHUNK):
                    digest.update(chunk)
                    received += len(chunk)
                    await asyncio.to_thread(fh.write, chunk)
                    progress.advance(len(chunk))
        except httpx.HTTPError as exc:
            raise _Failed(_describe(exc), retry=True) from None
        await asyncio.to_thread(fh.close)
        got = base64.b64encode(digest.digest()).decode()
        if received != m.file_size:
            raise _Failed(
                f"storage sent {received} bytes, the mask has {m.file_size}; not saved",
                retry=True,
            )
        if m.md5 is not None and got != m.md5:
            raise _Failed(
                f"MD5 of the bytes received ({got}) differs from the recorded {m.md5}; not saved",
                retry=True,
            )
        await asyncio.to_thread(os.replace, tmp, final)
    except BaseException:
        progress.advance(-received)
        raise
    finally:
        if not fh.closed:
            await asyncio.to_thread(fh.close)
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(os.unlink, tmp)
