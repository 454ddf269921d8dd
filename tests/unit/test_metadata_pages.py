"""metadata.json made page by page (objects/metadata.py) is byte for byte the document
to_json(doc, indent=1) made in one go, whatever the pages, names with quotes and newlines
included: readers, the janitor's comparison and reindex see the same document as before."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic_core import to_json

from pacs_ext.models import Annotation, MaskGroup
from pacs_ext.objects.metadata import FILE_FIELDS, assemble, document_head, files_json

WHEN = datetime(2026, 11, 29, 1, 2, 3, 456789, tzinfo=UTC)


def _mask(i: int) -> dict[str, Any]:
    return {
        "id": 1000 + i,
        "object_key": f"mask/1/2/{i:04d}_li\u00e9ver.png",
        "filename": f"{i:04d}_li\u00e9ver.png",
        "file_size": 100 + i,
        "md5": f"{i:032x}",
        "etag": None if i % 2 else f"{i:032x}-2",
        "sha256": None,
        "mime_type": "image/png",
        "label_name": 'li"ver\n',
        "slice_index": i,
        "sop_instance_uid": None,
        "width": 512,
        "height": None,
    }


def _one_go(annotation: Annotation, group: MaskGroup, masks: list[dict[str, Any]]) -> bytes:
    doc = {
        "schema_version": 1,
        "annotation": {
            "id": annotation.id,
            "owner": annotation.owner,
            "study_instance_uid": annotation.study_instance_uid,
            "series_instance_uid": annotation.series_instance_uid,
            "sop_instance_uid": annotation.sop_instance_uid,
        },
        "group": {
            "id": group.id,
            "group_name": group.group_name,
            "model_name": group.model_name,
            "version": group.version,
            "modality": group.modality,
            "mask_type": group.mask_type,
            "description": group.description,
            "created_by": group.created_by,
            "slice_count": group.slice_count,
            "created_at": WHEN.isoformat(),
            "completed_at": WHEN.isoformat(),
            "updated_at": None,
        },
        "files": [{name: m[col] for col, name in FILE_FIELDS.items()} for m in masks],
    }
    return to_json(doc, indent=1)


def test_pages_join_into_the_one_go_document() -> None:
    annotation = Annotation(id=1, owner="o\nx", study_instance_uid="1.2", series_instance_uid=None)
    group = MaskGroup(
        id=2, group_name="g", description='say "hi"\n', created_by="me", slice_count=3
    )
    group.mask_type, group.created_at, group.completed_at = "segmentation", WHEN, WHEN
    masks = [_mask(i) for i in range(7)]
    head = document_head(annotation, group)
    for pages in ([], [masks[:1]], [masks], [masks[:3], [], masks[3:4], masks[4:]]):
        expected = _one_go(annotation, group, [m for page in pages for m in page])
        assert assemble(head, [files_json(page) for page in pages]) == expected
