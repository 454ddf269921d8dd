"""The export runner: builds a SEG off the request, one export per slot.

Storage reads run on the event loop (async, `dicom_seg.fetch_concurrency` at once); PNG
decoding, the highdicom build and encoding, and STOW-RS run in a small thread pool, so the
loop keeps answering requests. The SEG is written whole (one PUT) before the row says
`succeeded`; any failure ends the export `failed` with a reason."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from ..core.config import Settings
from ..dicomweb import DicomwebError, DicomwebTarget, StoredInstance, store_encoded
from ..models.base import utcnow
from ..models.seg_export import FAILED, RUNNING, SUCCEEDED
from ..objects import outbox
from ..objects.keys import export_key
from ..seg.build import Algorithm, Assembler, OverlapError, SegmentationType, SeriesInfo, build
from ..seg.build import encode as encode_seg
from ..seg.labels import LabelStyle
from ..seg.mapping import MaskMapping, MaskRef
from ..seg.pixels import PixelError, decode_mask
from ..seg.warmup import warm_up
from ..storage.base import ObjectStorage, StorageError
from . import repository as repo

log = structlog.get_logger(__name__)
T = TypeVar("T")
SessionFactory = Callable[[], AsyncSession]
PROGRESS_EVERY = 1.0  # seconds between progress writes


@dataclass(slots=True)
class ExportJob:
    export_id: int
    annotation_id: int
    group_id: int
    mapping: MaskMapping
    segmentation_type: SegmentationType
    styles: list[LabelStyle]
    algorithm: Algorithm | None
    series: SeriesInfo
    store: bool
    target: DicomwebTarget | None
    timings: dict[str, float] = field(default_factory=dict)
    started: float = 0.0  # perf_counter when it left the queue


def _warm_up() -> None:
    try:
        warm_up()
    except Exception:  # only an optimisation: the first export pays instead
        log.exception("seg_export.warm_up_failed")


class ExportFailed(Exception):
    """An export that cannot finish; the message is what the export's `error` says."""


