"""upload_mask_group(): a directory (or files) → one verified mask group, resumable.

Pipeline: hash a batch (in a thread) → declare it (create the group, then `upload-urls`) →
PUT its files with bounded concurrency, while the next batch is hashed and declared.
Then `complete`. A re-run finds the group through the saved state (see state.py), declares
what changed, asks `complete` what is missing, and sends only that.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.schemas import MaskGroupStatus
from ..masks.schemas import MaskGroupRead, UploadTarget
from .api import PacsClient
from .errors import ApiError, ClientError, FileFailure, IncompleteUpload, UploadFailed
from .expiry import Issued
from .files import LocalFile, hash_files, scan
from .progress import TransferProgress
from .state import UploadState, default_state_path
from .transfer import (
    PART_PAGE,
    Declare,
    FileUploadError,
    Renewer,
    Sender,
    StorageStalled,
    TransferStats,
    chunks,
)

# `complete` → upload what it says is missing → `complete` again, at most this many times.
MAX_ROUNDS = 3
GAVE_UP = "not attempted: too many files in a row failed"
# The first batch is small: its files are hashed and declared (the group created) before the
# first PUT, and a 2,000-file upload would otherwise wait for 500 hashes and 500 signed URLs.
FIRST_BATCH = 32


@dataclass
class UploadResult:
    group: MaskGroupRead
    files_total: int
    bytes_total: int
    files_uploaded: int
    bytes_uploaded: int
    files_skipped: int  # already in storage from an earlier, interrupted run
    resumed: bool
    retries: int
    renewed_urls: int
    seconds: float
    state_file: Path | None


async def upload_mask_group(
    client: PacsClient,
    annotation_id: int,
    source: Path | Sequence[Path],
    *,
    group_name: str | None = None,
    model_name: str | None = None,
    version: str | None = None,
    modality: str | None = None,
    mask_type: str = "segmentation",
    description: str | None = None,
    sha256: bool = False,
    concurrency: int = 16,
    batch_size: int = 500,
    ttl_seconds: int | None = None,
    state_file: Path | None = None,
    resume: bool = True,
    progress: TransferProgress | None = None,
    follow_symlinks: bool = False,
) -> UploadResult:
    """Upload every file of `source` into one mask group of `annotation_id` and complete it.

    A file of a `source` folder that is a symlink to outside the folder is refused unless
    `follow_symlinks`.

    Resumable: with `resume` (the default) a re-run after an interruption continues the same
    group and sends only what is missing; `resume=False` always starts a new group.
    Raises UploadFailed (group left pending, re-run to resume), ApiError, LocalFileError,
    ServerUnreachable.
    """
    if concurrency < 1 or batch_size < 1:
        raise ValueError("concurrency and batch_size must be at least 1")
    started = time.perf_counter()
    files = await asyncio.to_thread(scan, source, follow_symlinks)
    path = state_file or default_state_path(source, client.server, annotation_id, files)
    run = _Run(client, annotation_id, files, sha256, concurrency, batch_size, ttl_seconds)
    run.progress = progress or TransferProgress()
    meta = {
        "group_name": group_name,
        "model_name": model_name,
        "version": version,
        "modality": modality,
        "mask_type": mask_type,
        "description": description,
    }
    state = UploadState.load(path) if resume else None
    group: MaskGroupRead | None = None
    if state is not None and state.matches(client.server, annotation_id, group_name):
        group = await _existing_group(client, state)
    run.progress.start(len(files), sum(f.size for f in files))
    try:
        if group is not None and state is not None:
            run.progress.note(f"resuming mask group {group.id}")
            group = await run.resume(state, group)
        else:
            group = await run.fresh(path, {k: v for k, v in meta.items() if v is not None})
    finally:
        await run.renewer_close()
    return UploadResult(
        group=group,
        files_total=len(files),
        bytes_total=sum(f.size for f in files),
        files_uploaded=run.stats.files,
        bytes_uploaded=run.stats.bytes,
        files_skipped=run.skipped,
        resumed=run.resumed,
        retries=run.stats.retries,
        renewed_urls=run.stats.renewed,
        seconds=time.perf_counter() - started,
        state_file=path,
    )


async def _existing_group(client: PacsClient, state: UploadState) -> MaskGroupRead | None:
    try:
        group = await client.get_group(state.annotation_id, state.group_id)
    except ApiError as exc:
        if exc.status_code == 404:
            return None
        raise
    return None if group.status == MaskGroupStatus.EXPIRED else group


class _Run:
    def __init__(
        self,
        client: PacsClient,
        annotation_id: int,
        files: list[LocalFile],
        sha256: bool,
        concurrency: int,
        batch_size: int,
        ttl_seconds: int | None,
    ) -> None:
        self.client = client
        self.annotation_id = annotation_id
        self.files = files
        self.sha256 = sha256
        self.concurrency = concurrency
        self.batch_size = batch_size
        self.ttl = ttl_seconds
        self.progress = TransferProgress()
        self.stats = TransferStats()
        self.skipped = 0
        self.resumed = False
        self.group_id = 0
        self._renewer: Renewer | None = None

    # ---- the two ways in -----------------------------------------------------------------

    async def fresh(self, state_path: Path, meta: dict[str, str]) -> MaskGroupRead:
        state: UploadState | None = None

        async def declare(batch: list[LocalFile]) -> list[UploadTarget]:
            nonlocal state
            if state is None:
                created = await self.client.create_group(
                    self.annotation_id,
                    [f.spec() for f in batch],
                    ttl_seconds=self.ttl,
                    **meta,
                )
                self.group_id = created.id
                state = UploadState(
                    state_path,
                    self.client.server,
                    self.annotation_id,
                    created.id,
                    meta.get("group_name"),
                )
                targets = created.uploads
            else:
                targets = await self._upload_urls(batch)
            state.record(batch, declared=True)
            await asyncio.to_thread(state.save)
            return targets

        failures = await self._pipeline(self.files, declare)
        if failures:
            raise UploadFailed(self.group_id, failures)
        return await self._finish()

    async def resume(self, state: UploadState, group: MaskGroupRead) -> MaskGroupRead:
        self.resumed = True
        self.group_id = group.id
        state.reuse_digests(self.files)
        await asyncio.to_thread(hash_files, self.files, self.sha256)
        names = {f.name for f in self.files}
        gone = sorted(n for n in state.files if n not in names)
        if gone:
            raise ClientError(
                f"mask group {group.id} declares {len(gone)} file(s) that are no longer here "
                f"(e.g. {gone[0]}); restore them, or start a new group"
            )
        changed = [f for f in self.files if state.needs_declaring(f)]
        if group.status == MaskGroupStatus.COMPLETE:
            if changed:
                raise ClientError(
                    f"mask group {group.id} is already complete with other files; "
                    "start a new group to upload these"
                )
            self.skipped = len(self.files)
            self.progress.skipped(len(self.files), sum(f.size for f in self.files))
            return group
        for batch in chunks(changed, self.batch_size):
            await self._upload_urls(batch)
            state.record(batch, declared=True)
        if changed:
            await asyncio.to_thread(state.save)
        return await self._finish(first_round=True)

    # ---- shared machinery ----------------------------------------------------------------

    async def _upload_urls(self, batch: list[LocalFile]) -> list[UploadTarget]:
        return await self.client.upload_urls(
            self.annotation_id, self.group_id, [f.spec() for f in batch], ttl_seconds=self.ttl
        )

    async def _more_parts(self, f: LocalFile, start: int) -> UploadTarget:
        """The next page of a multipart file's part URLs (its declaration unchanged, so the
        server keeps its upload and the parts stored)."""
        (target,) = await self.client.upload_urls(
            self.annotation_id,
            self.group_id,
            [f.spec()],
            ttl_seconds=self.ttl,
            parts={f.name: (start, PART_PAGE)},
        )
        return target

    def _renewer_for(self) -> Renewer:
        if self._renewer is None:
            self._renewer = Renewer(
                self._upload_urls, self.batch_size, self.stats, self.client.clock
            )
        return self._renewer

    async def renewer_close(self) -> None:
        if self._renewer is not None:
            await self._renewer.aclose()

    async def _finish(self, *, first_round: bool = False) -> MaskGroupRead:
        """`complete`; when it lists missing or mismatched files, send those and try again."""
        by_name = {f.name: f for f in self.files}
        for _ in range(MAX_ROUNDS):
            try:
                group = await self.client.complete(self.annotation_id, self.group_id)
            except IncompleteUpload as exc:
                wanted = list(dict.fromkeys(exc.missing + exc.mismatched))
                unknown = [n for n in wanted if n not in by_name]
                if unknown:
                    raise ClientError(
                        f"mask group {self.group_id} expects file(s) not in this upload: "
                        f"{', '.join(unknown[:5])}; start a new group"
                    ) from None
                todo = [by_name[n] for n in wanted]
                if exc.truncated:
                    # Only some problems were listed: which files storage holds is unknown, so
                    # every file is sent again (a 412 from write-once storage means "stored").
                    todo, wanted = list(self.files), list(by_name)
            else:
                if first_round:  # everything was uploaded before the interruption
                    self.skipped = len(self.files)
                    self.progress.skipped(len(self.files), sum(f.size for f in self.files))
                return group
            if first_round:
                # What `complete` did not list is already in storage: count it as done.
                first_round = False
                todo_names = set(wanted)
                rest = [f for f in self.files if f.name not in todo_names]
                self.skipped = len(rest)
                self.progress.skipped(len(rest), sum(f.size for f in rest))
            failures = await self._pipeline(todo, self._upload_urls)
            if failures:
                raise UploadFailed(self.group_id, failures)
        failures = [FileFailure(f.name, "storage still lacks it after re-sending") for f in todo]
        raise UploadFailed(self.group_id, failures)

    async def _pipeline(self, files: list[LocalFile], declare: Declare) -> list[FileFailure]:
        """Hash and declare batch after batch while workers PUT the files already declared."""
        queue: asyncio.Queue[tuple[LocalFile, Issued] | None] = asyncio.Queue(
            maxsize=max(self.batch_size, self.concurrency) * 2
        )
        failures: list[FileFailure] = []
        producer_error: list[BaseException] = []
        sender = Sender(
            self.client.storage,
            self.client.retry,
            self._renewer_for(),
            self.progress,
            self.stats,
            self.concurrency,
            self._more_parts,
            self.client.clock,
            lean=self.client.lean,
        )
        # Stop early when everything fails (storage down, CORS, bad clock): no point waiting
        # out the backoff of thousands of files.
        streak = [0]
        limit = max(2 * self.concurrency, 20)

        async def producer() -> None:
            try:
                head = min(self.batch_size, FIRST_BATCH)
                batches = chunks(files[:head], head) + chunks(files[head:], self.batch_size)
                for n, batch in enumerate(batches):
                    if streak[0] >= limit:
                        rest = [f for later in batches[n:] for f in later]
                        failures.extend(FileFailure(f.name, GAVE_UP) for f in rest)
                        break
                    await asyncio.to_thread(hash_files, batch, self.sha256)
                    targets = {t.filename: t for t in await declare(batch)}
                    for f in batch:
                        target = targets.get(f.name)
                        if target is None:
                            failures.append(FileFailure(f.name, "the server returned no URL"))
                        else:
                            await queue.put((f, Issued(target, self.client.clock)))
            except Exception as exc:  # re-raised below, once the workers have drained
                producer_error.append(exc)
            # Not in `finally`: when cancelled, the workers are cancelled too.
            for _ in range(self.concurrency):
                await queue.put(None)

        async def worker() -> None:
            while (item := await queue.get()) is not None:
                f, issued = item
                if streak[0] >= limit:
                    failures.append(FileFailure(f.name, GAVE_UP))
                    continue
                try:
                    await sender.upload(f, issued)
                    streak[0] = 0
                except StorageStalled as exc:
                    streak[0] = limit  # every other file would wait out the same timeouts
                    failures.append(FileFailure(f.name, str(exc)))
                except FileUploadError as exc:
                    streak[0] += 1
                    failures.append(FileFailure(f.name, str(exc)))
                except Exception as exc:  # a worker must not die: the producer waits on it
                    streak[0] += 1
                    failures.append(FileFailure(f.name, f"{type(exc).__name__}: {exc}"))

        await asyncio.gather(producer(), *(worker() for _ in range(self.concurrency)))
        if producer_error:
            raise producer_error[0]
        return failures
