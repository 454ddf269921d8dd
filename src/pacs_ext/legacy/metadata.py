"""Reading a group's metadata.json (as objects/metadata.py writes it) back, leniently: unknown
fields are ignored so documents from newer versions still restore.

Leniency stops at what the API itself would refuse: names, labels, content types, UIDs,
numbers and text are checked with the API's own types and validators (masks/schemas.py,
schemas.py), so a document the server could never have written is skipped, not restored
into rows the API then cannot handle."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from ..core.config import DEFAULT_ALLOWED_CONTENT_TYPES
from ..core.schemas import MAX_BIGINT, DicomUID, Text
from ..masks.schemas import FileSpec, MaskGroupBase
from ..objects.keys import METADATA_NAME, object_key
from ..storage.inert import is_allowed

MAX_INT32 = 2**31 - 1  # slice_count, width, height are INTEGER columns


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class AnnotationDoc(_Lenient):
    id: int = Field(gt=0, le=MAX_BIGINT)
    owner: Text = Field(min_length=1, max_length=255)
    study_instance_uid: DicomUID
    series_instance_uid: DicomUID | None = None
    sop_instance_uid: DicomUID | None = None


class GroupDoc(MaskGroupBase):
    """The group's own fields, with the types the API accepts them with."""

    model_config = ConfigDict(extra="ignore")

    id: int = Field(gt=0, le=MAX_BIGINT)
    mask_type: Text = Field("segmentation", min_length=1, max_length=64)
    created_by: Text = Field(min_length=1, max_length=255)
    slice_count: int = Field(0, ge=0, le=MAX_INT32)
    # The server writes UTC offsets; a naive time is not one of its documents (and could not
    # be compared with the others of its annotation).
    created_at: AwareDatetime | None = None
    completed_at: AwareDatetime | None = None
    updated_at: AwareDatetime | None = None


class FileDoc(_Lenient):
    id: int | None = Field(None, gt=0, le=MAX_BIGINT)  # absent in documents before issue 19
    key: Text = Field(min_length=1, max_length=1024)
    filename: str = Field(min_length=1, max_length=255)
    size: int = Field(ge=0)
    md5: Text | None = Field(None, max_length=32)  # base64, or hex when none was declared
    etag: Text | None = Field(None, max_length=64)
    sha256: str | None = Field(None, max_length=64)
    content_type: str = Field("application/octet-stream", max_length=127)
    label_name: str | None = Field(None, max_length=255)
    slice_index: int | None = None
    sop_instance_uid: str | None = Field(None, max_length=64)
    width: int | None = None
    height: int | None = None

    def problem(self) -> str | None:
        """Why the API would refuse this file as a file spec, or None."""
        try:
            FileSpec.model_validate(
                {
                    "filename": self.filename,
                    "slice_index": self.slice_index,
                    "label_name": self.label_name,
                    "content_type": self.content_type,
                    "size": self.size,
                    "sha256": self.sha256,
                    "sop_instance_uid": self.sop_instance_uid,
                    "width": self.width,
                    "height": self.height,
                }
            )
        except ValidationError as exc:
            return _first_error(exc)
        return None


class ExportDoc(_Lenient):
    """A succeeded DICOM SEG export listed in the document (objects/metadata.py)."""

    id: int = Field(gt=0, le=MAX_BIGINT)
    key: Text = Field(min_length=1, max_length=1024)
    format: str = Field("dicom-seg", max_length=16)
    segmentation_type: Literal["LABELMAP", "BINARY"]
    size: int | None = Field(None, ge=0)
    frames: int | None = Field(None, ge=0)
    series_instance_uid: DicomUID | None = None
    sop_instance_uid: DicomUID | None = None
    stored: bool = False
    created_by: Text | None = Field(None, max_length=255)  # absent before reindex knew exports
    finished_at: AwareDatetime | None = None


class MetadataDoc(_Lenient):
    schema_version: int
    annotation: AnnotationDoc
    group: GroupDoc
    files: list[FileDoc]
    exports: list[ExportDoc] = Field(default_factory=list)


class BadMetadata(ValueError):
    pass


def parse(
    data: bytes,
    key: str,
    key_prefix: str,
    allowed_types: Iterable[str] = DEFAULT_ALLOWED_CONTENT_TYPES,
) -> MetadataDoc:
    """The document at key, checked against the ids its key names and the content types the
    API accepts (object_storage.allowed_content_types): nothing restored that it would refuse."""
    try:
        doc = MetadataDoc.model_validate_json(data)
    except ValidationError as exc:
        raise BadMetadata(f"not a pacs-ext metadata.json ({_first_error(exc)})") from None
    expected = object_key(key_prefix, doc.annotation.id, doc.group.id, METADATA_NAME)
    if key != expected:
        raise BadMetadata(
            f"names annotation {doc.annotation.id} / group {doc.group.id}, "
            f"which belong at {expected}"
        )
    group_prefix = key[: -len(METADATA_NAME)]
    seen: set[str] = set()
    for f in doc.files:
        problem = f.problem()
        if problem:
            raise BadMetadata(f"file {f.filename!r}: the API refuses it ({problem})")
        if not is_allowed(f.content_type, allowed_types):
            raise BadMetadata(
                f"file {f.filename!r}: the API refuses content type {f.content_type!r} "
                "(object_storage.allowed_content_types)"
            )
        if f.key != group_prefix + f.filename:
            raise BadMetadata(f"file {f.filename!r} has key {f.key!r} outside its group")
        if f.filename in seen:
            raise BadMetadata(f"file {f.filename!r} is listed twice")
        seen.add(f.filename)
    return doc


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "document"
    return f"{where}: {first['msg']}"
