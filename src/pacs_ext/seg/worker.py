"""The CPU part of an export, run in a worker process: decode the masks, place them, build
and encode the SEG.

Building a 350-frame SEG is seconds of pure Python (highdicom, pydicom) that holds the GIL:
run in a thread of the server, it kept `/health` waiting up to a second (p99 56-145 ms,
measured). In a process of its own it leaves the server's interpreter alone and takes the
machine's other core. Everything crossing over is plain data: the mapping (the source
series' attributes), the PNG bytes, and back the encoded SEG."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .build import Algorithm, Assembler, SegmentationType, SeriesInfo, build, encode
from .labels import LabelStyle
from .mapping import MaskMapping, MaskRef
from .pixels import decode_mask
from .warmup import warm_up

# PNG decoding (zlib, in Pillow) releases the GIL: two threads use both cores.
DECODE_THREADS = 2


@dataclass(slots=True)
class BuildRequest:
    mapping: MaskMapping
    segmentation_type: SegmentationType
    styles: list[LabelStyle]
    algorithm: Algorithm | None
    series: SeriesInfo
    compression: str = "none"  # "none" or "rle" (LABELMAP only)
    # One (mask, PNG bytes) per mask of the mapping.
    images: list[tuple[MaskRef, bytes]] = field(default_factory=list)


@dataclass(slots=True)
class BuildResult:
    data: bytes
    frames: int
    timings: dict[str, float]


def start() -> None:
    """Process initializer: pay highdicom's first use before the first export."""
    warm_up()


def build_seg(request: BuildRequest) -> BuildResult:
    """Decode, place, build and encode; PixelError or OverlapError name the mask at fault."""
    t = time.perf_counter()
    assembler = Assembler(request.mapping, request.segmentation_type)
    _place_all(assembler, request.images)
    request.images = []  # the PNGs are no longer needed: let them go before the build
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
            "decode": round(decoded - t, 3),
            "build": round(built - decoded, 3),
            "encode": round(encoded - built, 3),
        },
    )


def _place_all(assembler: Assembler, images: Sequence[tuple[MaskRef, bytes]]) -> None:
    rows, columns = assembler.mapping.rows, assembler.mapping.columns
    placing = threading.Lock()  # two labels of one LABELMAP frame: one at a time

    def one(item: tuple[MaskRef, bytes]) -> None:
        mask, data = item
        pixels = decode_mask(data, mask.filename, rows, columns)
        with placing:
            assembler.add(mask, pixels)

    with ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="seg-decode") as pool:
        # list(): the first PixelError or OverlapError is raised here.
        list(pool.map(one, images))
