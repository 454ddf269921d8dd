"""What an export sends to its worker process and gets back (seg/worker.py), and the errors
the worker names a mask by: plain data without highdicom, pydicom or numpy, so the server
imports these and loads the heavy libraries only in the worker process (and the client's
`import-seg`). A server that never exports never pays their start-up (~0.4 s of CPU)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .labels import LabelStyle
from .mapping import MaskMapping, MaskRef

SERIES_KEPT = 8  # source series kept in a worker process for later exports (a few MB each)

SegmentationType = Literal["LABELMAP", "BINARY"]


class OverlapError(ValueError):
    """Two labels claim one pixel: a LABELMAP holds one label per pixel (use BINARY)."""


@dataclass(frozen=True, slots=True)
class Algorithm:
    """The model that made the masks (AUTOMATIC segments); None: MANUAL."""

    name: str
    version: str


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    series_instance_uid: str
    sop_instance_uid: str
    series_description: str
    series_number: int = 9001
    software_version: str = "0"


class PixelError(ValueError):
    """A mask image that cannot be read, or is not the size of its source image."""


class ReadError(Exception):
    """A mask that could not be read from storage (the message names it, never the URL)."""


class SeriesMissing(Exception):
    """This process does not hold the source series the request names (a new process, or
    one that let it go): the server sends the request again with the series."""


@dataclass(slots=True)
class BuildRequest:
    # With a `series_key`, `mapping.sources` hold only what placing needs, and the source
    # series comes as `source_json` (SourceSeries.json), or not at all when this process
    # holds it already; `source_order`: the mapping's order of it. Without one, the
    # mapping's sources are complete.
    mapping: MaskMapping
    segmentation_type: SegmentationType
    styles: list[LabelStyle]
    algorithm: Algorithm | None
    series: SeriesInfo
    compression: str = "rle"  # "none" or "rle" (LABELMAP only)
    # One (mask, where to read its PNG: a file path or a presigned GET URL) per mask.
    locations: list[tuple[MaskRef, str]] = field(default_factory=list)
    read_concurrency: int = 16  # masks read at once
    series_key: str = ""
    source_json: bytes = b""
    source_order: list[int] = field(default_factory=list)


@dataclass(slots=True)
class BuildResult:
    data: bytes
    frames: int
    timings: dict[str, float]


def start_worker(progress: Any = None) -> None:
    """The worker process's initializer (seg/worker.py's `start`), importable without it."""
    from .worker import start

    start(progress)


def run_build(request: BuildRequest) -> BuildResult:
    """The worker process's job (seg/worker.py's `build_seg`), importable without it."""
    from .worker import build_seg

    return build_seg(request)
