"""Check declared files against a listing of the group's prefix (metadata.json: objects/)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from ..storage.base import ObjectInfo
from .schemas import FileProblem


@dataclass(frozen=True, slots=True)
class DeclaredFile:
    """A declared file as `complete` reads it: a plain row, not an ORM object (a group of
    100,000 files as ORM objects costs seconds of event-loop time and long GC pauses)."""

    id: int
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
    upload_id: str | None
    part_size: int | None
    multipart_etag: str | None


@dataclass(slots=True)
class Verification:
    ok: list[tuple[DeclaredFile, ObjectInfo]] = field(default_factory=list)
    missing: list[FileProblem] = field(default_factory=list)
    mismatched: list[FileProblem] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.missing and not self.mismatched


def verify(declared: Sequence[DeclaredFile], listing: Mapping[str, ObjectInfo]) -> Verification:
    result = Verification()
    for f in declared:
        obj = listing.get(f.object_key)
        if obj is None:
            result.missing.append(
                FileProblem(filename=f.filename, object_key=f.object_key, reason="not uploaded")
            )
            continue
        if obj.size != f.size:
            result.mismatched.append(
                FileProblem(
                    filename=f.filename,
                    object_key=f.object_key,
                    reason="size differs from the declared size",
                    expected_size=f.size,
                    actual_size=obj.size,
                )
            )
            continue
        # A multipart ETag is "<md5 of the part MD5s>-<part count>": check the count here; the
        # parts' sizes (and MD5s, when declared) were checked before completing the upload.
        if obj.is_multipart and f.part_size:
            parts = -(-f.size // f.part_size)
            stored = obj.etag.rpartition("-")[2]
            if stored != str(parts):
                result.mismatched.append(
                    FileProblem(
                        filename=f.filename,
                        object_key=f.object_key,
                        reason=f"stored in {stored} parts, not the {parts} declared",
                        expected_size=f.size,
                        actual_size=obj.size,
                    )
                )
                continue
        # The ETag of a multipart object is the MD5 of its parts' MD5s: equal to the one the
        # declared part MD5s make iff every part holds the declared bytes, in order.
        if obj.is_multipart and f.multipart_etag and obj.etag.lower() != f.multipart_etag:
            result.mismatched.append(
                FileProblem(
                    filename=f.filename,
                    object_key=f.object_key,
                    reason=f"stored parts differ from the declared part MD5s (ETag {obj.etag}, "
                    f"declared {f.multipart_etag}); upload the file again",
                    expected_size=f.size,
                    actual_size=obj.size,
                )
            )
            continue
        # Without declared part MD5s nothing was declared about a multipart object's bytes.
        if f.md5 and not obj.is_multipart and obj.etag.lower() != f.md5:
            result.mismatched.append(
                FileProblem(
                    filename=f.filename,
                    object_key=f.object_key,
                    reason="MD5 of the stored object differs from the declared md5",
                    expected_size=f.size,
                    actual_size=obj.size,
                )
            )
            continue
        result.ok.append((f, obj))
    return result


@dataclass(slots=True)
class MaskRow:
    """A verified file about to become a mask (a masks row); `values()` is the mapping a
    bulk insert takes. Not frozen: a frozen dataclass's __init__ costs ~3x more."""

    created_at: datetime
    group_id: int
    slice_index: int | None
    sop_instance_uid: str | None
    label_name: str | None
    filename: str
    object_key: str
    mime_type: str
    file_size: int
    md5: str | None
    etag: str
    sha256: str | None
    width: int | None
    height: int | None

    def values(self) -> dict[str, object]:
        return {
            "created_at": self.created_at,
            "group_id": self.group_id,
            "slice_index": self.slice_index,
            "sop_instance_uid": self.sop_instance_uid,
            "label_name": self.label_name,
            "filename": self.filename,
            "object_key": self.object_key,
            "mime_type": self.mime_type,
            "file_size": self.file_size,
            "md5": self.md5,
            "etag": self.etag,
            "sha256": self.sha256,
            "width": self.width,
            "height": self.height,
        }


def mask_row(f: DeclaredFile, obj: ObjectInfo, now: datetime) -> MaskRow:
    return MaskRow(
        created_at=now,
        group_id=f.group_id,
        slice_index=f.slice_index,
        sop_instance_uid=f.sop_instance_uid,
        label_name=f.label_name,
        filename=f.filename,
        object_key=f.object_key,
        mime_type=f.content_type,
        file_size=obj.size,
        md5=f.md5 or (None if obj.is_multipart else obj.etag.lower()),
        etag=obj.etag,
        sha256=f.sha256,
        width=f.width,
        height=f.height,
    )
