"""metadata.json, the document stored beside each complete group's files: written here.

It lets the database be rebuilt from the bucket (`pacs-ext reindex`); its reader, which
checks documents against the API's own types, is legacy/metadata.py."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic_core import to_json

from ..models import Annotation, Mask, MaskGroup

METADATA_SCHEMA_VERSION = 1


def metadata_document(
    annotation: Annotation, group: MaskGroup, masks: Sequence[Mask | Mapping[str, Any]]
) -> bytes:
    def get(m: Mask | Mapping[str, Any], k: str) -> Any:
        return m.get(k) if isinstance(m, Mapping) else getattr(m, k)

    doc = {
        "schema_version": METADATA_SCHEMA_VERSION,
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
            "created_at": group.created_at.isoformat() if group.created_at else None,
            "completed_at": group.completed_at.isoformat() if group.completed_at else None,
            "updated_at": group.updated_at.isoformat() if group.updated_at else None,
        },
        "files": [
            {
                # The mask's id: reindex restores it, so links to a mask survive a rebuild.
                "id": get(m, "id"),
                "key": get(m, "object_key"),
                "filename": get(m, "filename"),
                "size": get(m, "file_size"),
                "md5": get(m, "md5"),
                "etag": get(m, "etag"),
                "sha256": get(m, "sha256"),
                "content_type": get(m, "mime_type"),
                "label_name": get(m, "label_name"),
                "slice_index": get(m, "slice_index"),
                "sop_instance_uid": get(m, "sop_instance_uid"),
                "width": get(m, "width"),
                "height": get(m, "height"),
            }
            for m in masks
        ],
    }
    # pydantic-core's encoder: the stdlib one is pure Python once indent is set.
    return to_json(doc, indent=1)
