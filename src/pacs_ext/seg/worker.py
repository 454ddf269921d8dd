"""The heavy part of an export, run in a worker process: read and decode the masks, place
them, build and encode the SEG.

Building a 350-frame SEG is seconds of pure Python (highdicom, pydicom) that holds the GIL:
run in a thread of the server, it kept `/health` waiting up to a second (p99 56-145 ms,
measured). In a process of its own it leaves the server's interpreter alone and takes the
machine's other core. The masks are read here too (presigned GET URLs, or files on the local
store): 1,750 GETs through the server's S3 client cost seconds of its event loop. Everything
crossing over is plain data: the mapping (the source series' attributes), where each mask
is, and back the encoded SEG."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from pydicom.dataset import Dataset

from ..client.lean_transport import LeanTransport
from ..core.loops import loop_factory
from . import rle
from .build import Assembler, build, encode
from .jobs import SERIES_KEPT, BuildRequest, BuildResult, ReadError, SeriesMissing
from .mapping import MaskRef, parse_sources
from .pixels import decode_mask
from .warmup import warm_up

# Reads wait on storage: many are kept in flight, and each mask is decoded and placed as it
# arrives, so decoding overlaps the reads and the storage stays busy.
READ_TIMEOUT = 60.0  # seconds without a byte from storage
TIMEOUTS = {"connect": 10.0, "read": READ_TIMEOUT, "write": READ_TIMEOUT}
RETRIES = 3  # a connection that fails or a 500/502/503 answer: tried again this often
RETRY_STATUSES = (500, 502, 503)
BACKOFF = 0.2  # seconds before the first retry, doubling

# Set in the worker process by start(): masks placed so far by the running export, a shared
# integer the server reads to report progress (exports/runner.py).
_progress: Any = None
# Source series sent by the server (every attribute, in the PACS's order), by key: a later
# export of one names it only.
_series: OrderedDict[str, list[Dataset]] = OrderedDict()


def start(progress: Any = None) -> None:
    """Process initializer: the fast RLE encoder first, then pay highdicom's first use
    before the first export. `progress`: a shared integer (multiprocessing.RawValue) this
    process counts the running export's placed masks in."""
    global _progress
    _progress = progress
    rle.install()
    warm_up()


def build_seg(request: BuildRequest) -> BuildResult:
    """Decode, place, build and encode; PixelError or OverlapError name the mask at fault."""
    t = time.perf_counter()
    _report(0)
    rle.forget()
    assembler = Assembler(request.mapping, request.segmentation_type)
    sources = _held_sources(request)
    with ThreadPoolExecutor(1, thread_name_prefix="seg-series") as parser:
        # A series sent now is parsed (~0.4 s for 350 instances) while the masks are read.
        parsing = parser.submit(parse_sources, request.source_json) if request.source_json else None
        _place_all(assembler, request.locations, request.read_concurrency)
    if parsing is not None:
        sources = parsing.result()
        _keep(request.series_key, sources)
    if sources is not None:
        assembler.use_sources([sources[i] for i in request.source_order])
    decoded = time.perf_counter()
    seg = build(
        assembler,
        request.styles,
        request.algorithm,
        request.series,
        compression=request.compression,
    )
    frames = int(seg.NumberOfFrames)
    del assembler
    built = time.perf_counter()
    data = encode(seg)
    encoded = time.perf_counter()
    return BuildResult(
        data=data,
        frames=frames,
        timings={
            "fetch_decode": round(decoded - t, 3),
            "build": round(built - decoded, 3),
            "encode": round(encoded - built, 3),
        },
    )


def _held_sources(request: BuildRequest) -> list[Dataset] | None:
    """The request's source series when this process holds it; None when the request
    brings it (or needs none: no series_key, the mapping's sources are complete)."""
    if not request.series_key or request.source_json:
        return None
    sources = _series.get(request.series_key)
    if sources is None:
        raise SeriesMissing(request.series_key)
    _series.move_to_end(request.series_key)
    return sources


