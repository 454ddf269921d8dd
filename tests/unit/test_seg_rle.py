"""The worker's RLE encoder for label maps: the same PackBits stream as pydicom's own, and
frames that pydicom's decoder reads back identical."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.pixels.decoders.rle import _rle_decode_frame
from pydicom.pixels.encoders.base import RLELosslessEncoder
from pydicom.pixels.encoders.native import _encode_row

from pacs_ext.seg import rle


def _rows() -> list[bytes]:
    rng = np.random.default_rng(7)
    rows = [bytes(512), bytes([3]) * 512, bytes([1, 2]) * 256, bytes([5]) * 129 + bytes(383)]
    for _ in range(200):  # runs of every length, literals between them
        parts = []
        while sum(map(len, parts)) < 512:
            value = int(rng.integers(0, 6))
            parts.append(bytes([value]) * int(rng.choice([1, 1, 2, 3, 127, 128, 129, 300])))
        rows.append(b"".join(parts)[:512])
    return rows


def test_rows_pack_as_pydicom_packs_them() -> None:
    for row in _rows():
        assert rle.encode_row(row) == _encode_row(row)


def test_frames_decode_back_identical_and_the_plugin_comes_first() -> None:
    rle.install()
    rle.install()  # twice: still once, still first
    assert next(iter(RLELosslessEncoder._available)) == rle.LABEL
    rng = np.random.default_rng(3)
    frame = np.zeros((64, 512), dtype=np.uint8)
    frame[10:40, 100:300] = 2
    frame[20:30, 50:60] = 5
    frame[50] = rng.integers(0, 4, 512)
    encoded = RLELosslessEncoder.encode(
        frame,
        rows=64,
        columns=512,
        samples_per_pixel=1,
        number_of_frames=1,
        bits_allocated=8,
        bits_stored=8,
        photometric_interpretation="MONOCHROME2",
        pixel_representation=0,
    )
    assert encoded == RLELosslessEncoder.encode(
        frame,
        encoding_plugin="pydicom",
        rows=64,
        columns=512,
        samples_per_pixel=1,
        number_of_frames=1,
        bits_allocated=8,
        bits_stored=8,
        photometric_interpretation="MONOCHROME2",
        pixel_representation=0,
    )
    decoded = np.frombuffer(_rle_decode_frame(encoded, 64, 512, 1, 8), dtype=np.uint8)
    assert np.array_equal(decoded.reshape(64, 512), frame)


def test_sixteen_bit_frames_fall_through_to_pydicom() -> None:
    rle.install()
    frame = np.full((4, 8), 300, dtype=np.uint16)
    kwargs = {
        "rows": 4,
        "columns": 8,
        "samples_per_pixel": 1,
        "number_of_frames": 1,
        "bits_allocated": 16,
        "bits_stored": 16,
        "photometric_interpretation": "MONOCHROME2",
        "pixel_representation": 0,
    }
    assert RLELosslessEncoder.encode(frame, **kwargs) == RLELosslessEncoder.encode(
        frame, encoding_plugin="pydicom", **kwargs
    )
    with pytest.raises(ValueError, match="8-bit"):
        rle.encode_frame(frame.tobytes(), type("R", (), {"bits_allocated": 16})())
