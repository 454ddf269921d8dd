"""Declared files → rows to remember and signed upload targets to hand out."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import TypeAdapter

from ..core.config import Settings
from ..core.errors import InvalidInput
from ..models import MaskGroupFile
from ..objects.keys import object_key
from ..storage import inert
from ..storage.base import ObjectStorage, UploadSpec
from .schemas import FileSpec


def resolve_ttl(settings: Settings, ttl_seconds: int | None) -> int:
    max_ttl = settings.signed_url.max_ttl
    if ttl_seconds is None:
        return settings.signed_url.default_ttl
    if not 1 <= ttl_seconds <= max_ttl:
        raise InvalidInput(
            f"ttl_seconds must be between 1 and {max_ttl} seconds (got {ttl_seconds})",
            extra={"field": "ttl_seconds", "min": 1, "max": max_ttl},
        )
    return ttl_seconds


def uses_multipart(settings: Settings, storage: ObjectStorage, size: int) -> bool:
    return storage.capabilities.multipart and size >= settings.object_storage.multipart_threshold


def check_specs(settings: Settings, storage: ObjectStorage, files: Sequence[FileSpec]) -> None:
    """Refuse duplicates, types off the allow-list and single-PUT files without an MD5, naming
    the field."""
    seen: dict[str, int] = {}
    allowed = settings.object_storage.allowed_content_types
    # Once per request, not per file: a request declares thousands, mostly of one type.
    allowed_set = inert.allowed_types(allowed)
    judged: dict[str, bool] = {}
    for i, spec in enumerate(files):
        name = spec.name
        if name in seen:
            raise InvalidInput(
                f"files[{i}]: duplicate file name {name!r} (also files[{seen[name]}])",
                extra={"field": f"files[{i}]"},
            )
        seen[name] = i
        ok = judged.get(spec.content_type)
        if ok is None:
            ok = judged[spec.content_type] = inert.normalise(spec.content_type) in allowed_set
        if not ok:
            raise InvalidInput(
                f"files[{i}].content_type: {spec.content_type!r} is not allowed; "
                f"allowed types: {', '.join(allowed)}",
                extra={"field": f"files[{i}].content_type", "allowed": list(allowed)},
            )
        if spec.md5 is None and not uses_multipart(settings, storage, spec.size):
            raise InvalidInput(
                f"files[{i}].md5: required (base64 MD5 of the body) for a single PUT upload",
                extra={"field": f"files[{i}].md5"},
            )


def b64_to_hex(value: str | None) -> str | None:
    return None if value is None else binascii.a2b_base64(value).hex()


def hex_to_b64(value: str | None) -> str | None:
    return None if value is None else base64.b64encode(bytes.fromhex(value)).decode()


@dataclass(slots=True)
class FileRow:
    """A declared file about to be stored (a mask_group_files row), typed where a request
    declares thousands. The multipart fields are filled in when its upload is started or
    carried over (multipart.py); `values()` is the mapping a bulk insert takes."""

    group_id: int
    filename: str
    object_key: str
    content_type: str
    size: int
    md5: str | None
    sha256: str | None
    slice_index: int | None
    label_name: str | None
    sop_instance_uid: str | None
    width: int | None
    height: int | None
    upload_id: str | None = None
    part_size: int | None = None
    # Set for multipart uploads with declared part MD5s (multipart.multipart_targets).
    multipart_etag: str | None = None

    def declares_same_bytes(self, old: MaskGroupFile) -> bool:
        """Same size, digests and type as the stored declaration `old`."""
        return (old.size, old.md5, old.sha256, old.content_type) == (
            self.size,
            self.md5,
            self.sha256,
            self.content_type,
        )

    def values(self) -> dict[str, object]:
        return {
            "group_id": self.group_id,
            "filename": self.filename,
            "object_key": self.object_key,
            "content_type": self.content_type,
            "size": self.size,
            "md5": self.md5,
            "sha256": self.sha256,
            "slice_index": self.slice_index,
            "label_name": self.label_name,
            "sop_instance_uid": self.sop_instance_uid,
            "width": self.width,
            "height": self.height,
            "upload_id": self.upload_id,
            "part_size": self.part_size,
            "multipart_etag": self.multipart_etag,
        }

    def apply_to(self, old: MaskGroupFile) -> None:
        """Make the stored declaration `old` this one (a file declared again)."""
        old.group_id, old.filename, old.object_key = self.group_id, self.filename, self.object_key
        old.content_type, old.size, old.md5, old.sha256 = (
            self.content_type,
            self.size,
            self.md5,
            self.sha256,
        )
        old.slice_index, old.label_name, old.sop_instance_uid = (
            self.slice_index,
            self.label_name,
            self.sop_instance_uid,
        )
        old.width, old.height = self.width, self.height
        old.upload_id, old.part_size, old.multipart_etag = (
            self.upload_id,
            self.part_size,
            self.multipart_etag,
        )


def file_row(key_prefix: str, annotation_id: int, group_id: int, spec: FileSpec) -> FileRow:
    name = spec.name
    return FileRow(
        group_id=group_id,
        filename=name,
        object_key=object_key(key_prefix, annotation_id, group_id, name),
        content_type=spec.content_type,
        size=spec.size,
        md5=b64_to_hex(spec.md5),
        sha256=b64_to_hex(spec.sha256),
        slice_index=spec.slice_index,
        label_name=spec.label_name,
        sop_instance_uid=spec.sop_instance_uid,
        width=spec.width,
        height=spec.height,
    )


def upload_spec(row: FileRow) -> UploadSpec:
    return UploadSpec(
        key=row.object_key,
        content_type=row.content_type,
        size=row.size,
        md5_b64=hex_to_b64(row.md5),
        sha256_b64=hex_to_b64(row.sha256),
    )


@dataclass(slots=True)
class PartUrl:
    """One part's signed URL in a multipart target (the PartTarget schema)."""

    part_number: int
    url: str
    headers: dict[str, str]
    size: int


