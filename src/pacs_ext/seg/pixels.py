"""Mask images ⇄ arrays: a pixel belongs to a label when its grey value is not zero."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


class PixelError(ValueError):
    """A mask image that cannot be read, or is not the size of its source image."""


def decode_mask(data: bytes, name: str, rows: int, columns: int) -> np.ndarray:
    """The mask as a (rows, columns) bool array."""
    try:
        with Image.open(io.BytesIO(data)) as opened:
            image: Image.Image = opened
            if image.mode not in ("1", "L", "I", "I;16", "P"):
                image = image.convert("L")
            array = np.asarray(image)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise PixelError(f"mask {name} is not a readable image ({exc})") from None
    if array.shape != (rows, columns):
        height, width = array.shape[:2]
        raise PixelError(
            f"mask {name} is {width}x{height}, its source image {columns}x{rows} (columns x rows)"
        )
    mask: np.ndarray = array != 0
    return mask


def encode_mask(mask: np.ndarray) -> bytes:
    """A bool array as an 8-bit greyscale PNG (0 outside, 255 inside)."""
    out = io.BytesIO()
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L").save(
        out, format="PNG", compress_level=1
    )
    return out.getvalue()
