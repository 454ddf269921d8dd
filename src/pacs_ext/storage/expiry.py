"""When a signed URL expires, as the answer reports it."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from .s3.sigv4 import MAX_EXPIRES


class Expiries:
    """now + ttl as an aware datetime, reused within a second (thousands of URLs per batch).

    Each signer holds its own (no process-wide cache); `clock` is injectable for tests."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._last: tuple[int, datetime] = (-1, datetime.min.replace(tzinfo=UTC))

    def at(self, ttl_seconds: int) -> datetime:
        if not 1 <= ttl_seconds <= MAX_EXPIRES:
            raise ValueError(f"ttl_seconds must be 1..{MAX_EXPIRES}: {ttl_seconds}")
        at = int(self._clock()) + ttl_seconds
        cached = self._last
        if cached[0] != at:
            cached = self._last = (at, datetime.fromtimestamp(at, UTC))
        return cached[1]
