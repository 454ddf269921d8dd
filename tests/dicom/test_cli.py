"""`pacs-ext export-seg` and `pacs-ext import-seg` against a real server process and Orthanc."""

from __future__ import annotations

from pathlib import Path

import pydicom

from fixtures.dicom import Series
from fixtures.orthanc import seg_server
from fixtures.seg_groups import LABELS, complete_group
from fixtures.server import ServerProcess, make_token

__all__ = ["seg_server"]
from pacs_ext.dicomweb import DicomwebTarget


def test_export_seg_then_import_seg(
    seg_server: ServerProcess, ct: Series, orthanc: DicomwebTarget, tmp_path: Path
) -> None:
    annotation, group = complete_group(seg_server, ct)
    auth = ["--server", seg_server.url, "--token", make_token("alice")]
    out = tmp_path / "organs.dcm"
    run = seg_server.run_cli(
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

    run = seg_server.run_cli("import-seg", "-a", str(annotation), "--file", str(out), *auth)
    assert f"{16 * len(LABELS)} masks from a LABELMAP SEG" in run.stdout

    run = seg_server.run_cli(
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
    with seg_server.client("alice") as c:
        masks = c.get(
            f"/api/annotations/{annotation}/mask-groups/{new_group}/masks",
            params={"limit": 1000},
        ).json()
    assert masks["total"] == 16 * len(LABELS)
    assert {m["slice_index"] for m in masks["items"]} == set(range(16))
    assert {m["sop_instance_uid"] for m in masks["items"]} == set(ct.sop_uids)


def test_export_seg_says_why_it_cannot(seg_server: ServerProcess, ct: Series) -> None:
    annotation, group = complete_group(seg_server, ct)
    auth = ["--server", seg_server.url, "--token", make_token("alice")]
    run = seg_server.run_cli(
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
    run = seg_server.run_cli(
        "export-seg", "-a", str(annotation), "-g", str(group), "--type", "x", *auth, check=False
    )
    assert run.returncode == 2
