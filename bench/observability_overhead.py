"""What measuring costs: µs per signed URL through InstrumentedStorage against the bare local
store, µs per item of a listing, and µs per request added by the ASGI middleware.

Prints figures; asserts nothing. Run: .venv/bin/python bench/observability_overhead.py
"""

from __future__ import annotations

import asyncio
import gc
import io
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from starlette.types import Receive, Scope, Send

from pacs_ext.core.config import LoggingSettings
from pacs_ext.core.logging import configure_logging
from pacs_ext.http.observability import RequestObservability
from pacs_ext.storage.base import ObjectStorage, UploadSpec
from pacs_ext.storage.instrumented import InstrumentedStorage
from pacs_ext.storage.local.store import LocalStorage

URLS = 20_000
OBJECTS = 2_000
REQUESTS = 20_000
RUNS = 7


def compare_us(
    bare: Callable[[], float], measured: Callable[[], float], per: int
) -> tuple[float, float]:
    """Best of RUNS interleaved runs each, in µs per item (the machine is shared: the minimum
    is the run least disturbed by others)."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(RUNS):
        for i, run in enumerate((bare, measured)):
            gc.collect()  # as timeit does: no run pays for the previous one's garbage
            gc.disable()
            try:
                times[i].append(run())
            finally:
                gc.enable()
    return min(times[0]) / per * 1e6, min(times[1]) / per * 1e6


def sign_many(storage: ObjectStorage) -> float:
    md5 = "A" * 22 + "=="
    specs = [UploadSpec(f"mask/1/1/{i:05d}.png", "image/png", 20_000, md5) for i in range(URLS)]
    started = time.perf_counter()
    for spec in specs:
        storage.sign_upload(spec, 600)
    return time.perf_counter() - started


async def list_all(storage: ObjectStorage) -> float:
    started = time.perf_counter()
    n = len([o async for o in storage.list_prefix("mask/1/1/")])
    assert n == OBJECTS
    return time.perf_counter() - started


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def requests(asgi: Callable[[Scope, Receive, Send], object], path: str) -> float:
    scope: Scope = {"type": "http", "method": "GET", "path": path, "headers": []}

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b""}

    async def send(message: object) -> None:
        return None

    started = time.perf_counter()
    for _ in range(REQUESTS):
        await asgi(scope, receive, send)  # type: ignore[misc]
    return time.perf_counter() - started


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        local = LocalStorage(Path(folder), b"k" * 32, "http://127.0.0.1:8000")
        wrapped = InstrumentedStorage(local)
        bare, measured = compare_us(lambda: sign_many(local), lambda: sign_many(wrapped), URLS)
        print(f"sign_upload, local store:        {bare:6.2f} µs/URL bare")
        print(f"sign_upload, InstrumentedStorage: {measured:6.2f} µs/URL (+{measured - bare:.2f})")

        for i in range(OBJECTS):
            (Path(folder) / "mask/1/1").mkdir(parents=True, exist_ok=True)
            (Path(folder) / f"mask/1/1/{i:05d}.png").write_bytes(b"x")
        bare, measured = compare_us(
            lambda: asyncio.run(list_all(local)), lambda: asyncio.run(list_all(wrapped)), OBJECTS
        )
        print(
            f"list_prefix of {OBJECTS} objects: {bare:6.2f} µs/object bare, "
            f"{measured:.2f} measured (+{measured - bare:.2f})"
        )

    # Log lines go to a sink: the cost of rendering them is counted, not of a terminal.
    sys.stderr = io.StringIO()
    configure_logging(LoggingSettings(format="json", level="INFO"))
    measured_app = RequestObservability(app)
    for path, what in (("/health", "no log line (debug)"), ("/api/x", "one JSON log line")):
        bare, measured = compare_us(
            lambda p=path: asyncio.run(requests(app, p)),
            lambda p=path: asyncio.run(requests(measured_app, p)),
            REQUESTS,
        )
        sys.stderr.seek(0)
        sys.stderr.truncate()
        print(
            f"ASGI request {path:8} trivial app: {bare:5.2f} µs bare, {measured:.2f} with the "
            f"middleware (+{measured - bare:.2f}: request id, metrics, {what})"
        )


if __name__ == "__main__":
    main()
