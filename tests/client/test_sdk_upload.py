"""upload_mask_group / download_mask_group against the running app over real HTTP: the happy
path, resume after a cancelled task and after a killed process, changed files, retries on
injected faults, and clear refusals. Renewal of expired URLs: test_sdk_expiry.py (in-process,
on a clock the test moves)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from fixtures.factories import png_like
from fixtures.faults import FaultyTransport
from fixtures.objects import StoredObjects
from fixtures.server import ServerProcess, make_token
from pacs_ext.client import (
    ClientError,
    LocalFileError,
    PacsClient,
    RetryPolicy,
    TransferProgress,
    UploadFailed,
    download_mask_group,
    upload_mask_group,
)

FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)


def write_masks(folder: Path, count: int, size: int = 3000) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for i in range(count):
        name = f"{i // 2 + 1:04d}_{'liver' if i % 2 == 0 else 'spleen'}.png"
        body = png_like(size + i, i)
        (folder / name).write_bytes(body)
        out[name] = body
    return out


def stored(objects: StoredObjects, annotation_id: int, group_id: int) -> set[str]:
    """Names of the group's objects in storage (local folder or bucket alike)."""
    prefix = f"mask/{annotation_id}/{group_id}/"
    return {key.removeprefix(prefix) for key in objects.keys(prefix)}


def client(server: ServerProcess, **kw: Any) -> PacsClient:
    return PacsClient(server.url, make_token("alice"), retry=FAST, **kw)


