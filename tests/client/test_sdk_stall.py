"""Storage that accepts uploads and never answers (a stalled gateway, a full OSD): the SDK
stops after two rounds of every slot timing out, instead of waiting out every file's retries
(32 files x 5 attempts x 60 s: over ten minutes for `pacs-ext upload` before), says so, and a
rerun resumes the same group once storage answers again."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from fixtures.factories import png_like
from fixtures.faults import FaultyTransport
from fixtures.inprocess import AppFactory, InProcess
from pacs_ext.client import UploadFailed, upload_mask_group

CONCURRENCY = 4


async def _masks_to_upload(
    make_app: AppFactory, tmp_path: Path, files: int
) -> tuple[InProcess, Path, int]:
    """An app, a folder of `files` small masks, and an annotation of alice's to upload to."""
    app = await make_app()
    folder = tmp_path / "masks"
    folder.mkdir()
    for n in range(files):
        (folder / f"{n + 1:04d}_liver.png").write_bytes(png_like(2_000 + n, n))
    async with app.client("alice") as alice:
        r = await alice.post("/api/annotations", json={"study_instance_uid": "1.2.3"})
    return app, folder, int(r.json()["id"])


async def test_a_stalled_storage_stops_the_upload_soon_and_a_rerun_resumes(
    make_app: AppFactory, tmp_path: Path
) -> None:
    app, folder, annotation = await _masks_to_upload(make_app, tmp_path, 60)

    def stall(request: httpx.Request, _: int) -> Exception | None:
        return httpx.ReadTimeout("no answer", request=request) if request.method == "PUT" else None

    stalled = FaultyTransport(stall, inner=app.storage_transport())
    async with app.sdk(storage_transport=stalled) as client:
        with pytest.raises(UploadFailed) as caught:
            await upload_mask_group(client, annotation, folder, concurrency=CONCURRENCY)
    reasons = [f.reason for f in caught.value.failures]
    assert len(reasons) == 60  # every file is accounted for
    assert any("seems stalled" in r and "run the same command again" in r for r in reasons)
    # Two rounds of every slot, and the retries already on their way: not 20 files x 4 attempts.
    assert 2 * CONCURRENCY <= stalled.injected <= 3 * CONCURRENCY

    async with app.sdk() as client:
        result = await upload_mask_group(client, annotation, folder, concurrency=CONCURRENCY)
    assert result.group.id == caught.value.group_id
    assert result.group.status == "complete"
    assert result.group.mask_count == 60


async def test_a_slow_file_among_answered_ones_is_not_a_stall(
    make_app: AppFactory, tmp_path: Path
) -> None:
    """Timeouts count only in a row: any answer from storage starts the count again."""
    app, folder, annotation = await _masks_to_upload(make_app, tmp_path, 40)

    def every_other_first_try(request: httpx.Request, seen: int) -> Exception | None:
        # Odd-numbered files time out on their first PUT (their retry goes through); the even
        # ones, taken in between, go through at once.
        number = int(request.url.path.rsplit("/", 1)[1][:4])
        timed_out = request.method == "PUT" and seen == 1 and number % 2 == 1
        return httpx.ReadTimeout("no answer", request=request) if timed_out else None

    flaky = FaultyTransport(every_other_first_try, inner=app.storage_transport())
    async with app.sdk(storage_transport=flaky) as client:
        result = await upload_mask_group(client, annotation, folder, concurrency=CONCURRENCY)
    assert result.group.status == "complete"
    assert result.group.mask_count == 40
    assert flaky.injected == 20  # more timeouts than the stall limit, never that many in a row
