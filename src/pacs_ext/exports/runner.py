"""The export runner: builds a SEG off the request, one export per slot.

Reading the masks (`dicom_seg.fetch_concurrency` at once), decoding them, the highdicom build
and encoding run in a worker process (seg/worker.py), STOW-RS in a thread, so the event loop
keeps answering requests. The SEG is written whole (one PUT) before
the row says `succeeded`; any failure ends the export `failed` with a reason.

Each slot (`dicom_seg.max_concurrent_exports`) has a worker process of its own, so the runner
knows what that process holds: a source series goes to it once, and later exports of the
series name it only. The process counts the masks it has placed in a shared integer, which
the runner turns into the export's progress (one row write per PROGRESS_EVERY at most)."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from ..core import gc_pause
from ..core.config import Settings
from ..dicomweb import DicomwebError, DicomwebTarget, StoredInstance
from ..models.base import utcnow
from ..models.seg_export import FAILED, LISTING, RUNNING, SUCCEEDED
from ..objects import outbox
from ..objects.keys import export_key
from ..seg.jobs import (
    SERIES_KEPT,
    Algorithm,
    BuildRequest,
    BuildResult,
    OverlapError,
    PixelError,
    ReadError,
    SegmentationType,
    SeriesInfo,
    SeriesMissing,
    run_build,
    start_worker,
)
from ..seg.labels import LabelStyle
from ..seg.mapping import MaskMapping, MaskRef, SourceSeries
from ..storage.base import ObjectStorage, StorageError
from . import repository as repo

log = structlog.get_logger(__name__)
T = TypeVar("T")
SessionFactory = Callable[[], AsyncSession]
PROGRESS_EVERY = 0.5  # seconds between progress writes while the worker reads masks
READ_SHARE = 0.8  # progress once every mask is read and placed (building: 0.8 to 0.9)
SERIES_CACHED = 8  # source series kept (a 350-slice series' attributes: a few MB)
# How long the worker's presigned GET URLs stay valid: the whole read and decode, with room.
LOCATION_TTL = 3600
# A running export writes its row this often while the worker builds, so that it never
# looks stale (repository.STALE_AFTER); stale ones are marked failed this often.
HEARTBEAT = 30.0
SWEEP_EVERY = 60.0


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
    # The source series for the worker processes, which keep it by this name: all of its
    # attributes (mapping.SourceSeries.json; `mapping.sources` hold only what placing needs),
    # and the mapping's order of its images.
    series_key: str = ""
    source_json: bytes = b""
    source_order: list[int] = field(default_factory=list)


@dataclass(eq=False)
class Slot:
    """One export at a time: its worker process (started on first use, again after a
    crash), the shared count of masks placed, and the source series that process holds."""

    index: int
    progress: Any  # multiprocessing RawValue("q"), written by the worker process
    procs: ProcessPoolExecutor | None = None
    holds: OrderedDict[str, None] = field(default_factory=OrderedDict)


def _load_dicom_stack() -> None:
    import pydicom.uid  # noqa: F401

    from ..dicomweb import client  # noqa: F401

    # pydicom's dictionaries live as long as the process (core/gc_pause.py).
    gc_pause.settle_once("dicom stack")


class ExportFailed(Exception):
    """An export that cannot finish; the message is what the export's `error` says."""