@dataclass(slots=True)
class Target:
    """An upload target as sent to the client (the UploadTarget schema; the same fields in
    the same order). A slots dataclass, not a pydantic model: creating thousands of
    validated models per request costs more than signing them. Not frozen either: a frozen
    dataclass's __init__ costs ~3x more, on the hot path. Serialise lists of them with
    TARGETS (a compiled serialiser; pydantic_core.to_json on dataclasses is ~3x slower)."""

    filename: str
    object_key: str
    method: Literal["PUT"]
    url: str | None
    headers: dict[str, str]
    expires_at: datetime
    upload_id: str | None
    part_size: int | None
    parts: list[PartUrl] | None
    part_count: int | None


def single_target(storage: ObjectStorage, row: FileRow, ttl: int) -> Target:
    signed = storage.sign_upload(upload_spec(row), ttl)
    return Target(
        filename=row.filename,
        object_key=row.object_key,
        method="PUT",
        url=signed.url,
        headers=signed.headers,
        expires_at=signed.expires_at,
        upload_id=None,
        part_size=None,
        parts=None,
        part_count=None,
    )


def part_sizes(size: int, part_size: int) -> list[int]:
    """Sizes of the parts of a multipart upload: full parts, then the remainder (at least one)."""
    count = max(1, -(-size // part_size))
    return [min(part_size, size - (n - 1) * part_size) for n in range(1, count + 1)]


def multipart_target(
    storage: ObjectStorage,
    row: FileRow,
    upload_id: str,
    part_size: int,
    ttl: int,
    part_md5s: Sequence[str] | None = None,
    page: tuple[int, int] | None = None,
) -> Target:
    """Signed URLs for the parts of `page` (first part number, count), else all of them."""
    sizes = part_sizes(row.size, part_size)
    first, count = page or (1, len(sizes))
    parts = []
    expires_at = None
    for n in range(first, min(first + count, len(sizes) + 1)):
        this_size = sizes[n - 1]
        signed = storage.sign_upload_part(
            row.object_key,
            upload_id,
            n,
            ttl,
            size=this_size,
            md5_b64=part_md5s[n - 1] if part_md5s else None,
        )
        expires_at = signed.expires_at
        parts.append(PartUrl(part_number=n, url=signed.url, headers=signed.headers, size=this_size))
    assert expires_at is not None
    return Target(
        filename=row.filename,
        object_key=row.object_key,
        method="PUT",
        url=None,
        headers={},
        expires_at=expires_at,
        upload_id=upload_id,
        part_size=part_size,
        parts=parts,
        part_count=len(sizes),
    )


TARGETS: TypeAdapter[list[Target]] = TypeAdapter(list[Target])
