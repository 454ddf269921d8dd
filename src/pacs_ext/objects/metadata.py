"""metadata.json, the document stored beside each complete group's files: written here.

It lets the database be rebuilt from the bucket (`pacs-ext reindex`); its reader, which
checks documents against the API's own types, is legacy/metadata.py.

A group may hold 100,000 files, so the document is made in pieces: `document_head()` once,
`files_json()` per chunk of masks (the outbox reads them in keyset pages and awaits between
pages), `assemble()` at the end. Each piece is one pydantic-core `to_json` call, which holds
the GIL throughout (in a worker thread too): one call over 100,000 files took ~0.6 s here,
and that was the event loop's longest stall during `complete`; a 2,000-file piece takes
~12 ms. The pieces join into exactly the bytes `to_json(whole_document, indent=1)` gives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic_core import to_json

from ..models import Annotation, Mask, MaskGroup, SegExport

METADATA_SCHEMA_VERSION = 1

# The columns of a mask that its entry in "files" shows (reading only these, not ORM objects,
# keeps 100,000 rows cheap), and the entry's name for each.
FILE_FIELDS = {
    "id": "id",  # the mask's id: reindex restores it, so links to a mask survive a rebuild
    "object_key": "key",
    "filename": "filename",
    "file_size": "size",
    "md5": "md5",
    "etag": "etag",
    "sha256": "sha256",
    "mime_type": "content_type",
    "label_name": "label_name",
    "slice_index": "slice_index",
    "sop_instance_uid": "sop_instance_uid",
    "width": "width",
    "height": "height",
}
_EMPTY_FILES = b'"files": []\n}'


def document_head(
    annotation: Annotation, group: MaskGroup, exports: Sequence[SegExport] = ()
) -> bytes:
    """The document up to its "files" list (ends with `"files": []\\n}` until assembled);
    `exports`: the group's succeeded DICOM SEG exports (listed, before "files", when any)."""
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
    }
    if exports:
        doc["exports"] = [
            {
                "id": e.id,
                "key": e.object_key,
                "format": e.format,
                "segmentation_type": e.segmentation_type,
                "size": e.file_size,
                "frames": e.frames,
                "created_by": e.created_by,
                "series_instance_uid": e.series_instance_uid,
                "sop_instance_uid": e.sop_instance_uid,
                "stored": e.stored,
                "finished_at": e.finished_at.isoformat() if e.finished_at else None,
            }
            for e in exports
        ]
    doc["files"] = []  # last: assemble() fills the list in at the document's end
    # pydantic-core's encoder: the stdlib one is pure Python once indent is set.
    head = to_json(doc, indent=1)
    assert head.endswith(_EMPTY_FILES)
    return head


def files_json(masks: Sequence[Mask | Mapping[Any, Any]]) -> bytes:
    """The entries of these masks in "files", laid out as in the whole document (indented
    one level deeper than a list of their own; JSON strings never hold a raw newline)."""
    if not masks:
        return b""
    listed = to_json([_entry(m) for m in masks], indent=1)  # b'[\n {...},\n {...}\n]'
    return b" " + listed[2:-2].replace(b"\n", b"\n ")


def _entry(m: Mask | Mapping[Any, Any]) -> dict[str, Any]:
    if isinstance(m, Mapping):
        # Subscripts: a RowMapping's `.get` is the generic Mapping one, in Python.
        return {name: m[col] for col, name in FILE_FIELDS.items()}
    return {name: getattr(m, col) for col, name in FILE_FIELDS.items()}


def assemble(head: bytes, files: Sequence[bytes]) -> bytes:
    """The document: the head with the "files" pieces put in its list, in order. One join
    (bytes.join lets go of the GIL past 1 MiB, so callers may run this in a worker thread)."""
    pieces = [f for f in files if f]
    if not pieces:
        return head
    parts = [head[: -len(_EMPTY_FILES)], b'"files": [\n']
    for i, piece in enumerate(pieces):
        if i:
            parts.append(b",\n")
        parts.append(piece)
    parts.append(b"\n ]\n}")
    return b"".join(parts)


def metadata_document(
    annotation: Annotation,
    group: MaskGroup,
    masks: Sequence[Mask | Mapping[Any, Any]],
    exports: Sequence[SegExport] = (),
) -> bytes:
    """The whole document in one go (a few masks; the outbox builds large ones by chunks)."""
    return assemble(document_head(annotation, group, exports), [files_json(masks)])
