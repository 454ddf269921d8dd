"""Stored bytes are served inert: what a browser may do with an object it downloads.

Anyone who may upload chooses an object's bytes; a download must never run them as a page on
an origin that holds tokens (the local store answers from the API's own origin, the viewer's).
So content types come from an allow-list at declaration, and every download is answered with
`X-Content-Type-Options: nosniff`, `Content-Security-Policy: sandbox`, and as an attachment
unless it is a raster image. On S3 the signed GET pins the response headers
(`response-content-type`, `-encoding`, `-disposition`), whatever headers the object was stored
with.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from ..core.config import DEFAULT_ALLOWED_CONTENT_TYPES

FALLBACK_TYPE: Final = "application/octet-stream"
# Shown inline (an <img src> in the viewer); everything else is an attachment. No SVG: it is
# a document that runs scripts.
INLINE_TYPES: Final = frozenset({"image/png", "image/jpeg"})
# Mask bytes are served exactly as stored: never let a stored Content-Encoding make a client
# decode (and then fail the MD5 check of) what it receives.
IDENTITY: Final = "identity"
INERT_HEADERS: Final = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox",
}
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]")


def normalise(content_type: str) -> str:
    """The media type alone, lower-case ("Image/PNG; x=1" → "image/png")."""
    return content_type.split(";", 1)[0].strip().lower()


def allowed_types(allowed: Iterable[str]) -> frozenset[str]:
    """An allow-list normalised once, for checking many types against it."""
    return frozenset(normalise(a) for a in allowed)


def is_allowed(content_type: str, allowed: Iterable[str]) -> bool:
    return normalise(content_type) in allowed_types(allowed)


def served_type(content_type: str | None, allowed: Iterable[str] = ()) -> str:
    """The Content-Type a download is answered with: the recorded type when it is on the
    allow-list (older data may hold others), else application/octet-stream."""
    if not content_type:
        return FALLBACK_TYPE
    kind = normalise(content_type)
    allowed_set = {normalise(a) for a in allowed} or set(DEFAULT_ALLOWED_CONTENT_TYPES)
    return kind if kind in allowed_set else FALLBACK_TYPE


def disposition(content_type: str, key: str) -> str:
    """inline for raster images, else an attachment named after the key's last segment."""
    if normalise(content_type) in INLINE_TYPES:
        return "inline"
    name = _UNSAFE_FILENAME.sub("_", key.rsplit("/", 1)[-1]) or "download"
    return f'attachment; filename="{name}"'
