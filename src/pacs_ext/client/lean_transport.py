"""A lean HTTP/1.1 transport for httpx, used for object storage (signed-URL PUTs and GETs).

Why: httpx's own transport (httpcore over anyio) cost ~1.5 ms of client CPU per 20 KB PUT
here, more than the rest of an upload together. Its pool, for every request, walks every
connection and polls each idle socket (anyio's `extra` → getpeername → poll), so its cost grows
with the pool; reads and writes go through anyio's stream layers. This transport keeps idle
connections per origin on a stack, sends a request's head and a small body in one write and
parses the answer with httptools (llhttp, in C; uvicorn's parser): ~0.1 ms per request.

What it does not do, because signed-URL storage traffic needs none of it: HTTP/2, proxies
(httpx still mounts its own transport for proxies from the environment), `Expect: 100-continue`,
1xx answers, trailers. HEAD answers have no body and close their connection (llhttp cannot be
told that an answer belongs to a HEAD).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools
import httpx

from ..core.tcp import quickack, transport_socket
from .slots import Slots

Origin = tuple[str, str, int]
Timeouts = Mapping[str, float | None]
# A reused connection that the server closed before answering (connections.py's DROPPED).
_DROPPED = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
_SMALL_BODY = 64 * 1024  # bodies up to this size go out in the same write as the head


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection and the answer being read on it."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self._socket: object = None
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._wake: asyncio.Future[None] | None = None
        self._can_write: asyncio.Future[None] | None = None
        self._fresh_answer()

    def _fresh_answer(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.body: list[bytes] = []
        self.error: Exception | None = None

    # ---- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports have asyncio.Transport's methods but are not its subclasses.
        self.transport = cast(asyncio.Transport, transport)
        self._socket = transport_socket(transport)

    def data_received(self, data: bytes) -> None:
        quickack(self._socket)  # the rest of a GET's answer may wait for this ACK (core/tcp.py)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.error = httpx.RemoteProtocolError("storage answered with a protocol upgrade")
        except httptools.HttpParserError as exc:
            self.error = httpx.RemoteProtocolError(f"malformed answer from storage: {exc}")
        if self.error is not None:
            self.close()
        wake = self._wake  # _notify(), inline: this runs for every answer
        if wake is not None and not wake.done():
            wake.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.headers_done and not self.complete and not self._delimited():
            self.complete = True  # an answer without length or chunks ends with the connection
        if self._can_write is not None and not self._can_write.done():
            self._can_write.set_result(None)
        self._notify()

    def pause_writing(self) -> None:
        self._can_write = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._can_write is not None and not self._can_write.done():
            self._can_write.set_result(None)
        self._can_write = None

    # ---- httptools callbacks -------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        # Asked now: once the callback returns, llhttp resets and always answers False.
        self.keep_alive = self._parser.should_keep_alive()
        self.complete = True

    # ---- used by the transport -----------------------------------------------------------

    def _delimited(self) -> bool:
        names = {k.lower() for k, _ in self.headers}
        return b"content-length" in names or b"transfer-encoding" in names

    def _notify(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def wait(self, within: float | None) -> None:
        """Until more of the answer arrived, the connection closed, or `within` seconds passed
        (TimeoutError). One timer on the loop, not asyncio.timeout's context: this runs for
        every request."""
        loop = self.loop
        self._wake = wake = loop.create_future()
        timer = None if within is None else loop.call_later(within, _time_up, wake)
        try:
            await wake
        finally:
            self._wake = None
            if timer is not None:
                timer.cancel()

    @property
    def paused(self) -> bool:
        """Whether the transport's buffer is full: wait for drain() before writing more."""
        return self._can_write is not None

    async def drain(self, within: float | None) -> None:
        if self._can_write is not None:
            async with asyncio.timeout(within):
                await self._can_write

    def reusable(self) -> bool:
        return (
            self.complete
            and not self.lost
            and self.error is None
            and self.keep_alive
            and self.transport is not None
            and not self.transport.is_closing()
        )

    def write(self, head: bytes, body: bytes) -> None:
        assert self.transport is not None
        if len(body) <= _SMALL_BODY:
            # One system call for both (uvloop: one writev), without copying the body
            # into a new head + body object first (the stock loop joins them itself).
            self.transport.writelines((head, body))
        else:
            self.transport.write(head)
            self.transport.write(body)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.lost = True

    def start_request(self) -> None:
        # The parser is kept: llhttp starts over after each complete answer, and a connection
        # whose answer was not complete (or malformed) is never reused.
        self._fresh_answer()


def _has_length(headers: Mapping[str, str]) -> bool:
    # Signed headers name Content-Length as the server wrote it; any spelling counts.
    return "Content-Length" in headers or any(k.lower() == "content-length" for k in headers)


def _time_up(wake: asyncio.Future[None]) -> None:
    if not wake.done():
        wake.set_exception(TimeoutError())


