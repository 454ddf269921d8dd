"""RLE Lossless for label-map frames, made fast by what label maps are: rows repeat.

pydicom's own RLE encoder packs every row in Python: ~13 ms a 512x512 frame here, 4-5 s of
a 350-frame LABELMAP's build. Most rows of a label map are all background or repeat a row
seen before, so each distinct row is packed once and its bytes reused. The output is the
same PackBits stream (DICOM PS3.5 Annex G) any RLE decoder reads; frames this does not cover
(more than one byte per pixel or sample) fall through to pydicom's own encoder.

A pydicom encoder plugin (`install()`), first in line, in the worker process only."""

from __future__ import annotations

from struct import pack
from typing import Any

import numpy as np
from pydicom.pixels.encoders.base import RLELosslessEncoder
from pydicom.uid import RLELossless

ENCODER_DEPENDENCIES: dict[str, tuple[str, ...]] = {RLELossless: ()}
LABEL = "pacs-ext-rows"
ROWS_KEPT = 65536  # distinct rows remembered (each a few hundred bytes)
_rows: dict[bytes, bytes] = {}


def is_available(uid: str) -> bool:
    return uid == RLELossless


def install() -> None:
    """Put this encoder first; the others stay, after it, for what it does not cover."""
    encoder: Any = RLELosslessEncoder
    if LABEL in encoder._available:
        return
    others = list(encoder._available.items())
    for name, _ in others:
        encoder.remove_plugin(name)
    encoder.add_plugin(LABEL, (__name__, "encode_frame"))
    # Put back as they were (their functions, already imported), after this one.
    for name, function in others:
        encoder._available[name] = function


def forget() -> None:
    """Start an export with no rows remembered: what it costs does not depend on the last."""
    _rows.clear()


def encode_frame(src: bytes, runner: Any) -> bytes:
    if runner.bits_allocated != 8 or runner.samples_per_pixel != 1:
        raise ValueError("only 8-bit, one-sample frames (pydicom's encoder takes the others)")
    columns = runner.columns
    out = bytearray(pack("<2L", 1, 64))  # one segment, right after the 64-byte header
    out.extend(bytes(56))
    # Rows equal to the one above (most: background, or a shape's straight sides) are found
    # by numpy, so Python handles each run of equal rows once, not each of the 512 rows.
    frame = np.frombuffer(src, dtype=np.uint8).reshape(-1, columns)
    starts = [0, *(np.flatnonzero((frame[1:] != frame[:-1]).any(axis=1)) + 1).tolist()]
    for first, end in zip(starts, [*starts[1:], len(frame)], strict=True):
        row = frame[first].tobytes()
        packed = _rows.get(row)
        if packed is None:
            packed = encode_row(row)
            if len(_rows) >= ROWS_KEPT:
                _rows.clear()
            _rows[row] = packed
        out.extend(packed * (end - first))
    if len(out) % 2:
        out.append(0)  # segments are even in length
    return bytes(out)


def encode_row(row: bytes) -> bytes:
    """PackBits: a run of 2-128 equal bytes is (257 - n, byte); up to 128 others are
    (n - 1, bytes...)."""
    out = bytearray()
    literal = bytearray()

    def flush() -> None:
        for i in range(0, len(literal), 128):
            chunk = literal[i : i + 128]
            out.append(len(chunk) - 1)
            out.extend(chunk)
        literal.clear()

    # Runs of equal bytes, found by numpy: a label-map row has a handful, not 512.
    pixels = np.frombuffer(row, dtype=np.uint8)
    bounds = (np.flatnonzero(pixels[1:] != pixels[:-1]) + 1).tolist()
    for start, end in zip([0, *bounds], [*bounds, len(row)], strict=True):
        n, value = end - start, row[start]
        if n == 1:
            literal.append(value)
            continue
        flush()
        full, rest = divmod(n, 128)
        out.extend((129, value) * full)
        if rest > 1:
            out.extend((257 - rest, value))
        elif rest == 1:
            out.extend((0, value))  # as pydicom writes it: a one-byte literal
    flush()
    return bytes(out)
