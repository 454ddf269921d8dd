"""Reading the bucket's recovery documents back (objects/recovery_docs.py writes them):
annotation documents and tombstones, group tombstones, the high-water mark of ids, and the
audit trail's JSON-lines batches.

Like metadata.json, each document is checked with the API's own types: a document the server
could never have written is reported and skipped, never restored into rows the API refuses.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from ..annotations.schemas import ProjectId
from ..core.schemas import MAX_BIGINT, DicomUID, JsonArray, JsonObject, Text
from ..models import AuditEvent
from ..models.base import UTCDateTime
from ..objects.keys import recovery_prefix
from ..storage.base import ObjectStorage, StorageError

FETCH_CONCURRENCY = 16
Id = int


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class AnnotationRecord(_Lenient):
    id: int = Field(gt=0, le=MAX_BIGINT)
    owner: Text = Field(min_length=1, max_length=255)
    study_instance_uid: DicomUID
    series_instance_uid: DicomUID | None = None
    sop_instance_uid: DicomUID | None = None
    tool_name: Text | None = Field(None, max_length=255)
    tool_version: Text | None = Field(None, max_length=64)
    viewer_software: Text | None = Field(None, max_length=255)
    description: Text | None = Field(None, max_length=10_000)
    data: JsonObject = Field(default_factory=dict)
    measurement_values: JsonArray = Field(default_factory=list)
    is_shared: bool = False
    project_id: ProjectId | None = None
    created_at: AwareDatetime
    updated_at: AwareDatetime


class TombstoneRecord(_Lenient):
    kind: Literal["annotation", "mask_group"]
    id: int = Field(gt=0, le=MAX_BIGINT)
    parent_id: int | None = None
    owner: Text = Field(max_length=255)
    deleted_by: Text = Field(max_length=255)
    deleted_at: AwareDatetime


class _AnnotationDocument(_Lenient):
    schema_version: int
    kind: Literal["annotation"]
    annotation: AnnotationRecord


class _TombstoneDocument(_Lenient):
    schema_version: int
    kind: Literal["tombstone"]
    tombstone: TombstoneRecord


class _HighWater(_Lenient):
    table: str
    reserved: int = Field(ge=0, le=MAX_BIGINT)


@dataclass
class RecoveryDocuments:
    annotations: dict[Id, AnnotationRecord] = field(default_factory=dict)
    deleted_annotations: dict[Id, TombstoneRecord] = field(default_factory=dict)
    deleted_groups: dict[Id, TombstoneRecord] = field(default_factory=dict)
    high_water: dict[str, int] = field(default_factory=dict)
    audit_batches: list[str] = field(default_factory=list)


async def read(
    storage: ObjectStorage, keys: Iterable[str], key_prefix: str, problems: list[str]
) -> RecoveryDocuments:
    """The documents among `keys` (a listing); unknown keys under the folder are ignored."""
    base = recovery_prefix(key_prefix)
    out = RecoveryDocuments()
    wanted: list[tuple[str, str, str]] = []  # (key, folder, name)
    for key in sorted(keys):
        if not key.startswith(base):
            continue
        folder, _, name = key[len(base) :].partition("/")
        if folder == "audit" and name.endswith(".jsonl"):
            out.audit_batches.append(key)
        elif folder in ("annotations", "groups", "ids") and name.endswith(".json"):
            wanted.append((key, folder, name[: -len(".json")]))
    gate = asyncio.Semaphore(FETCH_CONCURRENCY)

    async def one(key: str, folder: str, stem: str) -> None:
        async with gate:
            try:
                _take(out, folder, stem, await storage.get_bytes(key))
            except (StorageError, ValidationError, ValueError) as exc:
                problems.append(f"{key}: {_reason(exc)}; skipped")

    await asyncio.gather(*(one(*w) for w in wanted))
    return out


def _take(out: RecoveryDocuments, folder: str, stem: str, data: bytes) -> None:
    if folder == "ids":
        mark = _HighWater.model_validate_json(data)
        if mark.table != stem:
            raise ValueError(f"names table {mark.table!r}")
        out.high_water[stem] = mark.reserved
        return
    if json.loads(data).get("kind") == "tombstone":
        tomb = _TombstoneDocument.model_validate_json(data).tombstone
        expected = "annotation" if folder == "annotations" else "mask_group"
        if tomb.kind != expected or str(tomb.id) != stem:
            raise ValueError(f"a tombstone of {tomb.kind} {tomb.id} does not belong here")
        target = out.deleted_annotations if folder == "annotations" else out.deleted_groups
        target[tomb.id] = tomb
        return
    if folder != "annotations":
        raise ValueError("not a tombstone")
    record = _AnnotationDocument.model_validate_json(data).annotation
    if str(record.id) != stem:
        raise ValueError(f"names annotation {record.id}")
    out.annotations[record.id] = record


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "document"
        return f"not a pacs-ext recovery document ({where}: {first['msg']})"
    return str(exc)


# ---- audit batches ------------------------------------------------------------------------

_AUDIT_COLUMNS = {c.key: c for c in AuditEvent.__table__.columns}


def audit_rows(data: bytes, key: str, problems: list[str]) -> list[dict[str, Any]]:
    """The rows of one batch as insert values: only the model's columns, datetimes parsed.
    A line that is not a row of the model is reported and skipped."""
    rows = []
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            if not isinstance(raw, dict):
                raise ValueError("not an object")
            rows.append(_audit_row(raw))
        except (ValueError, TypeError) as exc:
            problems.append(f"{key} line {number}: {exc}; skipped")
    return rows


def _audit_row(raw: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name, value in raw.items():
        column = _AUDIT_COLUMNS.get(name)
        if column is None:
            continue  # a column of a newer version: not ours to restore
        if isinstance(column.type, UTCDateTime) and value is not None:
            value = datetime.fromisoformat(value)
            if value.tzinfo is None:
                raise ValueError(f"{name}: a time without a UTC offset")
        row[name] = value
    identifier = row.get("id")
    if not isinstance(identifier, int) or not 0 < identifier <= MAX_BIGINT:
        raise ValueError("no valid id")
    for name, column in _AUDIT_COLUMNS.items():
        if not column.nullable and row.get(name) is None and name != "id":
            raise ValueError(f"{name} is missing")
    return row
