"""Every log line of a whole flow, read back from the real server's output: structured, carrying
the request ids and the spec's events, and free of every secret, token and signature."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from fixtures.databases import sqlite_database
from fixtures.factories import create_annotation, create_group, group_url, make_masks, put_all
from fixtures.server import TEST_JWT_SECRET, ServerProcess, make_token

JWT_SHAPE = re.compile(r"eyJ[A-Za-z0-9_-]*\.eyJ[A-Za-z0-9_-]*")


@pytest.fixture(scope="module")
def quiet_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of its own, logging at debug level, so its log holds only this flow."""
    folder = tmp_path_factory.mktemp("log-scan")
    with sqlite_database(folder) as url:
        srv = ServerProcess(
            data_dir=folder, database_url=url, extra_env={"APP_LOGGING__LEVEL": "DEBUG"}
        ).start()
        try:
            yield srv
        finally:
            srv.stop()


def _signatures(url: str) -> list[str]:
    query = parse_qs(urlsplit(url).query)
    return [v for k, values in query.items() if "signature" in k.lower() for v in values]


def test_a_whole_flow_logs_its_events_and_no_secret(quiet_server: ServerProcess) -> None:
    srv = quiet_server
    token = make_token("alice")
    admin_token = make_token("root", admin=True)
    secrets_seen: list[str] = [token, admin_token]
    masks = make_masks(3)
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {token}"}) as alice:
        annotation = create_annotation(alice)
        group = create_group(alice, annotation["id"], masks, model_name="TotalSegmentator")
        for target in group["uploads"]:
            secrets_seen += _signatures(target["url"])
        base = group_url(annotation["id"], group["id"])
        put_all(group["uploads"][:2], masks)
        failed = alice.post(f"{base}/complete", headers={"X-Request-ID": "flow-complete-409"})
        assert failed.status_code == 409
        assert failed.headers["x-request-id"] == "flow-complete-409"
        put_all(group["uploads"][2:], masks)
        done = alice.post(f"{base}/complete", headers={"X-Request-ID": "flow-complete-200"})
        assert done.status_code == 200
        assert done.headers["x-request-id"] == "flow-complete-200"
        assert re.fullmatch(r"app;dur=\d+\.\d", done.headers["server-timing"])
        mask_id = alice.get(f"{base}/masks").json()["items"][0]["id"]
        url = alice.get(f"{base}/masks/{mask_id}/download-url").json()["url"]
        secrets_seen += _signatures(url)
        assert httpx.get(url).status_code == 200
        redirect = alice.get(f"{base}/masks/{mask_id}/content")
        assert redirect.status_code == 307
        secrets_seen += _signatures(redirect.headers["location"])
        # The token may travel in the query string (<img src>): it must not reach the log.
        img = httpx.get(f"{srv.url}{base}/masks/{mask_id}/content", params={"access_token": token})
        assert img.status_code == 307
        # A refused token, and a request id that is not a plain token (replaced by a fresh id).
        bad = httpx.get(
            f"{srv.url}/api/annotations",
            headers={"Authorization": f"Bearer {token}x", "X-Request-ID": "bad id\twith tab"},
        )
        assert bad.status_code == 401
        assert re.fullmatch(r"[0-9a-f]{32}", bad.headers["x-request-id"])
        assert alice.delete(f"/api/annotations/{annotation['id']}").status_code == 204
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {admin_token}"}) as c:
        assert c.get("/api/annotations").status_code == 200
    srv.stop()  # flush and close the log

    text = srv.log_path.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert len(lines) > 20

    # --- nothing secret ------------------------------------------------------------------
    storage_secret = (srv.data_dir / ".local_storage_secret").read_text().strip()
    assert len(storage_secret) > 20
    for secret in [TEST_JWT_SECRET, storage_secret, *secrets_seen]:
        assert secret not in text
    assert not JWT_SHAPE.search(text)
    for marker in ("X-Amz-Signature", "X-Amz-Credential", "signature=", "access_token="):
        assert marker.lower() not in text.lower()
    assert len(secrets_seen) == 2 + 3 + 2  # tokens, PUT signatures, GET signatures

    # --- structured, with request ids -----------------------------------------------------
    requests = [e for e in lines if e["event"] == "http.request"]
    assert requests
    assert all(e.get("request_id") for e in requests)
    assert all("?" not in e["path"] for e in requests)
    api = [e for e in requests if e["path"].startswith("/api/") and e["status"] != 401]
    assert all(e["subject"] in ("alice", "root") for e in api)
    by_id = _by_request_id(lines)
    assert {e["event"] for e in by_id["flow-complete-409"]} >= {
        "mask_group.upload_failed",
        "http.request",
    }

    # --- the spec's events ----------------------------------------------------------------
    (upload_failed,) = [e for e in lines if e["event"] == "mask_group.upload_failed"]
    assert upload_failed["level"] == "warning"
    assert upload_failed["request_id"] == "flow-complete-409"
    assert upload_failed["missing"] == 1
    assert "not uploaded" in upload_failed["error"]
    assert upload_failed["subject"] == "alice"

    (completed,) = [e for e in lines if e["event"] == "mask_group.completed"]
    assert completed["request_id"] == "flow-complete-200"
    assert completed["annotation_id"] == annotation["id"]
    assert completed["group_id"] == group["id"]
    assert completed["prefix"] == f"mask/{annotation['id']}/{group['id']}/"
    assert completed["files"] == 3
    assert isinstance(completed["duration_ms"], float)
    assert completed["duration_ms"] > 0

    issued = [e for e in lines if e["event"] == "signed_url.issued"]
    assert len(issued) == 3  # download-url and two content redirects
    for e in issued:
        assert e["url"].startswith(f"{srv.url}/storage/mask/")
        assert "?" not in e["url"]
        assert e["mask_id"] == mask_id  # bound from the path for the whole request


def _by_request_id(lines: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for e in lines:
        if "request_id" in e:
            out.setdefault(e["request_id"], []).append(e)
    return out


def test_log_lines_are_json_by_default_and_console_on_request(tmp_path: Path) -> None:
    with sqlite_database(tmp_path) as url:
        srv = ServerProcess(
            data_dir=tmp_path, database_url=url, extra_env={"APP_LOGGING__FORMAT": "console"}
        ).start()
        try:
            assert httpx.get(srv.url + "/api/annotations").status_code == 401
        finally:
            srv.stop()
    text = srv.log_path.read_text()
    line = next(x for x in text.splitlines() if "http.request" in x)
    assert not line.startswith("{")
    assert "status=401" in line
