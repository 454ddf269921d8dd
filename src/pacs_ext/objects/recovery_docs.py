"""Recovery documents, written here from rows: an annotation's own document (every column,
so sharing, project, data and timestamps come back), tombstones of deleted annotations and
groups, and audit rows as JSON lines. recovery/documents.py reads them back.

Rows are written column by column from the model, so a column added later is carried
without touching this module."""

from __future__ import annotations

from typing import Any

from pydantic_core import to_json

from ..models import Annotation, Tombstone
from ..models.base import Base

RECOVERY_SCHEMA_VERSION = 1


def row_values(row: Base) -> dict[str, Any]:
    """Every column of the row by its attribute name (datetimes and enums as JSON writes them)."""
    mapper = row.__mapper__
    return {attr.key: getattr(row, attr.key) for attr in mapper.column_attrs}


def annotation_document(annotation: Annotation) -> bytes:
    return to_json(
        {
            "schema_version": RECOVERY_SCHEMA_VERSION,
            "kind": "annotation",
            "annotation": row_values(annotation),
        },
        indent=1,
    )


def tombstone_document(tombstone: Tombstone) -> bytes:
    """What was deleted, so that reindex never brings it back from a document left behind."""
    return to_json(
        {
            "schema_version": RECOVERY_SCHEMA_VERSION,
            "kind": "tombstone",
            "tombstone": {
                "kind": tombstone.kind,
                "id": tombstone.object_id,
                "parent_id": tombstone.parent_id,
                "owner": tombstone.owner,
                "deleted_by": tombstone.deleted_by,
                "deleted_at": tombstone.deleted_at,
            },
        },
        indent=1,
    )


def high_water_document(table: str, reserved: int) -> bytes:
    return to_json(
        {"schema_version": RECOVERY_SCHEMA_VERSION, "table": table, "reserved": reserved}
    )


def json_lines(rows: list[Base]) -> bytes:
    return b"".join(to_json(row_values(r)) + b"\n" for r in rows)
