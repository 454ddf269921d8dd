"""`pacs-ext export-seg` and `pacs-ext import-seg` against a real server process and Orthanc."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from fixtures.dicom import Series
from fixtures.seg_groups import LABELS, masks_for
from fixtures.server import ServerProcess, make_token
from pacs_ext.dicomweb import DicomwebTarget
from pacs_ext.seg.pixels import encode_mask


@pytest.fixture(scope="module")
def srv(
    tmp_path_factory: pytest.TempPathFactory, orthanc: DicomwebTarget
) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("seg-cli")
    server = ServerProcess(
        data_dir=folder,
        database_url=f"sqlite+aiosqlite:///{folder / 'pacs.db'}",
        extra_env={"APP_DICOMWEB__URL": orthanc.url},
    ).start()
    yield server
    server.stop()


def _group(srv: ServerProcess, ct: Series) -> tuple[int, int]:
    masks = masks_for(ct, range(0, 16))
    with srv.client("alice") as c:
        annotation = c.post(
            "/api/annotations",
            json={
                "study_instance_uid": ct.study_instance_uid,
                "series_instance_uid": ct.series_instance_uid,
            },
        ).json()["id"]
        bodies = {f"{s:04d}_{label}.png": encode_mask(m) for (s, label), m in masks.items()}
        files = [
            {
                "slice_index": s,
                "label_name": label,
                "size": len(bodies[f"{s:04d}_{label}.png"]),
                "md5": base64.b64encode(
                    hashlib.md5(bodies[f"{s:04d}_{label}.png"]).digest()
                ).decode(),
            }
            for (s, label) in masks
        ]
        created = c.post(
            f"/api/annotations/{annotation}/mask-groups",
            json={"group_name": "cli organs", "files": files},
        ).json()
        for t in created["uploads"]:
            r = c.put(t["url"], headers=t["headers"], content=bodies[t["filename"]])
            assert r.status_code in (200, 201), r.text
        r = c.post(f"/api/annotations/{annotation}/mask-groups/{created['id']}/complete")
        assert r.status_code == 200, r.text
    return annotation, created["id"]


def test_export_seg_then_import_seg(
    srv: ServerProcess, ct: Series, orthanc: DicomwebTarget, tmp_path: Path
) -> None:
    annotation, group = _group(srv, ct)
    auth = ["--server", srv.url, "--token", make_token("alice")]
    out = tmp_path / "organs.dcm"
    run = srv.run_cli(
        "export-seg", "-a", str(annotation), "-g", str(group), "--store", "--out", str(out), *auth
    )
    assert "LABELMAP SEG, 16 frames" in run.stdout
    assert "stored in the PACS: series" in run.stdout
    assert "100%" in run.stderr  # the progress bar reached its end
    seg = pydicom.dcmread(out)
    assert seg.Modality == "SEG"
    assert seg.SeriesDescription == "cli organs"
    series_uid = run.stdout.split("series ")[1].split(",")[0]
    assert series_uid == seg.SeriesInstanceUID

    run = srv.run_cli("import-seg", "-a", str(annotation), "--file", str(out), *auth)
    assert f"{16 * len(LABELS)} masks from a LABELMAP SEG" in run.stdout

    run = srv.run_cli(
        "import-seg",
        "-a",
        str(annotation),
        "--study",
        ct.study_instance_uid,
        "--series",
        series_uid,
        "--source-series",
        ct.series_instance_uid,
        "--dicomweb-url",
        orthanc.url,
        *auth,
    )
    assert f"{16 * len(LABELS)} masks from a LABELMAP SEG" in run.stdout
    new_group = int(run.stdout.split("mask group ")[1].split(":")[0])
    with srv.client("alice") as c:
        masks = c.get(
            f"/api/annotations/{annotation}/mask-groups/{new_group}/masks",
            params={"limit": 1000},
        ).json()
    assert masks["total"] == 16 * len(LABELS)
    assert {m["slice_index"] for m in masks["items"]} == set(range(16))
    assert {m["sop_instance_uid"] for m in masks["items"]} == set(ct.sop_uids)


def test_export_seg_says_why_it_cannot(srv: ServerProcess, ct: Series) -> None:
    annotation, group = _group(srv, ct)
    auth = ["--server", srv.url, "--token", make_token("alice")]
    run = srv.run_cli(
        "export-seg",
        "-a",
        str(annotation),
        "-g",
        str(group),
        "--slice-index-base",
        "1",
        *auth,
        check=False,
    )
    assert run.returncode == 1
    assert "409 Conflict" in run.stderr
    assert "map to no image" in run.stderr
    assert "0000_liver.png" in run.stderr
    run = srv.run_cli(
        "export-seg", "-a", str(annotation), "-g", str(group), "--type", "x", *auth, check=False
    )
    assert run.returncode == 2