class CancelAfter(TransferProgress):
    """Cancels the running upload once `n` files are through: an interruption mid-upload."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.done = 0
        self.task: asyncio.Task[object] | None = None

    def file_done(self, name: str) -> None:
        self.done += 1
        if self.done == self.n and self.task is not None:
            self.task.cancel()


async def test_upload_then_download_round_trip(
    server: ServerProcess, tmp_path: Path, objects: StoredObjects
) -> None:
    bodies = write_masks(tmp_path / "in", 40)
    async with client(server) as c:
        a = await c.create_annotation("1.2.3.1")
        result = await upload_mask_group(
            c, a.id, tmp_path / "in", group_name="run-1", model_name="m", sha256=True
        )
        g = result.group
        assert (g.status, g.mask_count, g.group_name, g.slice_count) == (
            "complete",
            40,
            "run-1",
            20,
        )
        assert (result.files_uploaded, result.files_skipped, result.resumed) == (40, 0, False)
        assert result.bytes_uploaded == sum(len(b) for b in bodies.values())
        assert stored(objects, a.id, g.id) == {*bodies, "metadata.json"}

        masks = {m.filename: m async for m in c.iter_masks(a.id, g.id)}
        first = masks["0001_liver.png"]
        assert (first.slice_index, first.label_name) == (1, "liver")
        want = base64.b64encode(hashlib.sha256(bodies["0001_liver.png"]).digest()).decode()
        assert first.sha256 == want

        state = json.loads(result.state_file.read_text())
        assert (state["group_id"], state["annotation_id"]) == (g.id, a.id)
        assert result.state_file == tmp_path / "in" / f".pacs-ext-upload-a{a.id}.json"

        again = await upload_mask_group(c, a.id, tmp_path / "in", group_name="run-1")
        assert (again.group.id, again.files_uploaded, again.files_skipped) == (g.id, 0, 40)

        got = await download_mask_group(c, a.id, g.id, tmp_path / "out")
        assert got.files_downloaded == 40
        assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == bodies
        # A re-run keeps good files and fetches only damaged or missing ones.
        (tmp_path / "out" / "0001_liver.png").write_bytes(b"damaged")
        (tmp_path / "out" / "0002_liver.png").unlink()
        again_down = await download_mask_group(c, a.id, g.id, tmp_path / "out")
        assert (again_down.files_downloaded, again_down.files_skipped) == (2, 38)
        assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == bodies


async def test_cancelled_upload_resumes_the_same_group(
    server: ServerProcess, tmp_path: Path, objects: StoredObjects
) -> None:
    bodies = write_masks(tmp_path / "in", 60)
    async with client(server) as c:
        a = await c.create_annotation("1.2.3.2")
        hook = CancelAfter(15)
        task = asyncio.create_task(
            upload_mask_group(c, a.id, tmp_path / "in", concurrency=4, batch_size=20, progress=hook)
        )
        hook.task = task
        with pytest.raises(asyncio.CancelledError):
            await task
        state = json.loads((tmp_path / "in" / f".pacs-ext-upload-a{a.id}.json").read_text())
        group_id = state["group_id"]
        assert (await c.get_group(a.id, group_id)).status == "pending"
        before = stored(objects, a.id, group_id)
        assert 15 <= len(before) < 60

        result = await upload_mask_group(c, a.id, tmp_path / "in", concurrency=4, batch_size=20)
        assert result.resumed
        assert result.group.id == group_id
        assert result.group.status == "complete"
        # PUTs whose bodies were sent before the cancel may land after `before` was taken.
        assert result.files_skipped >= len(before)
        assert result.files_uploaded == 60 - result.files_skipped
        assert (await c.list_groups(a.id)).total == 1
        got = await download_mask_group(c, a.id, group_id, tmp_path / "out")
        assert got.files_total == 60
        assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == bodies


async def test_files_changed_or_added_after_an_interruption_are_declared_again(
    server: ServerProcess, tmp_path: Path
) -> None:
    bodies = write_masks(tmp_path / "in", 20)
    async with client(server) as c:
        a = await c.create_annotation("1.2.3.3")
        hook = CancelAfter(8)
        task = asyncio.create_task(
            upload_mask_group(c, a.id, tmp_path / "in", concurrency=1, progress=hook)
        )
        hook.task = task
        with pytest.raises(asyncio.CancelledError):
            await task
        # One file already uploaded changes, one not yet uploaded changes, one is new.
        for name in ("0001_liver.png", "0010_spleen.png"):
            bodies[name] = b"\x89PNG changed " + name.encode()
            (tmp_path / "in" / name).write_bytes(bodies[name])
        bodies["0099_liver.png"] = b"\x89PNG added"
        (tmp_path / "in" / "0099_liver.png").write_bytes(bodies["0099_liver.png"])

        result = await upload_mask_group(c, a.id, tmp_path / "in")
        assert result.resumed
        assert result.group.mask_count == 21
        masks = {m.filename: m async for m in c.iter_masks(a.id, result.group.id)}
        for name, body in bodies.items():
            assert await c.read_mask(a.id, result.group.id, masks[name].id) == body


KILL_SCRIPT = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from pathlib import Path
    from pacs_ext.client import PacsClient, TransferProgress, upload_mask_group

    class KillAfter(TransferProgress):
        done = 0
        def file_done(self, name):
            self.done += 1
            if self.done == int(sys.argv[4]):
                os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, like a crash or kill -9

    async def main():
        async with PacsClient(sys.argv[1], sys.argv[2]) as c:
            await upload_mask_group(c, int(sys.argv[3]), Path(sys.argv[5]), concurrency=4,
                                    batch_size=25, progress=KillAfter())

    asyncio.run(main())
    """
)


async def test_killed_process_resumes_to_completion(
    server: ServerProcess, tmp_path: Path, objects: StoredObjects
) -> None:
    bodies = write_masks(tmp_path / "in", 80, size=2000)
    token = make_token("alice")
    async with client(server) as c:
        a = await c.create_annotation("1.2.3.4")
        proc = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-c",
                KILL_SCRIPT,
                server.url,
                token,
                str(a.id),
                "30",
                str(tmp_path / "in"),
            ],
            capture_output=True,
            timeout=120,
        )
        assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
        state = json.loads((tmp_path / "in" / f".pacs-ext-upload-a{a.id}.json").read_text())
        before = stored(objects, a.id, state["group_id"])
        assert 30 <= len(before) < 80

        result = await upload_mask_group(c, a.id, tmp_path / "in")
        assert (result.group.id, result.group.status) == (state["group_id"], "complete")
        assert result.files_skipped >= len(before)  # (PUTs sent before the kill may land later)
        assert result.files_uploaded == 80 - result.files_skipped
        assert stored(objects, a.id, result.group.id) == {*bodies, "metadata.json"}


