"""The worker's mask reader: presigned GETs over kept-alive connections, retried on a broken
connection or a 5xx, and errors that name the mask, never the URL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pacs_ext.seg import worker
from pacs_ext.seg.mapping import MaskRef

MASK = MaskRef("k/0001_liver.png", "0001_liver.png", "liver", 1, None)


class Storage(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    answers: list[int] = []  # statuses to give first, then 200
    connections: set[int] = set()
    requests: list[str] = []

    def do_GET(self) -> None:
        Storage.requests.append(self.path)
        Storage.connections.add(id(self.connection))
        status = Storage.answers.pop(0) if Storage.answers else 200
        body = b"png bytes" if status == 200 else b"<Error/>"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def storage(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(worker, "BACKOFF", 0.001)
    Storage.answers, Storage.connections, Storage.requests = [], set(), []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Storage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_reads_keep_their_connection_and_send_the_query(storage: str) -> None:
    reader = worker.Reader()
    try:
        for _ in range(3):
            url = f"{storage}/bucket/k?X-Amz-Signature=secret"
            assert await reader.read(MASK, url) == b"png bytes"
    finally:
        await reader.close()
    assert Storage.requests == ["/bucket/k?X-Amz-Signature=secret"] * 3
    assert len(Storage.connections) == 1


async def test_a_5xx_is_tried_again_and_a_4xx_names_the_mask_not_the_url(storage: str) -> None:
    reader = worker.Reader()
    url = f"{storage}/bucket/k?X-Amz-Signature=secret"
    try:
        Storage.answers = [503, 500]
        assert await reader.read(MASK, url) == b"png bytes"
        Storage.answers = [403]
        with pytest.raises(worker.ReadError) as failed:
            await reader.read(MASK, url)
        Storage.answers = [503] * (worker.RETRIES + 1)
        with pytest.raises(worker.ReadError, match="storage answered 503"):
            await reader.read(MASK, url)
    finally:
        await reader.close()
    assert str(failed.value) == "reading mask 0001_liver.png failed: storage answered 403"


async def test_unreachable_storage_and_missing_files_are_read_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker, "BACKOFF", 0.001)
    reader = worker.Reader()
    try:
        with pytest.raises(worker.ReadError, match=r"unreachable \(ConnectError\)$") as failed:
            await reader.read(MASK, "http://127.0.0.1:9/k?X-Amz-Signature=secret")
        assert "secret" not in str(failed.value)
        with pytest.raises(worker.ReadError, match=r"0001_liver\.png failed: No such file"):
            await reader.read(MASK, str(tmp_path / "absent.png"))
        (tmp_path / "here.png").write_bytes(b"png")
        assert await reader.read(MASK, str(tmp_path / "here.png")) == b"png"
    finally:
        await reader.close()
