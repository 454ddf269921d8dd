"""Import a SEG back into a mask group (SDK), from a file and from the PACS: same pixels."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from PIL import Image

from fixtures.dicom import Series
from fixtures.inprocess import BASE_URL, InProcess
from fixtures.seg_groups import LABELS, Masks, export, masks_for, upload_group
from fixtures.server import make_token
from pacs_ext.client.api import PacsClient
from pacs_ext.client.seg_import import fetch_seg, import_seg, source_order
from pacs_ext.dicomweb import DicomwebTarget


def _sdk(app: InProcess) -> PacsClient:
    transport = httpx.ASGITransport(app=app.app)
    return PacsClient(
        BASE_URL, make_token("alice"), transport=transport, storage_transport=transport
    )


async def _group_pixels(client: PacsClient, annotation_id: int, group_id: int) -> Masks:
    out: Masks = {}
    async for mask in client.iter_masks(annotation_id, group_id):
        data = await client.read_mask(annotation_id, group_id, mask.id)
        assert mask.slice_index is not None
        assert mask.label_name is not None
        out[(mask.slice_index, mask.label_name)] = np.asarray(Image.open(io.BytesIO(data))) != 0
    return out


@pytest.mark.parametrize("kind", ["LABELMAP", "BINARY"])
async def test_export_then_import_gives_identical_pixels(
    alice: httpx.AsyncClient,
    pacs_app: InProcess,
    ct: Series,
    orthanc: DicomwebTarget,
    kind: str,
) -> None:
    masks = masks_for(ct, range(1, 15))
    annotation_id, group_id = await upload_group(alice, ct, masks, model_name="unet", version="3")
    state = await export(alice, annotation_id, group_id, segmentation_type=kind, store=True)
    assert state["status"] == "succeeded", state
    async with _sdk(pacs_app) as client:
        # From the SEG file, slice_index from the source series' order (read from the PACS).
        exported = await client.get_export(annotation_id, group_id, int(str(state["id"])))
        data = await client.read_export(exported)
        order = await source_order(orthanc, ct.study_instance_uid, ct.series_instance_uid)
        imported = await import_seg(client, annotation_id, data, order=order)
        assert imported.group.status == "complete"
        assert imported.files == len(masks)
        assert imported.group.model_name == "unet"
        got = await _group_pixels(client, annotation_id, imported.group.id)
        for key, mask in masks.items():
            assert np.array_equal(got[key], mask), key
        uids = {
            m.sop_instance_uid async for m in client.iter_masks(annotation_id, imported.group.id)
        }
        assert uids == {ct.sop_uids[s] for s in range(1, 15)}

        # From its UIDs on the DICOMweb server (WADO-RS).
        pulled = await fetch_seg(orthanc, ct.study_instance_uid, str(state["series_instance_uid"]))
        again = await import_seg(client, annotation_id, pulled, order=order)
        got = await _group_pixels(client, annotation_id, again.group.id)
        assert set(got) == set(masks)
        for key, mask in masks.items():
            assert np.array_equal(got[key], mask), key

        # Exported again, the imported group gives the same SEG pixels (full circle).
        state2 = await export(alice, annotation_id, again.group.id, segmentation_type=kind)
        assert state2["status"] == "succeeded", state2


async def test_import_without_source_order_ranks_the_segs_frames(
    alice: httpx.AsyncClient, pacs_app: InProcess, ct: Series
) -> None:
    masks = masks_for(ct, range(4, 7))
    annotation_id, group_id = await upload_group(alice, ct, masks)
    state = await export(alice, annotation_id, group_id)
    async with _sdk(pacs_app) as client:
        data = await client.read_export(
            await client.get_export(annotation_id, group_id, int(str(state["id"])))
        )
        imported = await import_seg(client, annotation_id, data)
        got = await _group_pixels(client, annotation_id, imported.group.id)
    # Slices 4, 5, 6 of the series are the SEG's frames 0, 1, 2.
    assert set(got) == {(s - 4, label) for s in range(4, 7) for label in LABELS}
    for (s, label), mask in masks.items():
        assert np.array_equal(got[(s - 4, label)], mask)