def _keep(key: str, sources: list[Dataset]) -> None:
    if not key:
        return
    _series[key] = sources
    _series.move_to_end(key)
    while len(_series) > SERIES_KEPT:
        _series.popitem(last=False)


def _report(placed: int) -> None:
    if _progress is not None:
        _progress.value = placed


def _place_all(
    assembler: Assembler, locations: Sequence[tuple[MaskRef, str]], concurrency: int
) -> None:
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(_read_and_place(assembler, locations, concurrency))


async def _read_and_place(
    assembler: Assembler, locations: Sequence[tuple[MaskRef, str]], concurrency: int
) -> None:
    """Read, decode and place every mask, `concurrency` reads at a time, in one thread: an
    event loop keeps the reads in flight, and each mask is decoded and placed as it arrives.

    Threads did this before (one blocking read each, a lock around placing): the GIL made
    them take turns, and their switching cost more than the work. Over 1,750 masks from Ceph
    RGW, the worker spent 1.6-1.7 s of CPU with 16 or 32 threads and 0.7-0.9 s like this,
    and finished in 1.25-1.45 s instead of 1.8-2.1 s (measured here, decode and place
    included)."""
    rows, columns = assembler.mapping.rows, assembler.mapping.columns
    pending = iter(locations)
    placed = 0
    reader = Reader(concurrency)

    async def lane() -> None:
        nonlocal placed
        for mask, where in pending:  # one iterator shared by the lanes: each mask once
            data = await reader.read(mask, where)
            assembler.add(mask, decode_mask(data, mask.filename, rows, columns))
            placed += 1
            _report(placed)  # one shared integer: the server reads it twice a second

    lanes = [asyncio.ensure_future(lane()) for _ in range(max(1, min(concurrency, len(locations))))]
    try:
        # The first ReadError, PixelError or OverlapError is raised here.
        await asyncio.gather(*lanes)
    finally:
        for task in lanes:
            task.cancel()
        await asyncio.gather(*lanes, return_exceptions=True)
        await reader.close()


class Reader:
    """Reads masks from files or presigned GET URLs over kept-alive connections: the SDK's
    lean transport (client/lean_transport.py, httptools parsing in C), light on two cores
    the storage needs too. Retries a broken connection or a 500/502/503; errors name the
    mask, never the URL (its query is a signature)."""

    def __init__(self, connections: int = 16) -> None:
        self._transport: LeanTransport | None = None
        self._connections = connections

    async def read(self, mask: MaskRef, where: str) -> bytes:
        if not where.startswith(("http://", "https://")):
            # In a thread: a file that stalls (a network mount, a FIFO in the tests) must not
            # hold up the other reads.
            return await asyncio.to_thread(_read_file, mask, where)
        if self._transport is None:
            # The system's CA store (SSL_CERT_FILE honoured), as the storage client's.
            self._transport = LeanTransport(
                httpx.Limits(max_connections=self._connections, keepalive_expiry=30.0),
                ssl.create_default_context(),
            )
        for attempt in range(RETRIES + 1):
            if attempt > 1:  # the first retry at once: a kept-alive connection the storage closed
                await asyncio.sleep(BACKOFF * 2 ** (attempt - 2))
            try:
                answer = await self._transport.send_bytes("GET", where, {}, b"", TIMEOUTS)
            except (OSError, httpx.TransportError) as exc:
                if attempt == RETRIES:
                    raise ReadError(
                        f"reading mask {mask.filename} failed: storage unreachable "
                        f"({type(exc).__name__})"
                    ) from None
                continue
            if answer.status == 200:
                return answer.body
            if answer.status not in RETRY_STATUSES or attempt == RETRIES:
                raise ReadError(
                    f"reading mask {mask.filename} failed: storage answered {answer.status}"
                )
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self._transport is not None:
            await self._transport.aclose()
            self._transport = None


def _read_file(mask: MaskRef, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ReadError(f"reading mask {mask.filename} failed: {exc.strerror}") from None
