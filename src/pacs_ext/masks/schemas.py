from __future__ import annotations

import binascii
import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..core.schemas import DicomUID, MaskGroupStatus, Text
from ..objects.keys import check_filename, check_label, slice_filename

MAX_FILES_PER_REQUEST = 10_000
MAX_OBJECT_SIZE = 5 * 1024**4  # S3's limit: 5 TiB
# S3's multipart limits: parts of 5 MiB to 5 GiB (the last may be smaller), at most 10,000.
MIN_PART_SIZE = 5 * 1024**2
MAX_PART_SIZE = 5 * 1024**3
MAX_PARTS = 10_000
_MIME_RE = re.compile(  # fullmatch: `$` would accept "image/png\n"
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}"
)


def _b64_digest(value: str, size: int, field: str) -> str:
    try:
        raw = binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{field} must be base64") from None
    if len(raw) != size:
        raise ValueError(f"{field} must be the base64 of a {size}-byte digest")
    return value


class FileSpec(BaseModel):
    """One file the client will upload: slice_index + label_name, or a filename."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "slice_index": 1,
                    "label_name": "liver",
                    "size": 20480,
                    "md5": "1B2M2Y8AsgTpgAmY7PhCfg==",
                    "sop_instance_uid": "1.2.840.113619.2.55.3.604688119.969.1268071029.401",
                }
            ]
        },
    )

    slice_index: int | None = Field(None, ge=0, le=999_999)
    label_name: str | None = None
    filename: str | None = None
    content_type: str = "image/png"
    size: int = Field(ge=0, le=MAX_OBJECT_SIZE, description="bytes")
    md5: str | None = Field(None, description="base64 MD5 of the body (required for single PUT)")
    sha256: str | None = Field(None, description="base64 SHA-256 of the body")
    sop_instance_uid: DicomUID | None = None
    width: int | None = Field(None, ge=1, le=1_000_000)
    height: int | None = Field(None, ge=1, le=1_000_000)
    # Multipart uploads (files >= object_storage.multipart_threshold on S3-like storage); both
    # are ignored for a file uploaded with a single PUT.
    part_size: int | None = Field(
        None,
        ge=MIN_PART_SIZE,
        le=MAX_PART_SIZE,
        description="bytes per part (default: the server's object_storage.multipart_part_size)",
    )
    part_md5s: list[str] | None = Field(
        None,
        max_length=MAX_PARTS,
        description="base64 MD5 of each part in order; each part URL then binds it (Content-MD5)",
    )

    @field_validator("label_name")
    @classmethod
    def _label(cls, v: str | None) -> str | None:
        return None if v is None else check_label(v)

    @field_validator("filename")
    @classmethod
    def _filename(cls, v: str | None) -> str | None:
        return None if v is None else check_filename(v)

    @field_validator("content_type")
    @classmethod
    def _content_type(cls, v: str) -> str:
        if not _MIME_RE.fullmatch(v):
            raise ValueError("must be a MIME type such as image/png")
        return v

    @field_validator("md5")
    @classmethod
    def _md5(cls, v: str | None) -> str | None:
        return None if v is None else _b64_digest(v, 16, "md5")

    @field_validator("sha256")
    @classmethod
    def _sha256(cls, v: str | None) -> str | None:
        return None if v is None else _b64_digest(v, 32, "sha256")

    @field_validator("part_md5s")
    @classmethod
    def _part_md5s(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else [_b64_digest(m, 16, "each part MD5") for m in v]

    @model_validator(mode="after")
    def _name(self) -> FileSpec:
        if self.filename is None and (self.slice_index is None or self.label_name is None):
            raise ValueError("give either filename, or slice_index and label_name")
        return self

    @property
    def name(self) -> str:
        if self.filename is not None:
            return self.filename
        assert self.slice_index is not None
        assert self.label_name is not None
        return slice_filename(self.slice_index, self.label_name)


class PartTarget(BaseModel):
    part_number: int
    url: str
    headers: dict[str, str]
    size: int


class PartRange(BaseModel):
    """A page of part URLs of one multipart file: parts `from` .. `from` + `count` - 1."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    start: int = Field(1, alias="from", ge=1, le=MAX_PARTS, description="first part number")
    count: int = Field(
        ge=1, le=MAX_PARTS, description="parts wanted (at most signed_url.part_urls_per_page)"
    )


