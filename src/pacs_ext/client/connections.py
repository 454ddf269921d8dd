"""Keep-alive connections that never lose a request: the pool forgets idle connections before
servers close them, and a request that a reused connection dropped before any answer is sent
again, once, at once.

Servers and load balancers close idle connections after a while (uvicorn 5 s by default, this
server 75 s, AWS ALB 60 s, nginx 75 s). A client that sends on a connection at the moment the
server closes it gets no answer at all: httpx raises RemoteProtocolError ("Server disconnected
without sending a response"), ReadError (reset) or WriteError. Forgetting idle connections
early makes that rare; the retry covers the rest, for requests that are safe to repeat.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx

# Below every idle timeout we know of, uvicorn's 5 s default included, so the SDK is safe
# even with a server that keeps uvicorn's default; a new connection costs one handshake.
KEEPALIVE_EXPIRY = 4.0
# Request extension the SDK sets to say whether a request may be sent twice; without it the
# method decides (GET, HEAD, PUT, DELETE, OPTIONS), or an Idempotency-Key header.
REPEATABLE = "pacs_ext.repeatable"
_REPEATABLE_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
# What a connection dropped before the answer looks like; never a timeout (the request may be
# running on the server) and never a failed connect (that is the retry policy's business).
DROPPED = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)

Trace = Callable[[str, dict[str, Any]], Awaitable[None]]


def repeatable(request: httpx.Request) -> bool:
    """Whether sending the request a second time cannot do anything the first did not."""
    if not isinstance(request.stream, httpx.ByteStream):
        return False  # a streamed body cannot be sent again
    flag = request.extensions.get(REPEATABLE)
    if flag is not None:
        return bool(flag)
    return request.method in _REPEATABLE_METHODS or "idempotency-key" in request.headers


class RetryDroppedConnection(httpx.AsyncBaseTransport):
    """Wraps a transport: a repeatable request whose *reused* connection dropped before any
    answer is sent once more. A drop on a fresh connection is a real failure and is raised."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.retried = 0  # how many requests were sent again (tests and debugging read it)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        outer: Trace | None = request.extensions.get("trace")
        fresh = False

        async def trace(event: str, info: dict[str, Any]) -> None:
            nonlocal fresh
            if event.startswith(("connection.connect_tcp", "connection.connect_unix_socket")):
                fresh = True
            if outer is not None:
                await outer(event, info)

        request.extensions = {**request.extensions, "trace": trace}
        try:
            return await self.inner.handle_async_request(request)
        except DROPPED:
            if fresh or not repeatable(request):
                raise
        finally:
            request.extensions = _with_trace(request.extensions, outer)
        self.retried += 1
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _with_trace(extensions: dict[str, Any], trace: Trace | None) -> dict[str, Any]:
    out = {k: v for k, v in extensions.items() if k != "trace"}
    if trace is not None:
        out["trace"] = trace
    return out


def pooled_transport(limits: httpx.Limits) -> RetryDroppedConnection:
    """The SDK's transport: httpx's own, with its limits, behind the one retry."""
    return RetryDroppedConnection(httpx.AsyncHTTPTransport(limits=limits))
