"""The admission gate (http/admission.py): API requests beyond server.max_active_requests wait
their turn in arrival order; nothing else waits, and a slot is given back however a request
ends."""

from __future__ import annotations

import asyncio
import json

import pytest
from starlette.types import Message, Receive, Scope, Send

from pacs_ext.app import create_app
from pacs_ext.core.config import Settings
from pacs_ext.http.admission import Admission


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_waiters_are_admitted_in_arrival_order_and_a_newcomer_never_overtakes() -> None:
    gate = asyncio.Semaphore(1)  # what Admission uses: the order is its promise
    order: list[str] = []
    await gate.acquire()  # held by "first"

    async def take(name: str) -> None:
        await gate.acquire()
        order.append(name)

    waiters = [asyncio.create_task(take(n)) for n in ("b", "c", "d")]
    await _settle()
    assert order == []

    # A slot given back goes to "b" even though "late" asks before "b" gets to run (before
    # Python 3.11.1 the newcomer could take it, and "b" would wait again).
    gate.release()
    late = asyncio.create_task(take("late"))
    await _settle()
    assert order == ["b"]
    for _ in range(3):
        gate.release()
        await _settle()
    assert order == ["b", "c", "d", "late"]
    await asyncio.gather(*waiters, late)


async def test_a_cancelled_waiter_takes_no_slot_with_it() -> None:
    gate = asyncio.Semaphore(1)
    await gate.acquire()
    cancelled = asyncio.create_task(gate.acquire())
    after = asyncio.create_task(gate.acquire())
    await _settle()
    cancelled.cancel()
    await _settle()
    assert cancelled.cancelled()
    gate.release()
    await asyncio.wait_for(after, 1)  # the slot went past the cancelled waiter
    gate.release()
    await asyncio.wait_for(gate.acquire(), 1)  # and only one slot exists: it is free again


async def test_a_waiter_cancelled_as_it_is_handed_the_slot_passes_it_on() -> None:
    gate = asyncio.Semaphore(1)
    await gate.acquire()
    first = asyncio.create_task(gate.acquire())
    second = asyncio.create_task(gate.acquire())
    await _settle()
    gate.release()  # hands the slot to `first`, which has not run yet
    first.cancel()
    await _settle()
    assert first.cancelled()
    await asyncio.wait_for(second, 1)


class _Held:
    """An inner ASGI app whose /api requests wait for `go` before they answer."""

    def __init__(self, *, streamed: bool = False, fail: bool = False) -> None:
        self.go = asyncio.Event()
        self.started: list[str] = []
        self.streamed = streamed
        self.fail = fail

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.started.append(scope["path"])
        if scope["path"].startswith("/api/"):
            if self.streamed:
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await self.go.wait()
                await send({"type": "http.response.body", "body": b"x"})
                return
            await self.go.wait()
            if self.fail:
                raise RuntimeError("boom")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def _request(app: Admission, path: str) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "headers": []}
    await app(scope, receive, send)
    return sent


async def test_api_requests_past_the_limit_wait_and_the_wait_is_recorded() -> None:
    inner = _Held()
    waits: list[float] = []
    app = Admission(inner, max_active=1, record_wait=waits.append)
    first = asyncio.create_task(_request(app, "/api/annotations/1"))
    await _settle()
    second = asyncio.create_task(_request(app, "/api/annotations/2"))
    await asyncio.sleep(0.05)
    assert inner.started == ["/api/annotations/1"]  # the second waits for a slot

    # Probes, metrics and the local store's transfers never wait behind API requests.
    for path in ("/health", "/ready", "/metrics", "/storage/mask/1/1/a.png"):
        sent = await asyncio.wait_for(_request(app, path), 1)
        assert sent[0]["status"] == 200

    inner.go.set()
    await asyncio.wait_for(asyncio.gather(first, second), 1)
    assert inner.started[-1] == "/api/annotations/2"
    assert len(waits) == 2
    assert waits[1] >= 0.04  # held back at least while we looked
    assert waits[0] < waits[1]


async def test_a_streamed_answer_gives_its_slot_back_when_it_starts() -> None:
    inner = _Held(streamed=True)
    app = Admission(inner, max_active=1)
    streaming = asyncio.create_task(_request(app, "/api/archive"))
    await _settle()
    # The first is still sending its body; the next one is served meanwhile.
    inner.go.clear()
    other = asyncio.create_task(_request(app, "/api/annotations/2"))
    await _settle()
    assert inner.started == ["/api/archive", "/api/annotations/2"]
    inner.go.set()
    await asyncio.wait_for(asyncio.gather(streaming, other), 1)


async def test_a_request_that_fails_gives_its_slot_back() -> None:
    inner = _Held(fail=True)
    app = Admission(inner, max_active=1)
    inner.go.set()
    with pytest.raises(RuntimeError):
        await _request(app, "/api/annotations/1")
    with pytest.raises(RuntimeError):
        await asyncio.wait_for(_request(app, "/api/annotations/2"), 1)
    assert inner.started == ["/api/annotations/1", "/api/annotations/2"]


async def test_no_limit_when_the_setting_is_zero() -> None:
    inner = _Held()
    app = Admission(inner, max_active=0)
    tasks = [asyncio.create_task(_request(app, f"/api/annotations/{i}")) for i in range(50)]
    await _settle()
    assert len(inner.started) == 50
    inner.go.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 1)


def test_the_app_admits_by_the_setting(tmp_path: pytest.TempPathFactory) -> None:
    server = {"data_dir": str(tmp_path), "max_active_requests": 3, "admission_timeout_seconds": 7}
    app = create_app(Settings(server=server))
    admission = [m for m in app.user_middleware if m.cls is Admission]
    assert len(admission) == 1
    assert admission[0].kwargs["max_active"] == 3
    assert admission[0].kwargs["timeout"] == 7


def test_a_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="max_active_requests"):
        Settings(server={"max_active_requests": -1})


async def test_a_request_that_finds_no_slot_in_time_is_answered_503_untouched() -> None:
    inner = _Held()
    waits: list[float] = []
    app = Admission(inner, max_active=1, timeout=0.05, record_wait=waits.append)
    held = asyncio.create_task(_request(app, "/api/annotations/1"))
    await _settle()

    sent = await asyncio.wait_for(_request(app, "/api/annotations/2/mask-groups"), 1)
    assert sent[0]["status"] == 503
    headers = dict(sent[0]["headers"])
    assert headers[b"retry-after"] == b"1"
    body = json.loads(sent[1]["body"])
    assert body["error"] == "ServiceUnavailable"
    assert "server.admission_timeout_seconds" in body["detail"]
    assert inner.started == ["/api/annotations/1"]  # never reached the app
    assert waits[-1] >= 0.05

    inner.go.set()
    await asyncio.wait_for(held, 1)
    # The timed-out waiter took no slot with it.
    sent = await asyncio.wait_for(_request(app, "/api/annotations/3"), 1)
    assert sent[0]["status"] == 200
