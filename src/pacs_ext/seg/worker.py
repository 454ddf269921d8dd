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

import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection, HTTPException, HTTPSConnection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydicom.dataset import Dataset

from . import rle
from .build import Assembler, build, encode
from .jobs import SERIES_KEPT, BuildRequest, BuildResult, ReadError, SeriesMissing
from .mapping import MaskRef, parse_sources
from .pixels import decode_mask
from .warmup import warm_up

# Reads wait on storage: each thread reads a mask, decodes it and places it, so decoding
# overlaps the other threads' reads and the storage stays busy.
READ_TIMEOUT = 60.0  # seconds without a byte from storage
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
        _place_all(assembler, request.locations, request.read_threads)
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
    assembler: Assembler, locations: Sequence[tuple[MaskRef, str]], threads: int
) -> None:
    rows, columns = assembler.mapping.rows, assembler.mapping.columns
    placing = threading.Lock()  # two labels of one LABELMAP frame: one at a time
    placed = 0
    reader = Reader()

    def one(item: tuple[MaskRef, str]) -> None:
        nonlocal placed
        mask, where = item
        pixels = decode_mask(reader.read(mask, where), mask.filename, rows, columns)
        with placing:
            assembler.add(mask, pixels)
            placed += 1
            _report(placed)  # one shared integer: the server reads it twice a second

    try:
        with ThreadPoolExecutor(threads, thread_name_prefix="seg-read") as pool:
            # list(): the first ReadError, PixelError or OverlapError is raised here.
            list(pool.map(one, locations))
    finally:
        reader.close()


class Reader:
    """Reads masks from files or presigned GET URLs, each thread over kept-alive connections
    of its own. http.client, not urllib3: half the CPU time a request (0.3 ms against 0.56 ms,
    measured over 1,750 GETs from Ceph RGW), on two cores the storage needs too."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._opened: list[HTTPConnection] = []
        self._lock = threading.Lock()
        self._tls: ssl.SSLContext | None = None

    def read(self, mask: MaskRef, where: str) -> bytes:
        if not where.startswith(("http://", "https://")):
            try:
                return Path(where).read_bytes()
            except OSError as exc:
                raise ReadError(f"reading mask {mask.filename} failed: {exc.strerror}") from None
        url = urlsplit(where)
        target = f"{url.path or '/'}?{url.query}" if url.query else url.path or "/"
        for attempt in range(RETRIES + 1):
            if attempt > 1:  # the first retry at once: a kept-alive connection the storage closed
                time.sleep(BACKOFF * 2 ** (attempt - 2))
            connection = self._connection(url.scheme, url.netloc)
            try:
                connection.request("GET", target)
                response = connection.getresponse()
                data = response.read()
            except (OSError, HTTPException) as exc:
                self._drop(url.scheme, url.netloc)
                if attempt == RETRIES:
                    raise ReadError(
                        f"reading mask {mask.filename} failed: storage unreachable "
                        f"({type(exc).__name__})"
                    ) from None
            else:
                if response.will_close:
                    self._drop(url.scheme, url.netloc)
                if response.status == 200:
                    return data
                if response.status not in RETRY_STATUSES or attempt == RETRIES:
                    raise ReadError(
                        f"reading mask {mask.filename} failed: storage answered {response.status}"
                    )
        raise AssertionError("unreachable")

    def _connection(self, scheme: str, netloc: str) -> HTTPConnection:
        mine: dict[tuple[str, str], HTTPConnection] | None = getattr(self._local, "open", None)
        if mine is None:
            mine = self._local.open = {}
        connection = mine.get((scheme, netloc))
        if connection is None:
            if scheme == "https":
                if self._tls is None:
                    self._tls = ssl.create_default_context()
                connection = HTTPSConnection(netloc, timeout=READ_TIMEOUT, context=self._tls)
            else:
                connection = HTTPConnection(netloc, timeout=READ_TIMEOUT)
            mine[(scheme, netloc)] = connection
            with self._lock:
                self._opened.append(connection)
        return connection

    def _drop(self, scheme: str, netloc: str) -> None:
        connection = self._local.open.pop((scheme, netloc), None)
        if connection is not None:
            connection.close()

    def close(self) -> None:
        with self._lock:
            for connection in self._opened:
                connection.close()
            self._opened.clear()
