"""Reading a group's metadata.json (as masks/verify.py writes it) back, leniently: unknown
fields are ignored so documents from newer versions still restore."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..masks.keys import METADATA_NAME


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class AnnotationDoc(_Lenient):
    id: int = Field(gt=0)
    owner: str = Field(min_length=1, max_length=255)
    study_instance_uid: str = Field(min_length=1, max_length=64)
    series_instance_uid: str | None = Field(None, max_length=64)
    sop_instance_uid: str | None = Field(None, max_length=64)


class GroupDoc(_Lenient):
    id: int = Field(gt=0)
    group_name: str | None = Field(None, max_length=255)
    model_name: str | None = Field(None, max_length=255)
    version: str | None = Field(None, max_length=64)
    modality: str | None = Field(None, max_length=16)
    mask_type: str = Field("segmentation", max_length=64)
    description: str | None = None
    created_by: str = Field(min_length=1, max_length=255)
    slice_count: int = Field(0, ge=0)
    created_at: datetime | None = None
    completed_at: datetime | None = None


class FileDoc(_Lenient):
    key: str = Field(min_length=1, max_length=1024)
    filename: str = Field(min_length=1, max_length=255)
    size: int = Field(ge=0)
    md5: str | None = Field(None, max_length=32)
    etag: str | None = Field(None, max_length=64)
    sha256: str | None = Field(None, max_length=64)
    content_type: str = Field("application/octet-stream", max_length=127)
    label_name: str | None = Field(None, max_length=255)
    slice_index: int | None = None
    sop_instance_uid: str | None = Field(None, max_length=64)
    width: int | None = None
    height: int | None = None


class MetadataDoc(_Lenient):
    schema_version: int
    annotation: AnnotationDoc
    group: GroupDoc
    files: list[FileDoc]


class BadMetadata(ValueError):
    pass


def parse(data: bytes, key: str, key_prefix: str) -> MetadataDoc:
    """The document at key, checked against the ids its key names."""
    try:
        doc = MetadataDoc.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "document"
        raise BadMetadata(f"not a pacs-ext metadata.json ({where}: {first['msg']})") from None
    expected = f"{key_prefix}{doc.annotation.id}/{doc.group.id}/{METADATA_NAME}"
    if key != expected:
        raise BadMetadata(
            f"names annotation {doc.annotation.id} / group {doc.group.id}, "
            f"which belong at {expected}"
        )
    group_prefix = key[: -len(METADATA_NAME)]
    for f in doc.files:
        if f.key != group_prefix + f.filename:
            raise BadMetadata(f"file {f.filename!r} has key {f.key!r} outside its group")
    return doc
