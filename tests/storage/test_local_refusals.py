"""The embedded store's signed PUT/GET endpoint refuses every bent request and stores nothing."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from fixtures.factories import MaskFile, create_annotation, create_group, png_like
from fixtures.server import ServerProcess
from pacs_ext.core.clock import FakeClock
from pacs_ext.storage.base import UploadSpec
from pacs_ext.storage.local.store import LocalStorage

# The embedded store's own protocol; RGW's refusals are in test_rgw_refusals.py.
pytestmark = pytest.mark.server_kinds("sqlite", "postgres")


def _stored(objects_root: Path) -> list[str]:
    return sorted(
        p.relative_to(objects_root).as_posix()
        for p in objects_root.rglob("*")
        if p.is_file() and ".tmp" not in p.parts
    )


MiB = 1024 * 1024


def _one_target(alice: httpx.Client, mask: MaskFile, **fields: object) -> dict:
    annotation = create_annotation(alice)
    group = create_group(alice, annotation["id"], [mask], **fields)
    return group["uploads"][0]


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def _wait_until(condition: Callable[[], bool], *, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)


@pytest.fixture
def mask() -> MaskFile:
    return MaskFile(1, "liver", png_like(5000, 7))


def test_correct_put_is_stored(alice: httpx.Client, mask: MaskFile, objects_root: Path) -> None:
    target = _one_target(alice, mask)
    r = httpx.put(target["url"], content=mask.body, headers=target["headers"])
    assert r.status_code == 200
    assert (objects_root / target["object_key"]).read_bytes() == mask.body


@pytest.mark.parametrize(
    ("change", "status", "error"),
    [
        ("tampered_signature", 403, "SignatureDoesNotMatch"),
        ("other_key", 403, "SignatureDoesNotMatch"),
        ("later_expiry", 403, "SignatureDoesNotMatch"),
        ("wrong_content_type", 403, "SignatureDoesNotMatch"),
        ("wrong_length", 403, "SignatureDoesNotMatch"),
        ("wrong_md5_header", 403, "SignatureDoesNotMatch"),
        ("body_not_matching_md5", 400, "BadDigest"),
        ("no_signature", 403, "AccessDenied"),
    ],
)
def test_bent_put_is_refused_and_nothing_stored(
    alice: httpx.Client, mask: MaskFile, objects_root: Path, change: str, status: int, error: str
) -> None:
    target = _one_target(alice, mask)
    url, headers, body = target["url"], dict(target["headers"]), mask.body
    if change == "tampered_signature":
        sig = parse_qs(urlsplit(url).query)["signature"][0]
        url = _with_query(url, signature=("0" if sig[0] != "0" else "1") + sig[1:])
    elif change == "other_key":
        url = url.replace("0001_liver.png", "0002_liver.png")
    elif change == "later_expiry":
        exp = int(parse_qs(urlsplit(url).query)["expires"][0])
        url = _with_query(url, expires=str(exp + 3600))
    elif change == "wrong_content_type":
        headers["Content-Type"] = "image/jpeg"
    elif change == "wrong_length":
        body = mask.body + b"x"
        headers["Content-Length"] = str(len(body))
    elif change == "wrong_md5_header":
        headers["Content-MD5"] = MaskFile(1, "x", b"other").md5
    elif change == "body_not_matching_md5":
        body = bytes([mask.body[0] ^ 1]) + mask.body[1:]
    elif change == "no_signature":
        url = url.split("?")[0]
    before = _stored(objects_root)
    r = httpx.put(url, content=body, headers=headers)
    assert r.status_code == status, r.text
    assert r.json()["error"] == error
    assert _stored(objects_root) == before
    assert not any((objects_root / ".tmp").iterdir())


def _signed_at(server: ServerProcess, when: datetime) -> LocalStorage:
    """The server's own store (same folder and secret), signing as if the time were `when`:
    the server judges expiry on its clock, so a URL signed an hour ago is expired now."""
    secret = (server.data_dir / ".local_storage_secret").read_text().strip().encode()
    return LocalStorage(server.data_dir / "objects", secret, server.url, clock=FakeClock(when))


def test_expired_url_is_refused(
    alice: httpx.Client, mask: MaskFile, objects_root: Path, server: ServerProcess
) -> None:
    target = _one_target(alice, mask, ttl_seconds=1)
    headers = target["headers"]
    spec = UploadSpec(target["object_key"], headers["Content-Type"], len(mask.body), mask.md5)
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    late = _signed_at(server, an_hour_ago).sign_upload(spec, 1)
    r = httpx.put(late.url, content=mask.body, headers=late.headers)
    assert r.status_code == 403
    assert "expired" in r.json()["detail"]
    assert not (objects_root / target["object_key"]).exists()
    # Signed the same way at the current time, the request is taken: only the time differed.
    now = _signed_at(server, datetime.now(UTC)).sign_upload(spec, 60)
    assert httpx.put(now.url, content=mask.body, headers=now.headers).status_code == 200


@pytest.mark.parametrize(
    ("size", "sent"),
    [
        # Held in memory (below the endpoint's 4 MiB buffer): nothing reaches the disk.
        (5000, 1000),
        # Streamed to a temp file, which the server must remove when the client drops.
        (5 * MiB, 4 * MiB + 512 * 1024),
    ],
    ids=["buffered", "streamed"],
)
def test_connection_dropped_mid_body_publishes_nothing(
    alice: httpx.Client, objects_root: Path, size: int, sent: int
) -> None:
    mask = MaskFile(1, "liver", png_like(size, 7))
    target = _one_target(alice, mask)
    parts = urlsplit(target["url"])
    head = f"PUT {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in target["headers"].items()) + "\r\n"
    tmp = objects_root / ".tmp"
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        sock.sendall(head.encode() + mask.body[:sent])
        if sent > 4 * MiB:
            _wait_until(lambda: any(tmp.iterdir()), seconds=60)
            assert any(tmp.iterdir()), "the server never began the temp file"
    # The server notices the drop and removes its temp file.
    _wait_until(lambda: not any(tmp.iterdir()), seconds=30)
    assert not (objects_root / target["object_key"]).exists()
    assert not any(tmp.iterdir())
    # The same URL still works for a complete body afterwards.
    r = httpx.put(target["url"], content=mask.body, headers=target["headers"])
    assert r.status_code == 200
    assert (objects_root / target["object_key"]).read_bytes() == mask.body


def test_signed_get_refuses_tampering_and_expiry(
    alice: httpx.Client, mask: MaskFile, server: ServerProcess
) -> None:
    target = _one_target(alice, mask)
    httpx.put(target["url"], content=mask.body, headers=target["headers"]).raise_for_status()
    annotation_id, group_id = target["object_key"].split("/")[1:3]
    base = f"/api/annotations/{annotation_id}/mask-groups/{group_id}"
    assert alice.post(f"{base}/complete").status_code == 200
    mask_id = alice.get(f"{base}/masks").json()["items"][0]["id"]
    url = alice.get(f"{base}/masks/{mask_id}/download-url", params={"ttl_seconds": 2}).json()["url"]
    assert httpx.get(url).status_code == 200
    assert httpx.get(_with_query(url, signature="0" * 64)).status_code == 403
    assert httpx.get(url.replace("0001_liver", "0002_liver")).status_code == 403
    # The same URL signed an hour ago (same key, disposition and type) has expired.
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    bound = {
        "content_disposition": query.get("response-content-disposition"),
        "content_type": query.get("response-content-type"),
    }
    key = target["object_key"]
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    late = _signed_at(server, an_hour_ago).sign_download(key, 2, **bound)
    r = httpx.get(late.url)
    assert r.status_code == 403
    assert "expired" in r.json()["detail"]
    now = _signed_at(server, datetime.now(UTC)).sign_download(key, 2, **bound)
    assert httpx.get(now.url).status_code == 200
