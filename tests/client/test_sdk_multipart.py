"""Large files through the SDK on Ceph RGW: multipart uploads (the RGW server goes multipart
at 8 MiB, parts of 16 MiB) and a killed multipart upload resumed to completion with the same
upload id. Expired part URLs renewed without resending the parts already stored:
test_sdk_expiry.py (in-process, on a clock the test moves).

Resume works per file: a re-run declares the unfinished file again with the same spec, the
server keeps its multipart upload (masks/multipart.py) and the SDK sends all of its parts.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from fixtures.objects import S3Objects, StoredObjects
from fixtures.server import ServerProcess, make_token
from pacs_ext.client import (
    IncompleteUpload,
    PacsClient,
    RetryPolicy,
    download_mask_group,
    upload_mask_group,
)

pytestmark = pytest.mark.server_kinds("postgres-rgw")

MiB = 1024 * 1024
FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)


def write_files(folder: Path, sizes: dict[str, int]) -> dict[str, bytes]:
    folder.mkdir(parents=True)
    bodies = {name: os.urandom(size) for name, size in sizes.items()}
    for name, body in bodies.items():
        (folder / name).write_bytes(body)
    return bodies


def read_folder(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.startswith(".")}


def client(server: ServerProcess, **kw: Any) -> PacsClient:
    return PacsClient(server.url, make_token("alice"), retry=FAST, **kw)


def unfinished(objects: StoredObjects, prefix: str) -> dict[str, str]:
    """Key → upload id of the multipart uploads storage still holds under prefix."""
    assert isinstance(objects, S3Objects)
    resp = objects.client.list_multipart_uploads(Bucket=objects.bucket, Prefix=prefix)
    return {u["Key"]: u["UploadId"] for u in resp.get("Uploads", [])}


class PartLog(httpx.AsyncBaseTransport):
    """Passes every request on and records each PUT: (file, part number, upload id, status)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.puts: list[tuple[str, int | None, str | None, int]] = []

    async def before(self, request: httpx.Request) -> None:
        """Hook for subclasses: runs before the request goes out."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self.before(request)
        response = await self.inner.handle_async_request(request)
        if request.method == "PUT":
            part = request.url.params.get("partNumber")
            name = request.url.path.rsplit("/", 1)[1]
            upload_id = request.url.params.get("uploadId")
            self.puts.append((name, int(part) if part else None, upload_id, response.status_code))
        return response

    def parts_of(self, name: str) -> list[tuple[int | None, str | None, int]]:
        return [(n, u, s) for f, n, u, s in self.puts if f == name]

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_large_files_go_in_parts_and_download_identical(
    server: ServerProcess, tmp_path: Path, objects: StoredObjects
) -> None:
    # 17 MiB: two parts (16 + 1 MiB); 9 MiB: one part; the small ones: single PUTs.
    sizes = {"volume_liver.nii": 17 * MiB, "0001_liver.png": 9 * MiB, "0002_liver.png": 3000}
    bodies = write_files(tmp_path / "in", sizes)
    log = PartLog()
    async with client(server, storage_transport=log) as c:
        a = await c.create_annotation("1.2.3.501")
        result = await upload_mask_group(c, a.id, tmp_path / "in", sha256=True)
        g = result.group
        assert (g.status, g.mask_count, g.total_bytes) == ("complete", 3, sum(sizes.values()))
        assert result.bytes_uploaded == sum(sizes.values())

        volume = log.parts_of("volume_liver.nii")
        assert sorted(n for n, _, _ in volume) == [1, 2]
        assert len({u for _, u, _ in volume}) == 1
        assert [n for n, _, _ in log.parts_of("0001_liver.png")] == [1]
        assert log.parts_of("0002_liver.png") == [(None, None, 200)]
        assert unfinished(objects, f"mask/{a.id}/") == {}

        got = await download_mask_group(c, a.id, g.id, tmp_path / "out")
        assert got.bytes_downloaded == sum(sizes.values())
        assert read_folder(tmp_path / "out") == bodies


KILL_AFTER_BYTES = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from pathlib import Path
    from pacs_ext.client import PacsClient, TransferProgress, upload_mask_group

    class KillAfterBytes(TransferProgress):
        sent = 0
        def advance(self, nbytes):
            self.sent += nbytes
            if self.sent >= int(sys.argv[4]):
                os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, like a crash or kill -9

    async def main():
        async with PacsClient(sys.argv[1], sys.argv[2]) as c:
            await upload_mask_group(c, int(sys.argv[3]), Path(sys.argv[5]),
                                    progress=KillAfterBytes())

    asyncio.run(main())
    """
)


async def test_killed_multipart_upload_resumes_with_the_same_upload(
    server: ServerProcess, tmp_path: Path, objects: StoredObjects
) -> None:
    sizes = {"volume_ct.nii": 20 * MiB, "0001_liver.png": 3000, "0002_liver.png": 3100}
    bodies = write_files(tmp_path / "in", sizes)
    async with client(server) as c:
        a = await c.create_annotation("1.2.3.502")
        # Killed once 6 MiB are on their way: part 1 (16 MiB, streamed) cannot be stored yet.
        proc = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", KILL_AFTER_BYTES, server.url, make_token("alice"),
             str(a.id), str(6 * MiB), str(tmp_path / "in")],
            capture_output=True,
            timeout=120,
        )  # fmt: skip
        assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
        (group,) = (await c.list_groups(a.id)).items
        assert group.status == "pending"
        key = f"mask/{a.id}/{group.id}/volume_ct.nii"
        before = unfinished(objects, f"mask/{a.id}/")
        assert list(before) == [key]

        # `complete` names the unfinished multipart file as missing (409), it does not fail.
        with pytest.raises(IncompleteUpload) as err:
            await c.complete(a.id, group.id)
        missing = {p["filename"]: p["reason"] for p in err.value.body["missing"]}
        assert "not uploaded" in missing["volume_ct.nii"]

        log = PartLog()
        async with client(server, storage_transport=log) as again:
            result = await upload_mask_group(again, a.id, tmp_path / "in")
        assert result.resumed
        assert (result.group.id, result.group.status) == (group.id, "complete")
        assert result.files_uploaded + result.files_skipped == 3
        # Declared again unchanged, the file kept its multipart upload: every part went there.
        volume = log.parts_of("volume_ct.nii")
        assert sorted(n for n, _, _ in volume) == [1, 2]
        assert {u for _, u, _ in volume} == {before[key]}
        assert unfinished(objects, f"mask/{a.id}/") == {}

        await download_mask_group(c, a.id, group.id, tmp_path / "out")
        assert read_folder(tmp_path / "out") == bodies
