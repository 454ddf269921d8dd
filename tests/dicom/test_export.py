"""Export a complete group as DICOM SEG into a real Orthanc, and read it back every way."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import highdicom as hd
import httpx
import numpy as np
import pydicom
import pytest
from sqlalchemy import select

from fixtures.dicom import Series, to_bytes
from fixtures.inprocess import AppFactory, InProcess
from fixtures.seg_groups import LABELS, Masks, export, masks_for, upload_group
from pacs_ext.dicomweb import DicomwebTarget
from pacs_ext.dicomweb.client import find_series, retrieve_instance
from pacs_ext.exports.runner import READ_SHARE, ExportRunner
from pacs_ext.models import SegExport
from pacs_ext.objects import outbox
from pacs_ext.objects.claims import claimed_keys
from pacs_ext.recovery.reindex import reindex
from pacs_ext.seg.jobs import BuildRequest
from pacs_ext.seg.read import read_seg


async def _download(client: httpx.AsyncClient, state: dict[str, object]) -> bytes:
    r = await client.get(str(state["download_url"]))
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/dicom"
    return r.content


def _assert_same(data: bytes, series: Series, masks: Masks) -> None:
    contents = read_seg(data, series.sop_uids)
    got = {(s.slice_index, label): mask for s, label, mask in contents.iter_masks()}
    assert set(got) == set(masks)
    for key, mask in masks.items():
        assert np.array_equal(got[key], mask), key


@pytest.mark.parametrize("kind", ["LABELMAP", "BINARY"])
async def test_export_stores_a_seg_that_reads_back_identical(
    alice: httpx.AsyncClient, ct: Series, orthanc: DicomwebTarget, pacs_app: InProcess, kind: str
) -> None:
    masks = masks_for(ct, range(2, 12))
    annotation_id, group_id = await upload_group(
        alice, ct, masks, model_name="TotalSegmentator", version="2.4.0"
    )
    state = await export(alice, annotation_id, group_id, segmentation_type=kind, store=True)
    assert state["status"] == "succeeded", state
    assert state["stored"] is True
    assert state["object_key"] == f"mask/{annotation_id}/{group_id}/exports/{state['id']}.dcm"
    assert set(state["timings"]) >= {"fetch_decode", "build", "encode", "write", "stow", "total"}
    data = await _download(alice, state)
    _assert_same(data, ct, masks)

    # highdicom reads it back: labels, codes, colours, algorithm, references.
    seg = hd.seg.Segmentation.from_dataset(pydicom.dcmread(io.BytesIO(data)))
    assert seg.SegmentationType == kind
    assert seg.SeriesDescription == "CT organs"
    numbers = [n for n in seg.get_segment_numbers() if n > 0]
    descriptions = {seg.get_segment_description(n).segment_label: n for n in numbers}
    assert sorted(descriptions) == sorted(LABELS)
    liver = seg.get_segment_description(descriptions["liver"])
    assert liver.segmented_property_type.value == "10200004"
    assert liver.algorithm_type.value == "AUTOMATIC"
    assert liver.algorithm_identification[0].AlgorithmName == "TotalSegmentator"
    assert liver.algorithm_identification[0].AlgorithmVersion == "2.4.0"
    assert len(liver.RecommendedDisplayCIELabValue) == 3
    tumor = seg.get_segment_description(descriptions["tumor"])
    assert tumor.segmented_property_category.value == "49755003"
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == ct.series_instance_uid
    assert seg.StudyInstanceUID == ct.study_instance_uid
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[ct.sop_uids[5]],
        segment_numbers=[descriptions["spleen"]],
        combine_segments=False,
    )
    assert np.array_equal(pixels[0, :, :, 0] != 0, masks[(5, "spleen")])

    # The PACS has it: QIDO-RS finds the series, WADO-RS returns the instance.
    found = find_series(
        orthanc, ct.study_instance_uid, SeriesInstanceUID=str(state["series_instance_uid"])
    )
    assert len(found) == 1
    assert found[0]["00080060"]["Value"] == ["SEG"]
    retrieved = retrieve_instance(
        orthanc,
        ct.study_instance_uid,
        str(state["series_instance_uid"]),
        str(state["sop_instance_uid"]),
    )
    assert str(retrieved.SOPInstanceUID) == state["sop_instance_uid"]
    _assert_same(to_bytes(retrieved), ct, masks)

    # The group's export list shows it with a link; the audit trail has the export and URLs.
    base = f"/api/annotations/{annotation_id}/mask-groups/{group_id}"
    listed = (await alice.get(f"{base}/exports")).json()
    assert listed["total"] == 1
    assert listed["items"][0]["download_url"]
    async with pacs_app.client("root", admin=True) as admin:
        trail = (await admin.get("/api/audit", params={"group_id": group_id})).json()["items"]
    actions = [(e["action"], e["object_key"]) for e in trail]
    assert ("mask_group.export", None) in actions
    assert ("signed_url.issue", state["object_key"]) in actions


async def test_masks_map_by_sop_instance_uid(alice: httpx.AsyncClient, ct: Series) -> None:
    masks = masks_for(ct, range(0, 4))
    annotation_id, group_id = await upload_group(alice, ct, masks, by="sop")
    state = await export(alice, annotation_id, group_id, segmentation_type="LABELMAP")
    assert state["status"] == "succeeded", state
    assert state["stored"] is False
    _assert_same(await _download(alice, state), ct, masks)


async def test_slice_index_base_one(alice: httpx.AsyncClient, ct: Series) -> None:
    masks = masks_for(ct, range(0, 16))
    annotation_id, group_id = await upload_group(alice, ct, masks, slice_offset=1)
    r = await alice.post(
        f"/api/annotations/{annotation_id}/mask-groups/{group_id}/exports", json={}
    )
    assert r.status_code == 409  # slice 16 is past the end when counted from 0
    assert "0016_liver.png" in r.json()["masks"]
    state = await export(alice, annotation_id, group_id, slice_index_base=1)
    assert state["status"] == "succeeded", state
    _assert_same(await _download(alice, state), ct, masks)


async def test_unmappable_masks_are_a_409_naming_them(alice: httpx.AsyncClient, ct: Series) -> None:
    masks = masks_for(ct, range(14, 18))  # 16 and 17 are past the series' end
    annotation_id, group_id = await upload_group(alice, ct, masks)
    r = await alice.post(
        f"/api/annotations/{annotation_id}/mask-groups/{group_id}/exports",
        json={"format": "dicom-seg"},
    )
    assert r.status_code == 409
    body = r.json()
    assert body["count"] == 6
    assert sorted(body["masks"]) == sorted(
        f"{s:04d}_{label}.png" for s in (16, 17) for label in LABELS
    )
    assert "16 instances" in body["detail"]


async def test_size_mismatch_is_a_409(alice: httpx.AsyncClient, ct: Series) -> None:
    masks = masks_for(ct, range(0, 2))
    annotation_id, group_id = await upload_group(alice, ct, masks, declare_size=(32, 64))
    r = await alice.post(
        f"/api/annotations/{annotation_id}/mask-groups/{group_id}/exports", json={}
    )
    assert r.status_code == 409
    assert "differ in size" in r.json()["detail"]
    assert "0000_liver.png (32x64)" in r.json()["masks"]


async def test_overlapping_labels_fail_a_labelmap_but_not_a_binary(
    alice: httpx.AsyncClient, ct: Series
) -> None:
    full = np.ones((ct.rows, ct.columns), dtype=bool)
    masks = {(3, "liver"): full, (3, "spleen"): full}
    annotation_id, group_id = await upload_group(alice, ct, masks)
    state = await export(alice, annotation_id, group_id, segmentation_type="LABELMAP")
    assert state["status"] == "failed"
    assert "overlap" in str(state["error"])
    assert "BINARY" in str(state["error"])
    assert state["download_url"] is None
    state = await export(alice, annotation_id, group_id, segmentation_type="BINARY")
    assert state["status"] == "succeeded", state


async def test_refusals(alice: httpx.AsyncClient, ct: Series, pacs_app: InProcess) -> None:
    annotation_id, group_id = await upload_group(alice, ct, masks_for(ct, range(1)))
    path = f"/api/annotations/{annotation_id}/mask-groups/{group_id}/exports"
    bad = await alice.post(path, json={"format": "nifti"})
    assert bad.status_code == 422
    bad = await alice.post(path, json={"segmentation_type": "FRACTIONAL"})
    assert bad.status_code == 422
    missing = await alice.get(f"{path}/999999")
    assert missing.status_code == 404
    async with pacs_app.client("bob") as bob:
        assert (await bob.post(path, json={})).status_code == 403
    # A group still pending does not export.
    r = await alice.post(
        f"/api/annotations/{annotation_id}/mask-groups",
        json={
            "files": [
                {
                    "slice_index": 1,
                    "label_name": "liver",
                    "size": 3,
                    "md5": "1B2M2Y8AsgTpgAmY7PhCfg==",
                }
            ]
        },
    )
    pending = r.json()["id"]
    r = await alice.post(f"/api/annotations/{annotation_id}/mask-groups/{pending}/exports", json={})
    assert r.status_code == 409
    assert "pending" in r.json()["detail"]


async def test_metadata_json_lists_the_export(
    alice: httpx.AsyncClient, ct: Series, pacs_app: InProcess
) -> None:
    annotation_id, group_id = await upload_group(alice, ct, masks_for(ct, range(2)))
    state = await export(alice, annotation_id, group_id)
    assert state["status"] == "succeeded", state
    document = (pacs_app.settings.server.data_dir / "objects").rglob("metadata.json")
    docs = [
        json.loads(p.read_text()) for p in document if f"/{annotation_id}/{group_id}/" in str(p)
    ]
    assert len(docs) == 1
    (listed,) = docs[0]["exports"]
    assert listed["id"] == state["id"]
    assert listed["key"] == state["object_key"]
    assert listed["sop_instance_uid"] == state["sop_instance_uid"]


async def test_an_export_is_listed_before_anyone_sees_it_succeeded(
    alice: httpx.AsyncClient, ct: Series, pacs_app: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, `succeeded` was committed first and metadata.json rewritten after it: a client
    polling the export could read the document before it listed the export (CI saw it)."""
    seen: list[str] = []
    real = outbox.flush_quietly

    async def watching(new_session: Any, storage: Any, key_prefix: str, group_id: int) -> None:
        async with pacs_app.app.state.sessionmaker() as session:
            rows = await session.scalars(
                select(SegExport.status).where(SegExport.group_id == group_id)
            )
            seen.extend(rows.all())
        await real(new_session, storage, key_prefix, group_id)

    monkeypatch.setattr(outbox, "flush_quietly", watching)
    annotation_id, group_id = await upload_group(alice, ct, masks_for(ct, range(2)))
    state = await export(alice, annotation_id, group_id)
    assert state["status"] == "succeeded", state
    # When the document listing it was written, the export still showed `running`.
    assert seen == ["running"]


