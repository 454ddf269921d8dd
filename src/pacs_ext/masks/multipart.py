"""Multipart uploads for large files (S3-like stores only).

The declared-file row remembers the upload (upload_id, part_size). upload-urls renews the part
URLs of the same upload while the declaration is unchanged, so parts already sent are kept.
complete lists the parts, checks count and sizes, and completes the upload; an upload that is
gone while an object of the declared size exists was completed by an earlier complete whose
commit did not happen, which makes complete safe to repeat. Per-part MD5s, when declared, are
bound into each part URL (Content-MD5), so storage refuses a part whose body differs, and
complete compares the stored object's ETag with the one they make (verify.py): parts stored
in another order, or by a store that does not check Content-MD5, fail there.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, TypeVar

import structlog

from ..core.config import Settings
from ..core.errors import InvalidInput
from ..models import MaskGroupFile
from ..storage.base import (
    CompletedPart,
    MultipartUploadNotFound,
    ObjectNotFound,
    StorageError,
    multipart_etag,
)
from ..storage.errors import translate_storage_errors
from .schemas import MAX_PARTS, MIN_PART_SIZE, FileProblem, FileSpec
from .uploads import (
    FileRow,
    Target,
    multipart_target,
    part_sizes,
    single_target,
    uses_multipart,
)
from .verify import Verification

if TYPE_CHECKING:
    from ..context import Ctx

log = structlog.get_logger(__name__)

CONCURRENCY = 8  # storage calls in flight for one request (create/list/complete uploads)
MiB = 1024 * 1024
T = TypeVar("T")


def part_size_for(settings: Settings, spec: FileSpec, index: int) -> int:
    """The client's part size, else the configured one, grown to stay within 10,000 parts."""
    if spec.part_size is not None:
        if -(-spec.size // spec.part_size) > MAX_PARTS:
            raise InvalidInput(
                f"files[{index}].part_size: {spec.part_size} bytes makes more than {MAX_PARTS} "
                f"parts for {spec.size} bytes",
                extra={"field": f"files[{index}].part_size"},
            )
        return spec.part_size
    size = max(settings.object_storage.multipart_part_size, MIN_PART_SIZE)
    needed = -(-spec.size // MAX_PARTS)
    if needed > size:
        size = -(-needed // MiB) * MiB
    return size


def check_part_md5s(settings: Settings, specs: Sequence[FileSpec], uses: Sequence[bool]) -> None:
    """Part MD5s are what storage and complete can check, so a multipart file that declares
    an md5 must declare them too (a one-part file's part MD5 is its md5)."""
    for i, (spec, multipart) in enumerate(zip(specs, uses, strict=True)):
        if not multipart:
            continue
        part_size = part_size_for(settings, spec, i)
        count = len(part_sizes(spec.size, part_size))
        if spec.part_md5s is None:
            if spec.md5 is None:
                continue  # nothing declared about the bytes, nothing to check
            if count == 1:
                spec.part_md5s = [spec.md5]
                continue
            raise InvalidInput(
                f"files[{i}].part_md5s: required with md5 for a multipart upload ({spec.size} "
                f"bytes in {count} parts of {part_size}): storage checks each part, never the "
                "whole object, so send the base64 MD5 of each part (and part_size)",
                extra={"field": f"files[{i}].part_md5s"},
            )
        if len(spec.part_md5s) != count:
            raise InvalidInput(
                f"files[{i}].part_md5s: expected {count} part MD5s ({spec.size} bytes in parts "
                f"of {part_size}), got {len(spec.part_md5s)}",
                extra={"field": f"files[{i}].part_md5s"},
            )


def declared_etag(part_md5s: Sequence[str]) -> str:
    """The ETag storage gives an object made of parts with these (base64) MD5s."""
    return multipart_etag([base64.b64decode(m) for m in part_md5s])


def carry_over(ctx: Ctx, old: MaskGroupFile, row: FileRow, spec: FileSpec) -> str | None:
    """Keep `old`'s multipart upload in `row` when the file is declared again unchanged;
    otherwise return the upload id that is now stale (to abort), if any."""
    if not old.upload_id:
        return None
    same = (
        row.declares_same_bytes(old)
        and uses_multipart(ctx.settings, ctx.storage, spec.size)
        and (spec.part_size is None or spec.part_size == old.part_size)
        and (spec.part_md5s is None or declared_etag(spec.part_md5s) == old.multipart_etag)
    )
    if same:
        row.upload_id, row.part_size = old.upload_id, old.part_size
        return None
    return old.upload_id


async def abort_stale(ctx: Ctx, stale: Sequence[tuple[str, str]]) -> None:
    """Best effort: a stale upload left behind only costs storage until the bucket's
    lifecycle rule (abort incomplete uploads) removes it."""
    for key, upload_id in stale:
        try:
            await ctx.storage.abort_multipart(key, upload_id)
        except StorageError as exc:
            log.warning("multipart.abort_failed", object_key=key, error=str(exc)[:300])


async def multipart_targets(
    ctx: Ctx,
    rows: Sequence[FileRow],
    specs: Sequence[FileSpec],
    ttl: int,
    pages: Sequence[tuple[int, int] | None],
) -> list[Target]:
    settings, storage = ctx.settings, ctx.storage
    uses = [uses_multipart(settings, storage, s.size) for s in specs]
    check_part_md5s(settings, specs, uses)  # before any upload is created
    sizes = [
        part_size_for(settings, spec, i) if multipart else None
        for i, (spec, multipart) in enumerate(zip(specs, uses, strict=True))
    ]

    async def upload_for(row: FileRow, part_size: int) -> str:
        carried = row.upload_id
        if carried and row.part_size == part_size:
            try:
                await storage.list_parts(row.object_key, carried)
                return carried
            except MultipartUploadNotFound:
                pass  # aborted or expired meanwhile: start again
        return await storage.create_multipart(row.object_key, row.content_type)

    jobs: list[Callable[[], Awaitable[str]]] = []
    for row, part_size in zip(rows, sizes, strict=True):
        if part_size is not None:
            jobs.append(partial(upload_for, row, part_size))
    async with translate_storage_errors("starting multipart uploads"):
        upload_ids = iter(await _bounded(jobs))

    targets: list[Target] = []
    for row, spec, part_size, page in zip(rows, specs, sizes, pages, strict=True):
        if part_size is None:
            row.upload_id, row.part_size = None, None
            targets.append(single_target(storage, row, ttl))
            continue
        upload_id = next(upload_ids)
        row.upload_id, row.part_size = upload_id, part_size
        row.multipart_etag = declared_etag(spec.part_md5s) if spec.part_md5s else None
        targets.append(
            multipart_target(storage, row, upload_id, part_size, ttl, spec.part_md5s, page)
        )
    return targets


async def finish_multipart(ctx: Ctx, declared: Sequence[MaskGroupFile]) -> Verification:
    """Complete every finished multipart upload; the files that cannot be are returned as
    problems (missing parts, or an upload that no longer exists)."""
    problems = Verification()
    storage = ctx.storage

    async def finish(f: MaskGroupFile) -> None:
        assert f.upload_id is not None
        expected = part_sizes(f.size, f.part_size or f.size or 1)
        try:
            parts = {p.part_number: p for p in await storage.list_parts(f.object_key, f.upload_id)}
        except MultipartUploadNotFound:
            await _already_completed(f)
            return
        missing = [n for n in range(1, len(expected) + 1) if n not in parts]
        wrong = [n for n, p in parts.items() if n > len(expected) or p.size != expected[n - 1]]
        if missing:
            problems.missing.append(
                _problem(f, f"parts {_ranges(missing)} of {len(expected)} not uploaded")
            )
            return
        if wrong:
            problems.mismatched.append(
                _problem(f, f"parts {_ranges(wrong)} differ from the declared part sizes")
            )
            return
        chosen = [CompletedPart(n, parts[n].etag) for n in range(1, len(expected) + 1)]
        try:
            await storage.complete_multipart(f.object_key, f.upload_id, chosen)
        except MultipartUploadNotFound:  # a concurrent complete got there first
            await _already_completed(f)
            return
        f.upload_id = None

    async def _already_completed(f: MaskGroupFile) -> None:
        try:
            obj = await storage.head(f.object_key)
        except ObjectNotFound:
            problems.missing.append(
                _problem(
                    f,
                    "the multipart upload no longer exists (aborted or expired); "
                    "call upload-urls to start it again",
                )
            )
            return
        if obj.size != f.size:
            problems.mismatched.append(
                _problem(f, "size differs from the declared size", actual_size=obj.size)
            )
            return
        f.upload_id = None  # verified with the listing like every other file

    pending = [f for f in declared if f.upload_id]
    async with translate_storage_errors("complete (finishing multipart uploads)"):
        await _bounded([partial(finish, f) for f in pending])
    return problems


def merge(result: Verification, problems: Verification) -> None:
    """Report multipart problems instead of what the listing says about those files."""
    names = {p.filename for p in (*problems.missing, *problems.mismatched)}
    if not names:
        return
    result.ok = [(f, o) for f, o in result.ok if f.filename not in names]
    result.missing = [p for p in result.missing if p.filename not in names] + problems.missing
    result.mismatched = [
        p for p in result.mismatched if p.filename not in names
    ] + problems.mismatched


def _problem(f: MaskGroupFile, reason: str, actual_size: int | None = None) -> FileProblem:
    return FileProblem(
        filename=f.filename,
        object_key=f.object_key,
        reason=reason,
        expected_size=f.size,
        actual_size=actual_size,
    )


def _ranges(numbers: Sequence[int]) -> str:
    """[1, 2, 3, 7] → "1-3, 7"."""
    out: list[str] = []
    ordered = sorted(numbers)
    start = prev = ordered[0]
    for n in [*ordered[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ", ".join(out)


async def _bounded(jobs: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
    """Run jobs with at most CONCURRENCY in flight; results in order; first error raised."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def run(job: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await job()

    results = await asyncio.gather(*(run(j) for j in jobs), return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return [r for r in results if not isinstance(r, BaseException)]
