"""At most `server.max_active_requests` API requests at work at once; the rest wait their
turn, first come, first served (pure ASGI middleware).

Why: run all at once, the requests in flight share the event loop, the database pool and
the database's CPU, and each takes about as long as all of them together; the pool also hands
each of a `complete`'s 3-4 checkouts to whoever asks next, so a request queues again between
its own transactions. Admitted in turn, the first of a burst finish at once and only the last
waits for it, and no request queues for a pooled connection (the slots are fewer than the
pool's connections). bench/load.py, 32 clients on PostgreSQL + RGW (docs/scaling.md,
"admission"): with 8 slots `complete`'s median halved and p99 stayed within 2.2x the median
for create and complete, against up to 3.2x with no limit.

Only /api requests take a slot: probes, metrics, the viewer page and the local store's
uploads and downloads never wait here. A slot is taken once the request's body has arrived
(BodyLimit, outside, reads it first: a slow sender holds no slot) and given back when the
response starts, so a streamed answer holds none either. The wait is part of the request's
time as the server reports it (Server-Timing, the latency histogram). A request that finds no
slot within `server.admission_timeout_seconds` is answered 503 with Retry-After, untouched
(the SDK retries it, even a create: a 503 promises nothing was done), rather than waiting
past its client's patience for work nobody will read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import send_json

API_PREFIX = "/api/"


class Admission:
    def __init__(
        self,
        app: ASGIApp,
        max_active: int,
        timeout: float = 30.0,
        record_wait: Callable[[float], None] | None = None,
    ) -> None:
        self.app = app
        self.timeout = timeout
        # asyncio.Semaphore hands a released slot to its first waiter, and a newcomer does
        # not take it meanwhile (Python 3.11.1 and later): first come, first served.
        self.gate = asyncio.Semaphore(max_active) if max_active > 0 else None
        self.record_wait = record_wait

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.gate is None or scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        gate = self.gate
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                await gate.acquire()
        except TimeoutError:
            self._waited(t0)
            await self._busy(send)
            return
        self._waited(t0)
        held = True

        def give_back() -> None:
            nonlocal held
            if held:
                held = False
                gate.release()

        async def send_and_release(message: Message) -> None:
            if message["type"] == "http.response.start":
                give_back()
            await send(message)

        try:
            await self.app(scope, receive, send_and_release)
        finally:
            give_back()

    def _waited(self, t0: float) -> None:
        if self.record_wait is not None:
            self.record_wait(time.perf_counter() - t0)

    async def _busy(self, send: Send) -> None:
        detail = (
            f"the server is busy: no request slot within {self.timeout:g} s "
            "(server.admission_timeout_seconds); retry"
        )
        payload: dict[str, object] = {"error": "ServiceUnavailable", "detail": detail}
        await send_json(send, 503, payload, [(b"retry-after", b"1")])