async def test_the_janitor_counts_export_objects_as_claimed(
    alice: httpx.AsyncClient, ct: Series, pacs_app: InProcess
) -> None:
    annotation_id, group_id = await upload_group(alice, ct, masks_for(ct, range(2)))
    state = await export(alice, annotation_id, group_id)
    stray = f"mask/{annotation_id}/{group_id}/exports/999999.dcm"
    async with pacs_app.app.state.sessionmaker() as session:
        claimed = await claimed_keys(session, "mask/", [str(state["object_key"]), stray])
    assert claimed == {state["object_key"]}


async def test_an_export_that_stopped_moving_reads_as_failed(
    alice: httpx.AsyncClient, ct: Series, pacs_app: InProcess
) -> None:
    annotation_id, group_id = await upload_group(alice, ct, masks_for(ct, range(1)))
    long_ago = datetime.now(UTC) - timedelta(minutes=6)
    async with pacs_app.app.state.sessionmaker() as session:
        row = SegExport(
            group_id=group_id,
            annotation_id=annotation_id,
            created_by="alice",
            segmentation_type="LABELMAP",
            status="running",
            phase="building",
            progress=0.8,
            stored=False,
            store=False,
            timings={},
            updated_at=long_ago,
        )
        session.add(row)
        await session.commit()
        export_id = row.id
    path = f"/api/annotations/{annotation_id}/mask-groups/{group_id}/exports/{export_id}"
    state = (await alice.get(path)).json()
    assert state["status"] == "failed"
    assert "interrupted" in state["error"]
    assert state["download_url"] is None


