"""Import a DICOM SEG into a new mask group through the normal direct-upload flow.

Each (source image, segment) with any pixel set becomes one PNG `{slice:04d}_{label}.png`
(0 outside, 255 inside) declared with its `sop_instance_uid`, PUT to its signed URL, then the
group is completed. BINARY and LABELMAP SEGs both import; empty masks are not uploaded."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..dicomweb import DicomwebTarget
from ..dicomweb.client import retrieve_instance, series_instances, series_metadata
from ..masks.schemas import MaskGroupRead, UploadTarget
from ..seg.build import encode
from ..seg.geometry import sort_along_normal
from ..seg.pixels import encode_mask
from ..seg.read import SegContents, read_seg
from .api import PacsClient, storage_message
from .errors import ApiError

BATCH = 1000  # files declared per call


@dataclass(frozen=True, slots=True)
class SegImport:
    group: MaskGroupRead
    contents: SegContents
    files: int


async def fetch_seg(
    target: DicomwebTarget,
    study_instance_uid: str,
    series_instance_uid: str,
    sop_instance_uid: str | None = None,
) -> bytes:
    """A SEG's bytes by WADO-RS (the series' only instance when no SOP Instance UID)."""
    if sop_instance_uid is None:
        uids = await asyncio.to_thread(
            series_instances, target, study_instance_uid, series_instance_uid
        )
        if len(uids) != 1:
            raise ValueError(
                f"series {series_instance_uid} holds {len(uids)} instances: name the SEG's "
                "SOP Instance UID"
            )
        sop_instance_uid = uids[0]
    ds = await asyncio.to_thread(
        retrieve_instance, target, study_instance_uid, series_instance_uid, sop_instance_uid
    )
    return await asyncio.to_thread(encode, ds)


async def source_order(
    target: DicomwebTarget, study_instance_uid: str, series_instance_uid: str
) -> list[str]:
    """The source series' SOP Instance UIDs sorted along the normal (slice_index order)."""
    datasets = await asyncio.to_thread(
        series_metadata, target, study_instance_uid, series_instance_uid
    )
    return [str(ds.SOPInstanceUID) for ds in sort_along_normal(datasets)]


async def import_seg(
    client: PacsClient,
    annotation_id: int,
    data: bytes,
    *,
    order: Sequence[str] | None = None,
    group_name: str | None = None,
    concurrency: int = 16,
) -> SegImport:
    """Create a complete mask group of `annotation_id` from the SEG `data`.

    `order`: the source series' SOP Instance UIDs along the normal (source_order()); the
    masks' slice_index is then the image's index in the series. Without it, slice_index is
    the rank among the SEG's own frames."""
    contents = await asyncio.to_thread(read_seg, data, order)
    bodies: dict[str, bytes] = {}
    specs: list[dict[str, object]] = []
    for s, label, mask in contents.iter_masks():
        png = await asyncio.to_thread(encode_mask, mask)
        spec: dict[str, object] = {
            "slice_index": s.slice_index,
            "label_name": label,
            "size": len(png),
            "md5": base64.b64encode(hashlib.md5(png).digest()).decode(),  # noqa: S324
            "content_type": "image/png",
            "sop_instance_uid": s.sop_instance_uid,
            "width": int(mask.shape[1]),
            "height": int(mask.shape[0]),
        }
        name = f"{s.slice_index:04d}_{label}.png"
        bodies[name] = png
        specs.append(spec)
    if not specs:
        raise ValueError("the SEG has no non-empty mask to import")
    meta: dict[str, str | None] = {
        "group_name": group_name or contents.series_description or "imported SEG",
        "model_name": contents.algorithm_name,
        "version": contents.algorithm_version,
        "modality": "SEG",
        "description": f"imported from DICOM SEG series {contents.series_instance_uid}",
    }
    fields: dict[str, Any] = {k: v for k, v in meta.items() if v}
    created = await client.create_group(annotation_id, specs[:BATCH], **fields)
    targets = list(created.uploads)
    for i in range(BATCH, len(specs), BATCH):
        targets += await client.upload_urls(annotation_id, created.id, specs[i : i + BATCH])
    await _put_all(client, targets, bodies, concurrency)
    group = await client.complete(annotation_id, created.id)
    return SegImport(group=group, contents=contents, files=len(specs))


async def _put_all(
    client: PacsClient, targets: list[UploadTarget], bodies: dict[str, bytes], concurrency: int
) -> None:
    limit = asyncio.Semaphore(concurrency)

    async def put(target: UploadTarget) -> None:
        # Masks are small: every target is a single signed PUT, never multipart.
        assert target.url is not None
        async with limit:
            response = await client.storage.request(
                target.method, target.url, headers=target.headers, content=bodies[target.filename]
            )
        if response.status_code not in (200, 201, 204):
            raise ApiError(response.status_code, "StorageError", storage_message(response))

    await asyncio.gather(*(put(t) for t in targets))