class UploadTarget(BaseModel):
    filename: str
    object_key: str
    method: Literal["PUT"] = "PUT"
    url: str | None = Field(None, description="signed PUT URL (single upload)")
    headers: dict[str, str] = Field(description="exactly the headers to send with the PUT")
    expires_at: datetime
    upload_id: str | None = Field(None, description="multipart upload id (large files)")
    part_size: int | None = None
    parts: list[PartTarget] | None = None
    part_count: int | None = Field(
        None,
        description="parts of the whole multipart upload; when `parts` holds fewer, ask "
        "upload-urls for the next page (`parts: {filename: {from, count}}`)",
    )


class MaskGroupBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    group_name: Text | None = Field(None, max_length=255)
    model_name: Text | None = Field(None, max_length=255)
    version: Text | None = Field(None, max_length=64)
    modality: Text | None = Field(None, max_length=16)
    description: Text | None = Field(None, max_length=10_000)


class MaskGroupCreate(MaskGroupBase):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "group_name": "liver-ct",
                    "model_name": "TotalSegmentator",
                    "version": "2.4.0",
                    "modality": "CT",
                    "mask_type": "segmentation",
                    "files": [
                        {
                            "slice_index": 1,
                            "label_name": "liver",
                            "size": 20480,
                            "md5": "1B2M2Y8AsgTpgAmY7PhCfg==",
                        }
                    ],
                    "ttl_seconds": 600,
                }
            ]
        },
    )

    mask_type: Text = Field("segmentation", min_length=1, max_length=64)
    files: list[FileSpec] = Field(default_factory=list, max_length=MAX_FILES_PER_REQUEST)
    ttl_seconds: int | None = Field(None, description="lifetime of the signed URLs")


class MaskGroupUpdate(MaskGroupBase):
    mask_type: Text | None = Field(None, min_length=1, max_length=64)


class UploadUrlsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    files: list[FileSpec] = Field(min_length=1, max_length=MAX_FILES_PER_REQUEST)
    ttl_seconds: int | None = None
    parts: dict[str, PartRange] | None = Field(
        None,
        max_length=MAX_FILES_PER_REQUEST,
        description="which part URLs to sign for multipart files of `files` (by filename); "
        "others get their first page",
    )


class UploadUrlsResponse(BaseModel):
    uploads: list[UploadTarget]


class MaskGroupRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    annotation_id: int
    group_name: str | None
    model_name: str | None
    version: str | None
    modality: str | None
    slice_count: int
    mask_type: str
    description: str | None
    created_by: str
    status: MaskGroupStatus
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    file_count: int = Field(0, description="files declared for upload")
    mask_count: int = Field(0, description="verified masks")
    total_bytes: int = Field(0, description="bytes of the verified masks")


class MaskGroupCreated(MaskGroupRead):
    uploads: list[UploadTarget]


class MaskRead(BaseModel):
    id: int
    group_id: int
    slice_index: int | None
    sop_instance_uid: str | None
    label_name: str | None
    filename: str
    object_key: str
    mime_type: str
    file_size: int
    md5: str | None = Field(description="base64 MD5")
    sha256: str | None = Field(description="base64 SHA-256")
    width: int | None
    height: int | None
    created_at: datetime


class MaskFilters(BaseModel):
    label_name: Text | None = None
    sop_instance_uid: Text | None = None
    slice_index: int | None = Field(None, ge=0, le=999_999)


class DownloadUrl(BaseModel):
    url: str
    expires_at: datetime


class FileProblem(BaseModel):
    filename: str
    object_key: str
    reason: str
    expected_size: int | None = None
    actual_size: int | None = None