async def test_the_sweep_marks_stale_exports_failed_in_the_database(
    alice: httpx.AsyncClient, ct: Series, pacs_app: InProcess
) -> None:
    annotation_id, group_id = await upload_group(alice, ct, masks_for(ct, range(1)))
    now = datetime.now(UTC)
    ids = {}
    async with pacs_app.app.state.sessionmaker() as session:
        for name, status, updated in [
            ("stale running", "running", now - timedelta(minutes=6)),
            ("stale queued", "queued", now - timedelta(minutes=30)),
            ("moving", "running", now - timedelta(seconds=20)),
        ]:
            row = SegExport(
                group_id=group_id,
                annotation_id=annotation_id,
                created_by="alice",
                segmentation_type="LABELMAP",
                status=status,
                phase="building",
                progress=0.5,
                stored=False,
                store=False,
                timings={},
                updated_at=updated,
            )
            session.add(row)
            await session.flush()
            ids[name] = row.id
        await session.commit()
    # What the server does at start-up and every minute after.
    assert await pacs_app.app.state.exports.sweep() >= 2  # and any an earlier test left
    async with pacs_app.app.state.sessionmaker() as session:
        rows = {name: await session.get(SegExport, i) for name, i in ids.items()}
        for name in ("stale running", "stale queued"):
            row = rows[name]
            assert row is not None
            assert row.status == "failed", name
            assert row.error is not None
            assert "interrupted" in row.error
            assert row.finished_at is not None
        moving = rows["moving"]
        assert moving is not None
        assert moving.status == "running"
        moving.status = "failed"  # not left for other tests to see running
        await session.commit()


