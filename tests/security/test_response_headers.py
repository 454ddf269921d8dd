"""Headers stored beside an object never change what clients receive (issue 18 item 3).

S3 keeps Content-Encoding, Content-Disposition, Cache-Control... sent with a PUT, signed or
not. Every signed GET pins response-content-type, -encoding (identity) and -disposition, and
the SDK and `pacs-ext download` read mask bytes undecoded; a mismatch is one clear line."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from fixtures.factories import (
    MaskFile,
    create_annotation,
    create_group,
    group_url,
    png_like,
    put_all,
)
from fixtures.server import BIN, ServerProcess, make_token
from pacs_ext.client import PacsClient

pytestmark = pytest.mark.server_kinds("postgres-rgw")


def _completed(alice: httpx.Client, mask: MaskFile) -> tuple[dict[str, Any], dict[str, Any]]:
    annotation = create_annotation(alice)
    group = create_group(alice, annotation["id"], [mask])
    put_all(group["uploads"], [mask])
    base = group_url(annotation["id"], group["id"])
    assert alice.post(f"{base}/complete").status_code == 200
    row = alice.get(f"{base}/masks").json()["items"][0]
    return {"annotation": annotation["id"], "group": group["id"], "base": base}, row


def _restore_with(server: ServerProcess, key: str, body: bytes, **headers: str) -> None:
    """Store body under key with extra headers, as an unsigned-header re-PUT left it."""
    objects: Any = server.objects
    objects.client.put_object(
        Bucket=objects.bucket, Key=key, Body=body, ContentType="image/png", **headers
    )


def download(
    server: ServerProcess, ids: dict[str, Any], dest: Path
) -> subprocess.CompletedProcess[str]:
    env = server.env()
    env.update({"PACS_EXT_SERVER": server.url, "PACS_EXT_TOKEN": make_token("alice")})
    env["COLUMNS"] = "200"
    return subprocess.run(
        [str(BIN), "download", str(dest), "-a", str(ids["annotation"]), "-g", str(ids["group"]),
         "--retries", "1", "--quiet"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


async def test_stored_content_encoding_does_not_reach_clients(
    server: ServerProcess, alice: httpx.Client, tmp_path: Path
) -> None:
    mask = MaskFile(1, "liver", png_like(4000, 7))
    ids, row = _completed(alice, mask)
    _restore_with(
        server,
        row["object_key"],
        mask.body,
        ContentEncoding="gzip",
        ContentDisposition="inline; filename=evil.html",
        CacheControl="public, max-age=31536000",
    )

    url = alice.get(f"{ids['base']}/masks/{row['id']}/download-url").json()["url"]
    with httpx.Client(timeout=30) as http:  # httpx decodes gzip by default
        r = http.get(url)
    assert r.status_code == 200
    assert r.content == mask.body
    assert r.headers.get("content-encoding", "identity") == "identity"
    assert r.headers["content-type"] == "image/png"
    assert r.headers["content-disposition"] == "inline"

    async with PacsClient(server.url, make_token("alice")) as client:
        got = await client.read_mask(ids["annotation"], ids["group"], row["id"])
    assert got == mask.body

    done = download(server, ids, tmp_path / "out")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "out" / mask.filename).read_bytes() == mask.body


def test_a_changed_object_fails_download_in_one_line(
    server: ServerProcess, alice: httpx.Client, tmp_path: Path
) -> None:
    mask = MaskFile(1, "liver", png_like(4000, 8))
    ids, row = _completed(alice, mask)
    changed = mask.body[:-4] + b"\0\0\0\0"  # same size, other bytes
    _restore_with(server, row["object_key"], changed, ContentEncoding="gzip")
    done = download(server, ids, tmp_path / "out")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "Error" not in done.stderr  # no exception class names: one sentence per file
    failure = [ln for ln in done.stderr.splitlines() if ln.startswith(f"  {mask.filename}: ")]
    assert len(failure) == 1, done.stderr
    assert "MD5" in failure[0]
    assert "not saved" in failure[0]
    assert not (tmp_path / "out" / mask.filename).exists()
