"""The exported SEG as other DICOM software sees it: dciodvfy (dicom3tools) and dcmjs (OHIF).

scripts/dicom-tools.sh installs both (scripts/test.sh runs it and exports DCMJS_NODE_PATH)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from fixtures.dicom import Series
from fixtures.seg_groups import LABELS, export, masks_for, upload_group

ROOT = Path(__file__).resolve().parents[2]
READ_SEG = ROOT / "tests" / "fixtures" / "dcmjs" / "read_seg.cjs"
# What dciodvfy (dicom3tools 2022) reports on a LABELMAP SEG: it predates the Label Map
# Segmentation SOP class (2024), so it knows neither the IOD nor segment 0 ("Background").
LABELMAP_KNOWN = ("SegmentNumber", "Information Object Not found", "not monotonically")


@pytest.fixture(scope="module")
def tools() -> dict[str, str]:
    """dciodvfy and dcmjs, installed by the project's script when missing."""
    node_path = os.environ.get("DCMJS_NODE_PATH")
    if not node_path or not shutil.which("dciodvfy"):
        out = subprocess.run(
            [str(ROOT / "scripts" / "dicom-tools.sh")], check=True, capture_output=True, text=True
        ).stdout
        node_path = out.strip().split("=", 1)[1]
    return {"node_path": node_path}


async def _seg(client: httpx.AsyncClient, ct: Series, kind: str, path: Path) -> Path:
    annotation_id, group_id = await upload_group(
        client, ct, masks_for(ct, range(3, 9)), model_name="nnU-Net", version="1"
    )
    state = await export(client, annotation_id, group_id, segmentation_type=kind)
    assert state["status"] == "succeeded", state
    response = await client.get(str(state["download_url"]))
    path.write_bytes(response.content)
    return path


def _dciodvfy(path: Path) -> list[str]:
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


async def test_dciodvfy_finds_no_error_in_a_binary_seg(
    alice: httpx.AsyncClient, ct: Series, tmp_path: Path, tools: dict[str, str]
) -> None:
    path = await _seg(alice, ct, "BINARY", tmp_path / "binary.dcm")
    assert _dciodvfy(path) == []


async def test_dciodvfy_on_a_labelmap_seg_reports_only_that_it_is_newer(
    alice: httpx.AsyncClient, ct: Series, tmp_path: Path, tools: dict[str, str]
) -> None:
    path = await _seg(alice, ct, "LABELMAP", tmp_path / "labelmap.dcm")
    errors = _dciodvfy(path)
    unexpected = [e for e in errors if not any(k in e for k in LABELMAP_KNOWN)]
    assert unexpected == [], errors


@pytest.mark.parametrize("kind", ["BINARY", "LABELMAP"])
async def test_dcmjs_parses_every_segment_and_frame(
    alice: httpx.AsyncClient, ct: Series, tmp_path: Path, tools: dict[str, str], kind: str
) -> None:
    path = await _seg(alice, ct, kind, tmp_path / f"{kind}.dcm")
    run = subprocess.run(
        ["node", str(READ_SEG), str(path)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "NODE_PATH": tools["node_path"]},
    )
    seen = json.loads(run.stdout)
    assert seen["modality"] == "SEG"
    assert seen["segmentationType"] == kind
    labels = [s["label"] for s in seen["segments"] if s["number"] != 0]
    assert sorted(labels) == sorted(LABELS)
    assert all(len(s["lab"]) == 3 for s in seen["segments"] if s["number"] != 0)
    slices = set(range(3, 9))
    frames = len(slices) * (len(LABELS) if kind == "BINARY" else 1)
    assert seen["numberOfFrames"] == frames
    assert len(seen["frames"]) == frames
    assert {f["source"] for f in seen["frames"]} == {ct.sop_uids[s] for s in slices}
    if kind == "BINARY":
        assert sorted({f["segment"] for f in seen["frames"]}) == [1, 2, 3]
        per_frame = ct.rows * ct.columns / 8  # one bit per pixel
    else:
        per_frame = ct.rows * ct.columns  # one label per byte
        # RLE Lossless by default (dicom_seg.compression), decoded by dcmjs's RLE decoder:
        # every label has the pixels of its masks.
        assert seen["transferSyntax"] == "1.2.840.10008.1.2.5"
        masks = masks_for(ct, range(3, 9))
        numbers = {s["label"]: s["number"] for s in seen["segments"]}
        expected = {
            str(numbers[label]): sum(int(m.sum()) for (_, lb), m in masks.items() if lb == label)
            for label in LABELS
        }
        assert seen["labelPixels"] == expected
    assert seen["pixelBytes"] >= frames * per_frame
    assert re.fullmatch(r"[0-9.]+", ct.sop_uids[0])
