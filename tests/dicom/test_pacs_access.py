"""The PACS as the export meets it: credentials sent (none, basic, bearer) and a STOW-RS that
fails (refused, or the PACS gone). A gate (real HTTP) stands between the server and Orthanc."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from fixtures.dicom import Series
from fixtures.dicomweb_gate import DicomwebGate
from fixtures.inprocess import AppFactory
from fixtures.seg_groups import export, masks_for, upload_group
from pacs_ext.dicomweb import DicomwebTarget
from pacs_ext.dicomweb.client import find_series
from pacs_ext.seg.read import read_seg

BASIC = "Basic " + base64.b64encode(b"pacs-ext:pa:ss word").decode()
AUTHS: dict[str, tuple[dict[str, str], str | None]] = {
    "none": ({"auth": "none"}, None),
    "basic": ({"auth": "basic", "username": "pacs-ext", "password": "pa:ss word"}, BASIC),
    "bearer": ({"auth": "bearer", "token": "tok-3f9a"}, "Bearer tok-3f9a"),
}


@pytest.fixture
def gate(orthanc: DicomwebTarget) -> Iterator[DicomwebGate]:
    g = DicomwebGate(upstream=orthanc.url).start()
    yield g
    g.stop()


@pytest.mark.parametrize("auth", sorted(AUTHS))
async def test_the_configured_credentials_reach_the_pacs(
    make_app: AppFactory, gate: DicomwebGate, ct: Series, auth: str
) -> None:
    config, header = AUTHS[auth]
    gate.expected = header
    app = await make_app(dicomweb={"url": gate.url, **config})
    async with app.client("alice") as alice:
        annotation_id, group_id = await upload_group(alice, ct, masks_for(ct, range(3)))
        state = await export(alice, annotation_id, group_id, store=True)
    assert state["status"] == "succeeded", state
    assert state["stored"] is True
    calls = {
        (method, path.split("?")[0].rstrip("/").rsplit("/", 1)[-1]) for method, path, _ in gate.seen
    }
    assert ("GET", "metadata") in calls  # the source series
    assert ("POST", "studies") in calls  # STOW-RS
    assert {sent for _, _, sent in gate.seen} == {header}


async def test_wrong_credentials_are_a_502_naming_the_pacs_answer(
    make_app: AppFactory, gate: DicomwebGate, ct: Series
) -> None:
    gate.expected = "Bearer right"
    app = await make_app(dicomweb={"url": gate.url, "auth": "bearer", "token": "wrong-token"})
    async with app.client("alice") as alice:
        annotation_id, group_id = await upload_group(alice, ct, masks_for(ct, range(1)))
        r = await alice.post(
            f"/api/annotations/{annotation_id}/mask-groups/{group_id}/exports", json={}
        )
    assert r.status_code == 502
    assert "answered 401" in r.json()["detail"]
    assert "wrong-token" not in r.text
    assert gate.seen[-1][2] == "Bearer wrong-token"


@pytest.mark.parametrize("mode", ["refuse", "drop"])
async def test_a_failed_stow_fails_the_export_and_leaves_the_seg_whole(
    make_app: AppFactory, gate: DicomwebGate, ct: Series, orthanc: DicomwebTarget, mode: str
) -> None:
    gate.stow = "refuse" if mode == "refuse" else "drop"
    app = await make_app(dicomweb={"url": gate.url})
    masks = masks_for(ct, range(4, 9))
    async with app.client("alice") as alice:
        annotation_id, group_id = await upload_group(alice, ct, masks)
        state = await export(alice, annotation_id, group_id, store=True)
        assert state["status"] == "failed", state
        assert state["stored"] is False
        error = str(state["error"])
        assert error.startswith("STOW-RS failed"), error
        if mode == "refuse":
            assert "answered 409" in error
            assert "storage quota exceeded" in error  # the PACS's own reason
        else:
            assert "cannot reach" in error
        # Written whole (one PUT of the finished SEG) before the PACS failed: as documented,
        # it stays downloadable, and it is complete.
        r = await alice.get(str(state["download_url"]))
        assert r.status_code == 200
    assert len(r.content) == state["file_size"]
    contents = read_seg(r.content, ct.sop_uids)
    got = {(s.slice_index, label): mask for s, label, mask in contents.iter_masks()}
    assert set(got) == set(masks)
    assert all((got[k] == masks[k]).all() for k in masks)
    # The PACS holds nothing of it.
    found = find_series(
        orthanc, ct.study_instance_uid, SeriesInstanceUID=str(state["series_instance_uid"])
    )
    assert found == []