async def test_reindex_brings_the_groups_exports_back(
    alice: httpx.AsyncClient, ct: Series, pacs_app: InProcess, make_app: AppFactory
) -> None:
    annotation_id, group_id = await upload_group(alice, ct, masks_for(ct, range(3)))
    state = await export(alice, annotation_id, group_id, segmentation_type="BINARY")
    assert state["status"] == "succeeded", state
    # The database is lost; a new, empty one is rebuilt from the bucket alone.
    fresh = await make_app()
    report = await reindex(
        pacs_app.app.state.storage,
        fresh.app.state.sessionmaker,
        pacs_app.settings.object_storage.key_prefix,
    )
    assert report.exports >= 1
    assert not [p for p in report.problems if "export" in p], report.problems
    async with fresh.app.state.sessionmaker() as session:
        row = await session.get(SegExport, state["id"])
    assert row is not None
    assert (row.group_id, row.annotation_id, row.created_by) == (group_id, annotation_id, "alice")
    assert (row.status, row.segmentation_type, row.stored) == ("succeeded", "BINARY", False)
    assert row.object_key == state["object_key"]
    assert row.file_size == state["file_size"]
    assert row.frames == state["frames"]
    assert row.sop_instance_uid == state["sop_instance_uid"]
    assert row.series_instance_uid == state["series_instance_uid"]


@pytest.mark.parametrize("damage", ["missing", "garbled"])
async def test_a_mask_the_worker_cannot_read_fails_the_export_naming_it(
    alice: httpx.AsyncClient, ct: Series, pacs_app: InProcess, damage: str
) -> None:
    annotation_id, group_id = await upload_group(alice, ct, masks_for(ct, range(2)))
    path = (
        pacs_app.settings.server.data_dir
        / "objects"
        / f"mask/{annotation_id}/{group_id}/0001_spleen.png"
    )
    if damage == "missing":
        path.unlink()
    else:
        path.write_bytes(b"not a png at all")
    state = await export(alice, annotation_id, group_id)
    assert state["status"] == "failed"
    error = str(state["error"])
    assert "0001_spleen.png" in error
    assert ("reading mask" if damage == "missing" else "not a readable image") in error
    assert state["download_url"] is None
    assert not list(path.parent.glob("exports/*.dcm"))