async def test_retries_5xx_and_dropped_connections(server: ServerProcess, tmp_path: Path) -> None:
    bodies = write_masks(tmp_path / "in", 30)

    def flaky(request: httpx.Request, nth: int) -> httpx.Response | Exception | None:
        if request.method != "PUT" or nth > 1:
            return None
        index = int(request.url.path.rsplit("/", 1)[1][:4])
        if index % 3 == 0:
            return httpx.Response(503, text="<Error><Code>SlowDown</Code></Error>")
        if index % 3 == 1:
            return httpx.ConnectError("connection reset by peer")
        return None

    storage = FaultyTransport(flaky)
    async with client(server, storage_transport=storage) as c:
        a = await c.create_annotation("1.2.3.5")
        result = await upload_mask_group(c, a.id, tmp_path / "in")
        assert result.group.status == "complete"
        assert result.group.mask_count == 30
        assert result.retries == storage.injected > 0
        got = await download_mask_group(c, a.id, result.group.id, tmp_path / "out")
        assert got.files_downloaded == 30
        assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == bodies


async def test_refused_files_fail_clearly_and_a_rerun_finishes(
    server: ServerProcess, tmp_path: Path
) -> None:
    write_masks(tmp_path / "in", 10)

    def refuse(request: httpx.Request, nth: int) -> httpx.Response | None:
        if request.method == "PUT" and request.url.path.endswith("0002_liver.png"):
            body = "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
            return httpx.Response(403, text=body)
        return None

    async with client(server, storage_transport=FaultyTransport(refuse)) as c:
        a = await c.create_annotation("1.2.3.6")
        with pytest.raises(UploadFailed) as err:
            await upload_mask_group(c, a.id, tmp_path / "in")
        (failure,) = err.value.failures
        assert failure.filename == "0002_liver.png"
        assert "403 AccessDenied: Access Denied" in failure.reason
        assert "signature=" not in str(err.value)  # signed URLs are credentials
        assert (await c.get_group(a.id, err.value.group_id)).status == "pending"
    async with client(server) as c:
        result = await upload_mask_group(c, a.id, tmp_path / "in")
        assert (result.group.id, result.files_uploaded, result.files_skipped) == (
            err.value.group_id,
            1,
            9,
        )


async def test_refusals_before_any_request(server: ServerProcess, tmp_path: Path) -> None:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "slice 1 liver.png").write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    async with client(server) as c:
        a = await c.create_annotation("1.2.3.8")
        with pytest.raises(LocalFileError, match=r"slice 1 liver\.png"):
            await upload_mask_group(c, a.id, tmp_path / "bad")
        with pytest.raises(LocalFileError, match="no files"):
            await upload_mask_group(c, a.id, tmp_path / "empty")
        with pytest.raises(LocalFileError, match="does not exist"):
            await upload_mask_group(c, a.id, tmp_path / "nowhere")
        assert (await c.list_groups(a.id)).total == 0


async def test_complete_group_with_other_files_needs_a_new_group(
    server: ServerProcess, tmp_path: Path
) -> None:
    write_masks(tmp_path / "in", 4)
    async with client(server) as c:
        a = await c.create_annotation("1.2.3.9")
        first = await upload_mask_group(c, a.id, tmp_path / "in")
        (tmp_path / "in" / "0001_liver.png").write_bytes(b"\x89PNG other")
        with pytest.raises(ClientError, match="already complete"):
            await upload_mask_group(c, a.id, tmp_path / "in")
        second = await upload_mask_group(c, a.id, tmp_path / "in", resume=False)
        assert second.group.id != first.group.id
        assert second.group.status == "complete"
        # A list of files (not a folder): its state lives in the cache folder.
        files = sorted((tmp_path / "in").glob("*.png"))[:2]
        os.environ["XDG_CACHE_HOME"] = str(tmp_path / "cache")
        try:
            listed = await upload_mask_group(c, a.id, files, group_name="two")
        finally:
            del os.environ["XDG_CACHE_HOME"]
        assert listed.group.mask_count == 2
        assert listed.state_file is not None
        assert listed.state_file.is_relative_to(tmp_path / "cache")


async def test_download_of_a_pending_group_is_refused(
    server: ServerProcess, tmp_path: Path
) -> None:
    async with client(server) as c:
        a = await c.create_annotation("1.2.3.10")
        g = await c.create_group(a.id, [{"filename": "a.png", "size": 1, "md5": "x" * 22 + "=="}])
        with pytest.raises(ClientError, match="pending"):
            await download_mask_group(c, a.id, g.id, tmp_path / "out")
