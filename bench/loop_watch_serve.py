"""`pacs-ext serve` with an event-loop watchdog, for bench/complete_large.py --watch.

A task on the server's loop beats every 2 ms; a thread notes every gap over 50 ms (a stall),
with the process's CPU time during it: a stall with little CPU is the machine not running
the process (other jobs), one with a lot is the loop held by work. Full (generation 2)
garbage collections are noted with their duration. One JSON line each, to $LOOP_WATCH_OUT.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import threading
import time
from typing import Any

import uvicorn

from pacs_ext.cli import main

STALL = 0.05
OUT = os.environ["LOOP_WATCH_OUT"]
_beat = [time.monotonic()]
_gc_started = [0.0]


def _write(record: dict[str, Any]) -> None:
    with open(OUT, "a") as fh:
        fh.write(json.dumps(record) + "\n")


async def _heartbeat() -> None:
    while True:
        _beat[0] = time.monotonic()
        await asyncio.sleep(0.002)


def _watch() -> None:
    start = None
    cpu = 0.0
    while True:
        time.sleep(0.002)
        lag = time.monotonic() - _beat[0]
        if start is None and lag > STALL:
            start, cpu = _beat[0], time.process_time()
        elif start is not None and lag <= STALL:
            wall, used = _beat[0] - start, time.process_time() - cpu
            _write({"stall_ms": round(wall * 1000), "process_cpu_ms": round(used * 1000)})
            start = None


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _gc_started[0] = time.perf_counter()
    elif info["generation"] == 2:
        _write({"gc2_ms": round((time.perf_counter() - _gc_started[0]) * 1000)})


_serve = uvicorn.Server.serve


async def _watched_serve(self: uvicorn.Server, *args: Any, **kwargs: Any) -> None:
    beat = asyncio.get_running_loop().create_task(_heartbeat())
    threading.Thread(target=_watch, daemon=True).start()
    gc.callbacks.append(_on_gc)
    try:
        await _serve(self, *args, **kwargs)
    finally:
        beat.cancel()


uvicorn.Server.serve = _watched_serve  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.argv = ["pacs-ext", "serve"]
    main()