class ExportRunner:
    def __init__(self, maker: SessionFactory, storage: ObjectStorage, settings: Settings) -> None:
        self.maker = maker
        self.storage = storage
        self.key_prefix = settings.object_storage.key_prefix
        self.fetch_concurrency = settings.dicom_seg.fetch_concurrency
        self.context = multiprocessing.get_context("spawn")
        self.all_slots = [
            Slot(i, self.context.RawValue("q", 0))
            for i in range(settings.dicom_seg.max_concurrent_exports)
        ]
        self.free: asyncio.Queue[Slot] = asyncio.Queue()
        for slot in self.all_slots:
            self.free.put_nowait(slot)
        self.compression = settings.dicom_seg.compression
        # STOW-RS (blocking requests) runs in these threads.
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="seg-export")
        self.tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self.series_ttl = settings.dicom_seg.series_cache_seconds
        self._series: OrderedDict[tuple[str, str, str], tuple[float, SourceSeries, str]] = (
            OrderedDict()
        )
        self._series_count = 0
        if settings.dicomweb.url:  # exports can run: start a worker (it warms up) now
            self._processes(self.all_slots[0]).submit(int)
            # And load what the POST of an export uses here (dicomweb-client, requests,
            # pydicom: ~0.35 s), off the event loop, rather than in the first export's POST.
            threading.Thread(target=_load_dicom_stack, name="seg-preload", daemon=True).start()

    def cached_series(self, key: tuple[str, str, str]) -> SourceSeries | None:
        """A source series read for an earlier export, while still fresh: reading it costs
        the PACS a pass over every instance (0.5-1.8 s of Orthanc's for 350 slices), more
        than the rest of the POST."""
        found = self._series.get(key)
        if found is None or time.monotonic() - found[0] > self.series_ttl:
            return None
        self._series.move_to_end(key)
        return found[1]

    def keep_series(self, key: tuple[str, str, str], sources: SourceSeries) -> str:
        """Keep a series for later exports; returns the name the worker processes know it
        by: one per read from the PACS, the same while it is cached."""
        found = self._series.get(key)
        if found is not None and found[1] is sources:
            name = found[2]
        else:
            self._series_count += 1
            name = f"{self._series_count}:{key[2]}"
        if self.series_ttl > 0:
            self._series[key] = (time.monotonic(), sources, name)
            self._series.move_to_end(key)
            while len(self._series) > SERIES_CACHED:
                self._series.popitem(last=False)
        return name

    def start(self) -> None:
        """Sweep exports left running by a server that stopped: at start-up, then now and
        then (another process's may stop later)."""
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def sweep(self) -> int:
        async with self.maker() as session:
            count = await repo.fail_stale(session)
            await session.commit()
        if count:
            log.warning("seg_export.stale_failed", count=count)
        return count

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:  # the database may be away for a while: next round
                log.exception("seg_export.sweep_failed")
            await asyncio.sleep(SWEEP_EVERY)

    def submit(self, job: ExportJob) -> None:
        task = asyncio.get_running_loop().create_task(self.run(job), name=f"export-{job.export_id}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.pool.shutdown(wait=True, cancel_futures=True)
        for slot in self.all_slots:
            if slot.procs is not None:
                slot.procs.shutdown(wait=True, cancel_futures=True)

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def _set(self, export_id: int, **values: Any) -> None:
        async with self.maker() as session:
            await repo.set_fields(session, export_id, **values)
            await session.commit()

    async def run(self, job: ExportJob) -> None:
        slot = await self.free.get()
        try:
            job.started = time.perf_counter()
            try:
                await self._set(job.export_id, status=RUNNING, phase="building", progress=0.0)
                await self._run(job, slot)
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
        finally:
            self.free.put_nowait(slot)

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

    async def _run(self, job: ExportJob, slot: Slot) -> None:
        t = time.perf_counter()
        locations = await self._locations(job)
        job.timings["locations"] = round(time.perf_counter() - t, 3)
        request = BuildRequest(
            mapping=job.mapping,
            segmentation_type=job.segmentation_type,
            styles=job.styles,
            algorithm=job.algorithm,
            series=job.series,
            compression=self.compression,
            locations=locations,
            read_concurrency=self.fetch_concurrency,
            series_key=job.series_key,
            source_json=job.source_json,
            source_order=job.source_order,
        )
        del locations
        t = time.perf_counter()
        result = await self._build(job, slot, request)
        job.timings["build_process"] = round(time.perf_counter() - t, 3)
        job.timings.update(result.timings)
        data, frames = result.data, result.frames
        del result, request
        key = export_key(self.key_prefix, job.annotation_id, job.group_id, job.export_id)
        size = len(data)
        await self._set(
            job.export_id,
            phase="writing and storing" if job.store else "writing",
            progress=0.9,
            frames=frames,
        )
        # Both only read `data`: the bucket and the PACS get it at the same time. Each is
        # awaited to its end even when the other fails, so the SEG in storage is always
        # whole or absent, never cut off by a STOW-RS refusal (docs/dicom-seg.md).
        wrote, stowed = await asyncio.gather(
            self._write(job, key, data), self._stow(job, data), return_exceptions=True
        )
        del data
        if wrote is None:
            # In storage, whole: downloadable even when STOW-RS failed.
            await self._set(
                job.export_id,
                object_key=key,
                file_size=size,
                series_instance_uid=job.series.series_instance_uid,
                sop_instance_uid=job.series.sop_instance_uid,
            )
        for outcome in (wrote, stowed):
            if isinstance(outcome, BaseException):
                raise outcome
        job.timings["total"] = round(time.perf_counter() - job.started, 3)
        # Listed in metadata.json first, then `succeeded`: a client that sees it succeeded
        # finds it listed (unless storage refused the document: the janitor writes it).
        async with self.maker() as session:
            await repo.set_fields(
                session,
                job.export_id,
                phase=LISTING,
                progress=1.0,
                stored=job.store,
                finished_at=utcnow(),
                timings=job.timings,
            )
            await outbox.request(session, job.annotation_id, job.group_id)
            await session.commit()
        await outbox.flush_quietly(self.maker, self.storage, self.key_prefix, job.group_id)
        await self._set(job.export_id, status=SUCCEEDED, phase="done")

    async def _build(self, job: ExportJob, slot: Slot, request: BuildRequest) -> BuildResult:
        key = request.series_key
        if key and key in slot.holds:  # that process has the series: name it only
            slot.holds.move_to_end(key)
            try:
                return await self._build_once(job, slot, _without_sources(request))
            except SeriesMissing:
                slot.holds.pop(key, None)
        result = await self._build_once(job, slot, request)
        if key:
            slot.holds[key] = None
            slot.holds.move_to_end(key)
            while len(slot.holds) > SERIES_KEPT:  # as the worker process lets them go
                slot.holds.popitem(last=False)
        return result

    async def _build_once(self, job: ExportJob, slot: Slot, request: BuildRequest) -> BuildResult:
        """Run the build in the slot's process; while it runs, turn its count of placed masks
        into the row's progress (at most one write per PROGRESS_EVERY) and write the row at
        least every HEARTBEAT, so that it never looks stale."""
        loop = asyncio.get_running_loop()
        total = max(1, len(request.locations))
        slot.progress.value = 0
        try:
            running = loop.run_in_executor(self._processes(slot), run_build, request)
            shown, written = 0, time.monotonic()
            while True:
                done, _ = await asyncio.wait([running], timeout=PROGRESS_EVERY)
                if done:
                    return running.result()
                placed = min(int(slot.progress.value), total)
                if placed != shown:
                    shown = placed
                    await self._set(job.export_id, progress=round(READ_SHARE * placed / total, 3))
                    written = time.monotonic()
                elif time.monotonic() - written >= HEARTBEAT:
                    await self._set(job.export_id)  # alive: not stale
                    written = time.monotonic()
        except (ReadError, PixelError, OverlapError) as exc:
            raise ExportFailed(str(exc)) from None
        except BrokenProcessPool:
            # Killed (out of memory, most likely): the next export gets a new process.
            slot.procs = None
            slot.holds.clear()
            raise ExportFailed(
                "the worker process building the SEG died (out of memory?); start it again"
            ) from None

    def _processes(self, slot: Slot) -> ProcessPoolExecutor:
        if slot.procs is None:
            # spawn, not fork: the server has threads and an event loop a fork would copy.
            slot.procs = ProcessPoolExecutor(
                max_workers=1,
                mp_context=self.context,
                initializer=start_worker,
                initargs=(slot.progress,),
            )
        return slot.procs

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
        from ..dicomweb.client import store_encoded

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

    async def _locations(self, job: ExportJob) -> list[tuple[MaskRef, str]]:
        """Where the worker reads each mask. Signing 1,750 URLs took 0.04-0.16 s (timings
        `locations`, loaded machine): in a thread, so that the event loop keeps answering."""
        masks = job.mapping.masks
        await self.storage.prepare_signing()
        keys = [m.object_key for m in masks]
        where = await self._in_thread(self.storage.read_locations, keys, LOCATION_TTL)
        return list(zip(masks, where, strict=True))


def _without_sources(request: BuildRequest) -> BuildRequest:
    """The request without the source series (the worker process holds it)."""
    return replace(request, source_json=b"")
