"""The SDK's storage transport (client/lean_transport.py) against a scripted HTTP server on a
loopback socket in this process: keep-alive reuse, chunked and close-delimited bodies, HEAD,
a connection closed while idle, and an answer that never comes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from pacs_ext.client.connections import RetryDroppedConnection
from pacs_ext.client.lean_transport import LeanTransport

Answer = Callable[[bytes], bytes | None]  # request head -> raw answer (None: close, no answer)
LIMITS = httpx.Limits(max_connections=8, keepalive_expiry=30)
TIMEOUTS = {"connect": 5.0, "read": 5.0, "write": 5.0, "pool": 5.0}


class Scripted:
    """Reads each request (head + Content-Length body), writes what `answer` returns."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []
        self.bodies: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                    if name.lower() == b"transfer-encoding":
                        length = -1
                body = await self._body(reader, length)
                self.requests.append(head)
                self.bodies.append(body)
                out = self.answer(head)
                if out is None:
                    break
                writer.write(out)
                await writer.drain()
                if b"connection: close" in out.lower():
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    @staticmethod
    async def _body(reader: asyncio.StreamReader, length: int) -> bytes:
        if length >= 0:
            return await reader.readexactly(length)
        out = b""
        while True:  # chunked
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                return out
            out += chunk[:-2]


async def serve(answer: Answer) -> tuple[Scripted, asyncio.Server, str]:
    scripted = Scripted(answer)
    server = await asyncio.start_server(scripted.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return scripted, server, f"http://127.0.0.1:{port}"


def ok(body: bytes = b"", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def test_puts_reuse_one_connection_and_send_the_url_as_signed() -> None:
    scripted, server, base = await serve(lambda head: ok())
    lean = LeanTransport(LIMITS)
    url = f"{base}/b/mask/1/2/0001_liver.png?X-Amz-Signature=ab%2Fcd&X-Amz-Date=20260101T000000Z"
    try:
        for n in range(5):
            answer = await lean.send_bytes(
                "PUT", url, {"Content-MD5": "x=="}, b"%d" % n * 100, TIMEOUTS
            )
            assert answer.status == 200
    finally:
        await lean.aclose()
        server.close()
    assert scripted.connections == 1
    first = scripted.requests[0].decode()
    assert first.startswith(
        "PUT /b/mask/1/2/0001_liver.png?X-Amz-Signature=ab%2Fcd&X-Amz-Date=20260101T000000Z "
    )
    assert f"Host: {base.removeprefix('http://')}\r\n" in first
    assert "Content-Length: 100\r\n" in first
    assert scripted.bodies == [b"%d" % n * 100 for n in range(5)]


async def test_a_connection_closed_while_idle_is_replaced_and_the_put_sent_once_more() -> None:
    # The server answers, then closes the connection without saying so: the next PUT is
    # written into a dead connection and gets no answer; it is sent once more on a new one.
    calls = [0]

    def answer(head: bytes) -> bytes | None:
        calls[0] += 1
        return ok() if calls[0] != 2 else None

    scripted, server, base = await serve(answer)
    lean = LeanTransport(LIMITS)
    try:
        first = await lean.send_bytes("PUT", f"{base}/a", {}, b"one", TIMEOUTS)
        second = await lean.send_bytes("PUT", f"{base}/b", {}, b"two", TIMEOUTS)
    finally:
        await lean.aclose()
        server.close()
    assert (first.status, second.status) == (200, 200)
    assert lean.retried == 1
    assert scripted.bodies == [b"one", b"two", b"two"]


async def test_a_fresh_connection_that_drops_is_an_error_not_a_retry() -> None:
    _, server, base = await serve(lambda head: None)
    lean = LeanTransport(LIMITS)
    try:
        with pytest.raises(httpx.RemoteProtocolError):
            await lean.send_bytes("PUT", f"{base}/a", {}, b"x", TIMEOUTS)
    finally:
        await lean.aclose()
        server.close()
    assert lean.retried == 0


async def test_chunked_close_delimited_and_head_answers_through_httpx() -> None:
    def answer(head: bytes) -> bytes | None:
        if head.startswith(b"HEAD"):
            return b'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: "e"\r\n\r\n'  # no body
        if b"/chunked" in head:
            chunks = b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
            return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks
        if b"/until-close" in head:
            return b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it"
        return ok(b"plain")

    scripted, server, base = await serve(answer)
    async with httpx.AsyncClient(transport=RetryDroppedConnection(LeanTransport(LIMITS))) as c:
        try:
            assert (await c.get(f"{base}/chunked")).content == b"abcde"
            assert (await c.head(f"{base}/x")).headers["etag"] == '"e"'
            assert (await c.get(f"{base}/plain")).content == b"plain"
            assert (await c.get(f"{base}/until-close")).content == b"all of it"
            streamed = await c.put(f"{base}/streamed", content=_chunks())
            assert streamed.status_code == 200
        finally:
            server.close()
    assert scripted.bodies[-1] == b"part1part2"


async def _chunks() -> AsyncIterator[bytes]:
    yield b"part1"
    yield b"part2"


async def test_no_answer_in_time_is_a_read_timeout() -> None:
    never = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await never.wait()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    lean = LeanTransport(LIMITS)
    try:
        with pytest.raises(httpx.ReadTimeout):
            await lean.send_bytes(
                "PUT", f"http://127.0.0.1:{port}/a", {}, b"", {**TIMEOUTS, "read": 0.1}
            )
    finally:
        never.set()
        await lean.aclose()
        server.close()


async def test_a_proxy_in_the_environment_turns_the_direct_path_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pacs_ext.client import PacsClient

    async with PacsClient("http://127.0.0.1:9", "t") as plain:
        assert plain.lean is not None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    async with PacsClient("http://127.0.0.1:9", "t") as proxied:
        assert proxied.lean is None  # PUTs go through httpx, which honours the proxy


def test_urls_are_cut_into_origin_host_and_target_whatever_came_before() -> None:
    lean = LeanTransport(LIMITS)
    cases = [
        (
            "http://s3.test:9000/b/k?X-Amz-Signature=a",
            ("http", "s3.test", 9000),
            "/b/k?X-Amz-Signature=a",
        ),
        ("http://s3.test:9000/b/k2#frag", ("http", "s3.test", 9000), "/b/k2"),
        # the previous origin as a prefix of the next one's: not mistaken for it
        ("http://s3.test/b/k", ("http", "s3.test", 80), "/b/k"),
        ("http://s3.test.example/b/k", ("http", "s3.test.example", 80), "/b/k"),
        ("http://s3.test:9000?x=1", ("http", "s3.test", 9000), "/?x=1"),
        ("https://user@s3.test/b/k", ("https", "s3.test", 443), "/b/k"),
        ("https://user@s3.test/b/k?a#b", ("https", "s3.test", 443), "/b/k?a"),
    ]
    for url, origin, target in cases:
        got = lean._split(url)
        assert (got[0], got[2]) == (origin, target), url
    assert lean._split("https://user@s3.test/x")[1] == "s3.test"  # no credentials in Host
