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

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import urllib3

from . import rle
from .build import Algorithm, Assembler, SegmentationType, SeriesInfo, build, encode
from .labels import LabelStyle
from .mapping import MaskMapping, MaskRef
from .pixels import decode_mask
from .warmup import warm_up

# Reads wait on storage and PNG decoding (zlib, in Pillow) releases the GIL: reading and
# decoding in these threads keeps both cores and the storage busy.
READ_TIMEOUT = 60.0


class ReadError(Exception):
    """A mask that could not be read from storage (the message names it, never the URL)."""


@dataclass(slots=True)
class BuildRequest:
    mapping: MaskMapping
    segmentation_type: SegmentationType
    styles: list[LabelStyle]
    algorithm: Algorithm | None
    series: SeriesInfo
    compression: str = "rle"  # "none" or "rle" (LABELMAP only)
    # One (mask, where to read its PNG: a file path or a presigned GET URL) per mask.
    locations: list[tuple[MaskRef, str]] = field(default_factory=list)
    read_threads: int = 16


@dataclass(slots=True)
class BuildResult:
    data: bytes
    frames: int
    timings: dict[str, float]


def start() -> None:
    """Process initializer: the fast RLE encoder first, then pay highdicom's first use
    before the first export."""
    # urllib3 logs a retried request's whole URL: a presigned one's signature must not reach
    # the server's stderr (this process has no log configuration of its own).
    logging.getLogger("urllib3").setLevel(logging.CRITICAL)
    rle.install()
    warm_up()


def build_seg(request: BuildRequest) -> BuildResult:
    """Decode, place, build and encode; PixelError or OverlapError name the mask at fault."""
    t = time.perf_counter()
    rle.forget()
    assembler = Assembler(request.mapping, request.segmentation_type)
    _place_all(assembler, request.locations, request.read_threads)
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


def _place_all(
    assembler: Assembler, locations: Sequence[tuple[MaskRef, str]], threads: int
) -> None:
    rows, columns = assembler.mapping.rows, assembler.mapping.columns
    placing = threading.Lock()  # two labels of one LABELMAP frame: one at a time
    http = urllib3.PoolManager(
        maxsize=threads,
        timeout=urllib3.Timeout(total=READ_TIMEOUT),
        retries=urllib3.Retry(total=3, backoff_factor=0.2, status_forcelist=(500, 502, 503)),
    )

    def one(item: tuple[MaskRef, str]) -> None:
        mask, where = item
        pixels = decode_mask(_read(http, mask, where), mask.filename, rows, columns)
        with placing:
            assembler.add(mask, pixels)

    with ThreadPoolExecutor(threads, thread_name_prefix="seg-read") as pool:
        # list(): the first ReadError, PixelError or OverlapError is raised here.
        list(pool.map(one, locations))
    http.clear()


def _read(http: urllib3.PoolManager, mask: MaskRef, where: str) -> bytes:
    if not where.startswith(("http://", "https://")):
        try:
            return Path(where).read_bytes()
        except OSError as exc:
            raise ReadError(f"reading mask {mask.filename} failed: {exc.strerror}") from None
    try:
        response = http.request("GET", where, preload_content=True)
    except urllib3.exceptions.HTTPError as exc:
        raise ReadError(
            f"reading mask {mask.filename} failed: storage unreachable ({type(exc).__name__})"
        ) from None
    if response.status != 200:
        raise ReadError(f"reading mask {mask.filename} failed: storage answered {response.status}")
    return bytes(response.data)