class ExportRunner:
    def __init__(self, maker: SessionFactory, storage: ObjectStorage, settings: Settings) -> None:
        self.maker = maker
        self.storage = storage
        self.key_prefix = settings.object_storage.key_prefix
        self.fetch_concurrency = settings.dicom_seg.fetch_concurrency
        self.slots = asyncio.Semaphore(settings.dicom_seg.max_concurrent_exports)
        # Two threads decode while the loop fetches; more only contend for 2 cores here.
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="seg-export")
        self.tasks: set[asyncio.Task[None]] = set()
        if settings.dicomweb.url:  # exports can run: pay highdicom's first use now
            self.pool.submit(_warm_up)

    def submit(self, job: ExportJob) -> None:
        task = asyncio.get_running_loop().create_task(self.run(job), name=f"export-{job.export_id}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.pool.shutdown(wait=True, cancel_futures=True)

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def _set(self, export_id: int, **values: Any) -> None:
        async with self.maker() as session:
            await repo.set_fields(session, export_id, **values)
            await session.commit()

    async def run(self, job: ExportJob) -> None:
        async with self.slots:
            job.started = time.perf_counter()
            try:
                await self._set(job.export_id, status=RUNNING, phase="fetching", progress=0.0)
                await self._run(job)
            except asyncio.CancelledError:
                await self._fail(job, "the server stopped during the export; start it again")
                raise
            except ExportFailed as exc:
                await self._fail(job, str(exc))
            except Exception as exc:  # the export must end failed, with the cause logged
                log.exception("seg_export.crashed", export_id=job.export_id)
                await self._fail(job, f"unexpected error ({type(exc).__name__}; logged)")
            else:
                log.info("seg_export.succeeded", export_id=job.export_id, **job.timings)

    async def _fail(self, job: ExportJob, reason: str) -> None:
        log.warning("seg_export.failed", export_id=job.export_id, reason=reason[:300])
        try:
            await asyncio.shield(
                self._set(
                    job.export_id,
                    status=FAILED,
                    error=reason[:2000],
                    finished_at=utcnow(),
                    timings=job.timings,
                )
            )
        except Exception:  # the database is gone too: the read path reports it stale
            log.exception("seg_export.fail_not_recorded", export_id=job.export_id)

    async def _run(self, job: ExportJob) -> None:
        assembler = await self._fetch_and_decode(job)
        t = time.perf_counter()
        await self._set(job.export_id, phase="building", progress=0.8)
        seg = await self._in_thread(build, assembler, job.styles, job.algorithm, job.series)
        job.timings["build"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        data = await self._in_thread(encode_seg, seg)
        job.timings["encode"] = round(time.perf_counter() - t, 3)
        del assembler
        key = export_key(self.key_prefix, job.annotation_id, job.group_id, job.export_id)
        size, frames = len(data), int(seg.NumberOfFrames)
        del seg
        await self._set(
            job.export_id,
            phase="writing and storing" if job.store else "writing",
            progress=0.9,
            frames=frames,
        )
        # Both only read `data`: the bucket and the PACS get it at the same time.
        written = asyncio.ensure_future(self._write(job, key, data))
        stowed = asyncio.ensure_future(self._stow(job, data))
        try:
            await asyncio.gather(written, stowed)
        finally:
            for task in (written, stowed):
                task.cancel()
            if written.done() and not written.cancelled() and written.exception() is None:
                # In storage, whole: downloadable even when STOW-RS failed.
                await self._set(
                    job.export_id,
                    object_key=key,
                    file_size=size,
                    series_instance_uid=job.series.series_instance_uid,
                    sop_instance_uid=job.series.sop_instance_uid,
                )
        job.timings["total"] = round(time.perf_counter() - job.started, 3)
        async with self.maker() as session:
            await repo.set_fields(
                session,
                job.export_id,
                status=SUCCEEDED,
                phase="done",
                progress=1.0,
                stored=job.store,
                finished_at=utcnow(),
                timings=job.timings,
            )
            await outbox.request(session, job.annotation_id, job.group_id)
            await session.commit()
        await outbox.flush_quietly(self.maker, self.storage, self.key_prefix, job.group_id)

    async def _write(self, job: ExportJob, key: str, data: bytes) -> None:
        t = time.perf_counter()
        try:
            await self.storage.put_bytes(key, data, "application/dicom")
        except StorageError as exc:
            raise ExportFailed(f"writing the SEG to storage failed: {exc}") from None
        job.timings["write"] = round(time.perf_counter() - t, 3)

    async def _stow(self, job: ExportJob, data: bytes) -> None:
        if not job.store:
            return
        assert job.target is not None
        t = time.perf_counter()
        try:
            stored: Sequence[StoredInstance] = await self._in_thread(
                store_encoded, job.target, [data]
            )
        except DicomwebError as exc:
            raise ExportFailed(f"STOW-RS failed: {exc}") from None
        job.timings["stow"] = round(time.perf_counter() - t, 3)
        if not any(s.sop_instance_uid == job.series.sop_instance_uid for s in stored):
            raise ExportFailed("STOW-RS answered without the SEG's SOP Instance UID")

    async def _fetch_and_decode(self, job: ExportJob) -> Assembler:
        mapping = job.mapping
        assembler = await self._in_thread(Assembler, mapping, job.segmentation_type)
        masks = mapping.masks
        limit = asyncio.Semaphore(self.fetch_concurrency)
        done = 0
        last_write = time.monotonic()
        decode_seconds = 0.0
        t = time.perf_counter()
        rows, columns = mapping.rows, mapping.columns

        placing = threading.Lock()  # two labels of one LABELMAP frame: one at a time

        def decode_and_place(data: bytes, mask: MaskRef) -> float:
            # In the pool, not on the event loop: ~1 ms of numpy per 512x512 mask adds up.
            t0 = time.perf_counter()
            pixels = decode_mask(data, mask.filename, rows, columns)
            with placing:
                assembler.add(mask, pixels)
            return time.perf_counter() - t0

        async def one(mask: MaskRef) -> None:
            nonlocal done, last_write, decode_seconds
            async with limit:
                try:
                    data = await self.storage.get_bytes(mask.object_key)
                except StorageError as exc:
                    raise ExportFailed(f"reading mask {mask.filename} failed: {exc}") from None
                try:
                    # Not `decode_seconds += await ...`: that reads the sum before awaiting
                    # and loses what other masks added meanwhile.
                    seconds = await self._in_thread(decode_and_place, data, mask)
                except (PixelError, OverlapError) as exc:
                    raise ExportFailed(str(exc)) from None
            decode_seconds += seconds
            done += 1
            now = time.monotonic()
            if now - last_write >= PROGRESS_EVERY:
                last_write = now
                await self._set(job.export_id, progress=round(0.8 * done / len(masks), 3))

        tasks = [asyncio.ensure_future(one(m)) for m in masks]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
        job.timings["fetch_decode"] = round(time.perf_counter() - t, 3)
        job.timings["decode_cpu"] = round(decode_seconds, 3)
        return assembler
