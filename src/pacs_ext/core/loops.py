"""The event loop for processes of our own that run many small requests (CLI transfers, the
SEG worker's reads)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (uvicorn[standard] brings it on Linux and
    macOS): a transfer's thousands of small requests cost about half the CPU on it. None:
    asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
