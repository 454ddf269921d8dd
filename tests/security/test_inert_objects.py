"""Stored bytes are inert (issue 12 item 2): content types come from an allow-list, and every
download is answered so that a browser never runs it as a page on a token-holding origin."""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from fixtures.factories import create_annotation, group_url
from fixtures.server import ServerProcess

pytestmark = pytest.mark.server_kinds("sqlite", "postgres-rgw")

HTML = b"<html><script>alert(sessionStorage.getItem('token'))</script></html>"


def spec(filename: str, body: bytes, content_type: str) -> dict[str, object]:
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    return {"filename": filename, "size": len(body), "md5": md5, "content_type": content_type}


@pytest.mark.parametrize(
    "content_type", ["text/html", "image/svg+xml", "application/xhtml+xml", "text/javascript"]
)
def test_content_types_off_the_allow_list_are_422_naming_the_allowed(
    alice: httpx.Client, content_type: str
) -> None:
    annotation = create_annotation(alice)
    r = alice.post(
        f"/api/annotations/{annotation['id']}/mask-groups",
        json={"files": [spec("x.png", HTML, content_type)]},
    )
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"]
    assert "image/png" in body["detail"]
    assert "application/dicom" in body["detail"]
    assert content_type in body["detail"]


def _stored(alice: httpx.Client, filename: str, body: bytes, content_type: str) -> str:
    """Upload and complete one file; the mask's base API path."""
    annotation = create_annotation(alice)
    r = alice.post(
        f"/api/annotations/{annotation['id']}/mask-groups",
        json={"files": [spec(filename, body, content_type)]},
    )
    assert r.status_code == 201, r.text
    group = r.json()
    (target,) = group["uploads"]
    with httpx.Client(timeout=30) as http:
        put = http.put(target["url"], content=body, headers=target["headers"])
        assert put.status_code == 200, put.text
    base = group_url(annotation["id"], group["id"])
    assert alice.post(f"{base}/complete").status_code == 200
    mask = alice.get(f"{base}/masks").json()["items"][0]
    return f"{base}/masks/{mask['id']}"


def test_a_json_object_downloads_as_an_attachment(
    server: ServerProcess, alice: httpx.Client
) -> None:
    body = b'{"html": "<script>alert(1)</script>"}'
    mask = _stored(alice, "notes.json", body, "application/json")
    url = alice.get(f"{mask}/download-url").json()["url"]
    with httpx.Client(timeout=30) as http:
        r = http.get(url)
    assert r.status_code == 200
    assert r.content == body
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["content-disposition"] == 'attachment; filename="notes.json"'
    if server.storage == "local":
        # Same origin as the API and /viewer: the local store answers inert itself.
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["content-security-policy"] == "sandbox"
    else:
        query = parse_qs(urlsplit(url).query)
        assert query["response-content-type"] == ["application/json"]
        assert query["response-content-disposition"] == ['attachment; filename="notes.json"']


def test_an_image_is_shown_inline_but_never_sniffed(
    server: ServerProcess, alice: httpx.Client
) -> None:
    body = b"\x89PNG\r\n\x1a\n" + HTML
    mask = _stored(alice, "0001_liver.png", body, "image/png")
    redirect = alice.get(f"{mask}/content", follow_redirects=False)
    assert redirect.status_code == 307
    with httpx.Client(timeout=30) as http:
        r = http.get(redirect.headers["location"])
    assert r.status_code == 200
    assert r.content == body
    assert r.headers["content-type"] == "image/png"
    assert r.headers["content-disposition"] == "inline"
    if server.storage == "local":
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["content-security-policy"] == "sandbox"
