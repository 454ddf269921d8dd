"""Copy planned files into storage with bounded concurrency; every copy checked by ETag/MD5."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..storage.base import (
    ChecksumMismatch,
    ObjectStorage,
    StorageAccessDenied,
    StorageError,
    StorageUnavailable,
)
from .plan import Present
from .tree import LocalFile, content_type_for

# After this many failures in a row from storage being unreachable or refusing us, stop
# starting new copies: the rest would fail the same way, one timeout at a time.
GIVE_UP_AFTER = 20


@dataclass
class CopyResult:
    copied: list[Present] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)
    bytes: int = 0
    gave_up: str | None = None


async def copy_files(
    storage: ObjectStorage,
    files: Sequence[LocalFile],
    prefix: str,
    concurrency: int,
    on_done: Callable[[int], None] | None = None,
) -> CopyResult:
    result = CopyResult()
    pending = iter(files)
    streak = 0

    async def one(f: LocalFile) -> None:
        nonlocal streak
        key = prefix + f.rel
        try:
            stored = await storage.put_file(key, f.path, content_type_for(f.name))
        except (StorageError, OSError) as exc:
            reason = str(exc) if isinstance(exc, StorageError) else f"cannot read: {exc}"
            result.failed.append((f.rel, reason))
            if isinstance(exc, StorageUnavailable | StorageAccessDenied):
                streak += 1
                if streak >= GIVE_UP_AFTER and result.gave_up is None:
                    result.gave_up = reason
            return
        streak = 0
        # A single-part ETag is the MD5 of what storage holds; a multipart one was compared
        # with the parts' MD5s by put_file.
        if "-" not in stored.etag and stored.etag.lower() != stored.md5:
            result.failed.append((f.rel, str(ChecksumMismatch("stored ETag differs from MD5"))))
            return
        result.copied.append(Present(f, key, stored.size, stored.md5, stored.etag))
        result.bytes += stored.size

    async def worker() -> None:
        for f in pending:
            if result.gave_up is not None:
                return
            await one(f)
            if on_done:
                on_done(f.size)

    await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    return result
