"""Storage readers acknowledge an answer's head at once (core/tcp.py).

Ceph RGW as shipped writes an answer's head and body apart, with Nagle's algorithm on: the
body waits for the head's ACK, which Linux delays up to 40 ms on a kept-alive connection.
This storage does what Nagle does there, without relying on timing of its own: after the
head it waits until the client has acknowledged it (TCP_INFO's unacknowledged count), and
records how long that took. A client that delays its ACK makes it wait the kernel's delayed
ACK timer (>= 40 ms); one that turns delayed ACK off answers in well under that.

The control (http.client, as the worker read before) shows that this machine delays ACKs,
so the assertions on our clients can fail."""

from __future__ import annotations

import socket
import statistics
import struct
import threading
import time
from collections.abc import Iterator
from http.client import HTTPConnection

import aiohttp
import httpx
import pytest

from pacs_ext.client.lean_transport import LeanTransport
from pacs_ext.seg import worker
from pacs_ext.seg.mapping import MaskRef
from pacs_ext.storage.s3.quickack import QuickAckConnector

pytestmark = pytest.mark.skipif(
    not hasattr(socket, "TCP_QUICKACK"), reason="TCP_QUICKACK is Linux's"
)

REQUESTS = 12
DELAYED_ACK = 0.040  # Linux's minimum delayed-ACK timer (TCP_DELACK_MIN)
BODY = b"mask!"


def _unacked(conn: socket.socket) -> int:
    info = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return int(struct.unpack_from("I", info, 24)[0])  # tcpi_unacked


class AckWaitingStorage:
    """HTTP/1.1 keep-alive GETs: head, wait for its ACK (recording how long), then body."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.waits: list[float] = []
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            buffered = b""
            while True:
                while b"\r\n\r\n" not in buffered:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffered += chunk
                buffered = buffered.split(b"\r\n\r\n", 1)[1]
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY))
                sent = time.perf_counter()
                while _unacked(conn) and time.perf_counter() - sent < 1.0:
                    time.sleep(0.0005)
                self.waits.append(time.perf_counter() - sent)
                conn.sendall(BODY)

    def close(self) -> None:
        self._stop = True
        self.listener.close()

    def median_wait(self) -> float:
        # The first answer on a new connection is acknowledged at once by any client.
        return statistics.median(self.waits[1:])


@pytest.fixture
def storage() -> Iterator[AckWaitingStorage]:
    s = AckWaitingStorage()
    yield s
    s.close()


def test_control_http_client_waits_for_the_delayed_ack(storage: AckWaitingStorage) -> None:
    conn = HTTPConnection(storage.url.removeprefix("http://"))
    for _ in range(REQUESTS):
        conn.request("GET", "/bucket/k?X-Amz-Signature=s")
        assert conn.getresponse().read() == BODY
    conn.close()
    assert storage.median_wait() >= DELAYED_ACK * 0.75


async def test_the_lean_transport_acknowledges_at_once(storage: AckWaitingStorage) -> None:
    """The SDK's transport, which the SEG worker reads masks with too."""
    transport = LeanTransport(httpx.Limits(max_connections=1))
    try:
        for _ in range(REQUESTS):
            answer = await transport.send_bytes("GET", f"{storage.url}/b/k", {}, b"", {})
            assert answer.body == BODY
    finally:
        await transport.aclose()
    assert storage.median_wait() < DELAYED_ACK / 2


async def test_the_seg_worker_reader_acknowledges_at_once(storage: AckWaitingStorage) -> None:
    reader = worker.Reader(connections=1)
    mask = MaskRef("k/0001_liver.png", "0001_liver.png", "liver", 1, None)
    try:
        for _ in range(REQUESTS):
            assert await reader.read(mask, f"{storage.url}/b/k?X-Amz-Signature=s") == BODY
    finally:
        await reader.close()
    assert storage.median_wait() < DELAYED_ACK / 2


async def test_the_servers_storage_connections_acknowledge_at_once(
    storage: AckWaitingStorage,
) -> None:
    """aiohttp with QuickAckConnector: the server's own aiohttp session, and (through
    QuickAckHTTPSession, the same protocol) aiobotocore's."""
    async with aiohttp.ClientSession(connector=QuickAckConnector(limit=1)) as session:
        for _ in range(REQUESTS):
            async with session.get(f"{storage.url}/b/k") as response:
                assert await response.read() == BODY
    assert storage.median_wait() < DELAYED_ACK / 2


async def test_aiobotocore_gets_the_quickack_protocol() -> None:
    """The S3 client is built with QuickAckHTTPSession: its connector makes QuickAckHandlers."""
    from pacs_ext.storage.s3.quickack import QuickAckHandler, QuickAckHTTPSession

    session = QuickAckHTTPSession()
    connector = await session._create_connector(None)
    try:
        assert isinstance(connector._factory(), QuickAckHandler)
    finally:
        await connector.close()