async def test_progress_moves_while_the_worker_reads_the_masks(
    alice: httpx.AsyncClient, ct: Series, pacs_app: InProcess
) -> None:
    """One mask is a FIFO: the worker process waits on it after placing the others, and the
    export's row shows that part done before the mask arrives."""
    masks = masks_for(ct, range(4))
    annotation_id, group_id = await upload_group(alice, ct, masks)
    path = (
        pacs_app.settings.server.data_dir
        / "objects"
        / f"mask/{annotation_id}/{group_id}/0003_spleen.png"
    )
    png = path.read_bytes()
    path.unlink()
    os.mkfifo(path)
    base = f"/api/annotations/{annotation_id}/mask-groups/{group_id}/exports"
    r = await alice.post(base, json={"format": "dicom-seg"})
    assert r.status_code == 202, r.text
    state = r.json()
    fed = False
    try:
        placed_but_one = READ_SHARE * (len(masks) - 1) / len(masks)
        seen = []
        for _ in range(1200):  # until the row shows every mask placed but the one held back
            state = (await alice.get(f"{base}/{state['id']}")).json()
            seen.append(state["progress"])
            if state["progress"] >= placed_but_one - 0.001 or state["status"] == "failed":
                break
            await asyncio.sleep(0.05)
        assert state["status"] == "running", state
        assert state["phase"] == "building"
        assert state["progress"] == pytest.approx(placed_but_one, abs=0.001)
        assert seen == sorted(seen)  # never backwards
        await _feed_fifo(path, png)
        fed = True
    finally:
        if not fed:  # a reader left waiting in open() would hold the worker process forever
            with contextlib.suppress(OSError):
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    state = await _finish(alice, base, int(state["id"]))
    assert state["status"] == "succeeded", state
    assert state["progress"] == 1
    _assert_same(await _download(alice, state), ct, masks)


async def _feed_fifo(path: Path, data: bytes) -> None:
    """Write to the FIFO once its reader (the worker process) has opened it."""
    for _ in range(1200):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # no reader yet
                raise
            await asyncio.sleep(0.05)
            continue
        try:
            os.set_blocking(fd, True)
            os.write(fd, data)
        finally:
            os.close(fd)
        return
    raise AssertionError("the worker never opened the mask")


async def _finish(client: httpx.AsyncClient, base: str, export_id: int) -> dict[str, Any]:
    for _ in range(1200):
        state: dict[str, Any] = (await client.get(f"{base}/{export_id}")).json()
        if state["status"] in ("succeeded", "failed"):
            return state
        await asyncio.sleep(0.05)
    raise AssertionError(f"export did not finish: {state}")


async def test_the_source_series_goes_to_the_worker_once(
    alice: httpx.AsyncClient,
    ct: Series,
    pacs_app: InProcess,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A second export of a series names it only; a new worker process (after a crash) is
    sent it again."""
    runner: ExportRunner = pacs_app.app.state.exports
    sent: list[bool] = []
    build_once = runner._build_once

    async def spy(job: Any, slot: Any, request: BuildRequest) -> Any:
        sent.append(bool(request.source_json))
        return await build_once(job, slot, request)

    monkeypatch.setattr(runner, "_build_once", spy)
    masks = masks_for(ct, range(3, 6))
    annotation_id, group_id = await upload_group(alice, ct, masks)
    for _ in range(2):
        state = await export(alice, annotation_id, group_id)
        assert state["status"] == "succeeded", state
    assert sent[-1] is False  # the first may have been sent by an earlier test: the same app
    assert len(sent) == 2

    # A new process holds nothing: told the series' name only, it asks for the series.
    slot = runner.all_slots[0]
    assert slot.procs is not None
    slot.procs.shutdown(wait=True)
    slot.procs = None
    sent.clear()
    state = await export(alice, annotation_id, group_id)
    assert state["status"] == "succeeded", state
    assert sent == [False, True]
    _assert_same(await _download(alice, state), ct, masks)
