"""Expired upload URLs through the SDK, without waiting for them to expire: the app runs
in-process on a FakeClock that the SDK shares, and a test "lets time pass" by moving it.

Storage judges expiry for itself. The local store reads the app's clock; Ceph RGW reads its
own, so a URL is made to expire there by signing it on a clock set an hour back (the clock is
then put forward again: the URL aged an hour on its way). RGW then refuses it as it refuses any
expired URL (403 AccessDenied, no message), and the SDK tells expiry apart by its clock.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from fixtures.factories import png_like
from fixtures.faults import FaultyTransport
from fixtures.inprocess import AppFactory, InProcess, rgw_storage
from fixtures.objects import S3Objects
from fixtures.rgw import Rgw
from pacs_ext.client import download_mask_group, upload_mask_group
from pacs_ext.core.clock import FakeClock

MiB = 1024 * 1024
AN_HOUR = timedelta(hours=1)
STORES = ["local", pytest.param("rgw", marks=pytest.mark.rgw)]


@pytest.fixture
def bucket(request: pytest.FixtureRequest) -> Iterator[tuple[Rgw, str]]:
    rgw: Rgw = request.getfixturevalue("rgw")
    with rgw.bucket() as name:
        yield rgw, name


async def app_on(
    store: str, make_app: AppFactory, request: pytest.FixtureRequest, **storage: object
) -> InProcess:
    if store == "local":
        return await make_app()
    rgw, name = request.getfixturevalue("bucket")
    return await make_app(object_storage=rgw_storage(rgw, name, **storage))


def write_files(folder: Path, sizes: dict[str, int]) -> dict[str, bytes]:
    folder.mkdir(parents=True)
    bodies = {
        name: png_like(size, n) + os.urandom(16) for n, (name, size) in enumerate(sizes.items())
    }
    for name, body in bodies.items():
        (folder / name).write_bytes(body)
    return bodies


def read_folder(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.startswith(".")}


@pytest.mark.parametrize("store", STORES)
async def test_expired_urls_are_renewed(
    store: str, make_app: AppFactory, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    app = await app_on(store, make_app, request)
    clock = app.clock
    now = clock.now()
    names = [f"{i // 2 + 1:04d}_{'liver' if i % 2 == 0 else 'spleen'}.png" for i in range(6)]
    bodies = write_files(tmp_path / "in", dict.fromkeys(names, 3000))
    refused: list[int] = []

    def first_put_arrives_late(r: httpx.Request, nth: int) -> None:
        # The URLs were signed an hour ago; the first PUT reaches storage now, after expiry.
        if r.method == "PUT" and clock.now() < now:
            clock.set(now)
        return None

    class Recording(FaultyTransport):
        async def handle_async_request(self, r: httpx.Request) -> httpx.Response:
            response = await super().handle_async_request(r)
            if r.method == "PUT" and response.status_code != 200:
                refused.append(response.status_code)
            return response

    transport = Recording(first_put_arrives_late, inner=app.storage_transport())
    async with app.sdk(storage_transport=transport) as c:
        a = await c.create_annotation("1.2.3.7")
        clock.set(now - AN_HOUR)
        result = await upload_mask_group(c, a.id, tmp_path / "in", concurrency=1)
        assert result.group.status == "complete"
        # Storage refused the first PUT as expired (a real refusal, on its own clock).
        assert refused == [403]
        # One renewal after storage said "expired", then one for each URL that aged in line
        # (renewed before it was sent: no other refusal).
        assert result.renewed_urls == 6
        await download_mask_group(c, a.id, result.group.id, tmp_path / "out")
        assert read_folder(tmp_path / "out") == bodies


class PartLog(httpx.AsyncBaseTransport):
    """Passes every request on and records each PUT: (file, part number, upload id, status).
    Once part 1 is stored, the clock goes back an hour (the next page of part URLs is signed
    then), and forward again when storage refuses one of those (it aged on its way)."""

    def __init__(self, clock: FakeClock) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.clock = clock
        self.now = clock.now()
        self.puts: list[tuple[str, int | None, str | None, int]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "PUT":
            part = request.url.params.get("partNumber")
            name = request.url.path.rsplit("/", 1)[1]
            upload_id = request.url.params.get("uploadId")
            self.puts.append((name, int(part) if part else None, upload_id, response.status_code))
            if part == "1" and response.status_code == 200 and len(self.puts) == 1:
                self.clock.set(self.now - AN_HOUR)
            elif response.status_code == 403:
                self.clock.set(self.now)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.rgw
async def test_expired_part_urls_are_renewed_without_resending_stored_parts(
    make_app: AppFactory, bucket: tuple[Rgw, str], tmp_path: Path
) -> None:
    rgw, name = bucket
    # Multipart from 8 MiB (the SDK's parts: 16 MiB), one part URL per answer: part 2's URL
    # is signed by a later request than part 1's, and can expire while part 1 stays stored.
    storage = rgw_storage(rgw, name, multipart_threshold=8 * MiB)
    app = await make_app(object_storage=storage, signed_url={"part_urls_per_page": 1})
    bodies = write_files(tmp_path / "in", {"volume_ct.nii": 17 * MiB})
    log = PartLog(app.clock)
    async with app.sdk(storage_transport=log) as c:
        a = await c.create_annotation("1.2.3.503")
        result = await upload_mask_group(c, a.id, tmp_path / "in")
        assert result.group.status == "complete"
        assert result.renewed_urls == 1
        parts = [(n, u, s) for f, n, u, s in log.puts if f == "volume_ct.nii"]
        (upload_id,) = {u for _, u, _ in parts}
        assert upload_id
        # Part 2's first URL was refused (expired); part 1 was stored once and not resent.
        assert [(n, s) for n, _, s in parts] == [(1, 200), (2, 403), (2, 200)]
        objects = S3Objects(rgw.client(), name)
        assert objects.client.list_multipart_uploads(Bucket=name).get("Uploads", []) == []
        await download_mask_group(c, a.id, result.group.id, tmp_path / "out")
        assert read_folder(tmp_path / "out") == bodies