class _Body(httpx.AsyncByteStream):
    """An answer's body as it arrives; the connection goes back to the pool when it is read."""

    def __init__(
        self,
        pool: LeanTransport,
        conn: _Connection,
        request: httpx.Request | None,
        read: float | None,
    ) -> None:
        self._pool = pool
        self._conn = conn
        self._request = request
        self._read_timeout = read
        self._released = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        while True:
            if conn.body:
                chunks, conn.body = conn.body, []
                for chunk in chunks:
                    yield chunk
                continue
            if conn.complete:
                return
            if conn.error is not None:
                raise _as_request_error(conn.error, self._request)
            if conn.lost:
                raise httpx.RemoteProtocolError(
                    "storage closed the connection before the answer's end", request=self._request
                )
            try:
                await conn.wait(self._read_timeout)
            except TimeoutError:
                raise httpx.ReadTimeout(
                    "no data from storage in time", request=self._request
                ) from None

    async def aclose(self) -> None:
        if not self._released:
            self._released = True
            self._pool.release(self._conn)


def _as_request_error(exc: Exception, request: httpx.Request | None) -> Exception:
    if isinstance(exc, httpx.RequestError) and request is not None:
        exc.request = request
    return exc


@dataclass(slots=True)
class Answer:
    """What send_bytes got back: status, raw headers, the whole body."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def response(self, method: str, url: str) -> httpx.Response:
        """As an httpx response (for the code that reads refusals)."""
        return httpx.Response(
            self.status,
            headers=self.headers,
            content=self.body,
            request=httpx.Request(method, url),
        )


class LeanTransport(httpx.AsyncBaseTransport):
    """Keep-alive HTTP/1.1 with at most `limits.max_connections` connections, idle ones
    forgotten after `limits.keepalive_expiry` seconds."""

    def __init__(self, limits: httpx.Limits, ssl_context: ssl.SSLContext | None = None) -> None:
        self._limits = limits
        self._slots = Slots(limits.max_connections or 1_000_000)
        self._idle: dict[Origin, list[_Connection]] = {}
        self._origins: dict[str, tuple[Origin, str]] = {}  # URL up to its path → parsed
        self._last_origin: tuple[str, Origin, str] | None = None  # _split's last, parsed
        self._ssl = ssl_context
        self._closed = False
        self.retried = 0  # requests send_bytes sent again after a dropped connection

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:  # made on first use: loading the CA bundle costs ~0.1 s
            self._ssl = httpx.create_ssl_context()
        return self._ssl

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts: Timeouts = request.extensions.get("timeout", {})
        url = request.url
        origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        if self._closed or not self._slots.try_take():
            await self._acquire(timeouts, request)
        conn: _Connection | None = None
        try:
            conn = self._checkout(origin)
            if conn is None:
                trace = request.extensions.get("trace")
                if trace is not None:  # connections.py tells fresh connections from reused ones
                    await trace("connection.connect_tcp.started", {"host": url.host})
                conn = await self._connect(origin, timeouts, request)
            conn.start_request()
            await self._send(conn, request, timeouts.get("write"))
            await self._await_head(conn, timeouts.get("read"), request)
            if request.method == "HEAD":
                conn.complete = True
                conn.close()  # llhttp would wait for the body the Content-Length announces
        except BaseException:
            if conn is not None:
                conn.close()
            self._slots.give()
            raise
        return httpx.Response(
            conn.status,
            headers=conn.headers,
            stream=_Body(self, conn, request, timeouts.get("read")),
            extensions={"http_version": b"HTTP/1.1"},
            request=request,
        )

    async def send_bytes(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes, timeouts: Timeouts
    ) -> Answer:
        """One request with a body in memory, without httpx's request and response models
        (their URL parsing and header merging cost ~0.2 ms of CPU per signed-URL PUT). The
        URL goes out as signed. Like connections.py: a reused connection dropped before any
        answer is tried once more, on a new connection."""
        origin, host_header, target = self._split(url)
        head = "".join(
            [
                f"{method} {target} HTTP/1.1\r\nHost: {host_header}\r\n",
                *[f"{k}: {v}\r\n" for k, v in headers.items()],
                "" if _has_length(headers) else f"Content-Length: {len(body)}\r\n",
                "\r\n",
            ]
        ).encode("latin-1")
        if self._closed or not self._slots.try_take():
            await self._acquire(timeouts, None)
        try:
            for attempt in (1, 2):
                conn = self._checkout(origin)
                reused = conn is not None
                try:
                    if conn is None:
                        conn = await self._connect(origin, timeouts, None)
                    conn.start_request()
                    conn.write(head, body)
                    if conn.paused:
                        await self._drained(conn, None, timeouts.get("write"))
                    if not conn.headers_done:
                        await self._await_head(conn, timeouts.get("read"), None)
                    if conn.complete:  # the usual PUT answer: its (empty) body came with it
                        data = b"".join(conn.body)
                    else:
                        reader = _Body(self, conn, None, timeouts.get("read"))
                        data = b"".join([chunk async for chunk in reader])
                except BaseException as exc:
                    if conn is not None:
                        conn.close()
                    if isinstance(exc, _DROPPED) and reused and attempt == 1:
                        self.retried += 1
                        continue
                    raise
                answer = Answer(conn.status, conn.headers, data)
                if conn.reusable() and not self._closed:
                    conn.idle_since = time.monotonic()
                    self._idle.setdefault(origin, []).append(conn)
                else:
                    conn.close()
                return answer
            raise AssertionError("unreachable")
        finally:
            self._slots.give()

    async def _acquire(self, timeouts: Timeouts, request: httpx.Request | None) -> None:
        """Wait for a connection slot (callers first try_take() one: no coroutine, no timer)
        or refuse when closed."""
        if self._closed:
            raise RuntimeError("the transport is closed")
        try:
            async with asyncio.timeout(timeouts.get("pool")):
                await self._slots.take()
        except TimeoutError:
            raise httpx.PoolTimeout("no free connection in time", request=request) from None

    @staticmethod
    async def _await_head(
        conn: _Connection, read: float | None, request: httpx.Request | None
    ) -> None:
        while not conn.headers_done:
            if conn.error is not None:
                raise _as_request_error(conn.error, request)
            if conn.lost:
                raise httpx.RemoteProtocolError(
                    "Server disconnected without sending a response.", request=request
                )
            try:
                await conn.wait(read)
            except TimeoutError:
                raise httpx.ReadTimeout("no answer from storage in time", request=request) from None

    def _split(self, url: str) -> tuple[Origin, str, str]:
        """(origin, Host header, request target) of a URL. Signed URLs of one upload share
        their origin: its parse is kept, only the path and query are cut per request."""
        last = self._last_origin
        if last is not None and url.startswith(last[0]) and url.startswith("/", len(last[0])):
            # The previous URL's origin, then a path: the usual case, cut in a few string
            # operations (the general cut below looks for each separator in turn).
            target = url[len(last[0]) :]
            if "#" in target:
                target = target.partition("#")[0]
            return last[1], last[2], target
        start = url.find("//") + 2
        end = len(url)
        for sep in "/?#":
            at = url.find(sep, start, end)
            if at >= 0:
                end = at
        prefix, target = url[:end], url[end:].partition("#")[0]
        if not target.startswith("/"):
            target = "/" + target
        known = self._origins.get(prefix)
        if known is None:
            parts = urlsplit(prefix)
            scheme, host = parts.scheme, parts.hostname or ""
            origin = (scheme, host, parts.port or (443 if scheme == "https" else 80))
            if len(self._origins) > 64:
                self._origins.clear()
            known = self._origins[prefix] = (origin, parts.netloc.rpartition("@")[2])
        self._last_origin = (prefix, known[0], known[1])
        return known[0], known[1], target

    def _checkout(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        if not idle:
            return None
        oldest = time.monotonic() - (self._limits.keepalive_expiry or 0.0)
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to be closed by now
            if not conn.lost and conn.idle_since > oldest and not conn.transport.is_closing():  # type: ignore[union-attr]
                return conn
            conn.close()
        return None

    async def _connect(
        self, origin: Origin, timeouts: Timeouts, request: httpx.Request | None
    ) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        tls = self._ssl_context() if scheme == "https" else None
        try:
            async with asyncio.timeout(timeouts.get("connect")):
                _, conn = await loop.create_connection(
                    lambda: _Connection(origin),
                    host,
                    port,
                    ssl=tls,
                    server_hostname=host if tls else None,
                )
        except TimeoutError:
            raise httpx.ConnectTimeout("connecting to storage timed out", request=request) from None
        except OSError as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__, request=request) from None
        return conn

    async def _send(self, conn: _Connection, request: httpx.Request, within: float | None) -> None:
        transport = conn.transport
        assert transport is not None
        target = request.url.raw_path
        head = b"".join(
            [request.method.encode(), b" ", target, b" HTTP/1.1\r\n"]
            + [b"%s: %s\r\n" % (k, v) for k, v in request.headers.raw]
            + [b"\r\n"]
        )
        chunked = request.headers.get("transfer-encoding", "").lower() == "chunked"
        stream = request.stream
        if isinstance(stream, httpx.ByteStream) and not chunked:
            conn.write(head, b"".join([part async for part in stream]))
        else:
            transport.write(head)
            assert isinstance(stream, httpx.AsyncByteStream)
            async for part in stream:
                if conn.lost:
                    raise httpx.WriteError("storage closed the connection", request=request)
                if chunked:
                    transport.write(b"%x\r\n%s\r\n" % (len(part), part) if part else b"")
                else:
                    transport.write(part)
                await self._drained(conn, request, within)
            if chunked:
                transport.write(b"0\r\n\r\n")
        await self._drained(conn, request, within)
        if conn.lost and not conn.headers_done and conn.error is None:
            raise httpx.WriteError("storage closed the connection", request=request)

    @staticmethod
    async def _drained(
        conn: _Connection, request: httpx.Request | None, within: float | None
    ) -> None:
        try:
            await conn.drain(within)
        except TimeoutError:
            raise httpx.WriteTimeout("storage took no data in time", request=request) from None

    def release(self, conn: _Connection) -> None:
        """An answer was read (or abandoned): keep its connection for the next request."""
        self._slots.give()
        if conn.reusable() and not self._closed:
            conn.idle_since = time.monotonic()
            self._idle.setdefault(conn.origin, []).append(conn)
        else:
            conn.close()

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
