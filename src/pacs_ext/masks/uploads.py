"""Declared files → rows to remember and signed upload targets to hand out."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TypedDict

from ..core.config import Settings
from ..core.errors import InvalidInput
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
    for i, spec in enumerate(files):
        name = spec.name
        if name in seen:
            raise InvalidInput(
                f"files[{i}]: duplicate file name {name!r} (also files[{seen[name]}])",
                extra={"field": f"files[{i}]"},
            )
        seen[name] = i
        allowed = settings.object_storage.allowed_content_types
        if not inert.is_allowed(spec.content_type, allowed):
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


def file_row(key_prefix: str, annotation_id: int, group_id: int, spec: FileSpec) -> dict[str, Any]:
    name = spec.name
    return {
        "group_id": group_id,
        "filename": name,
        "object_key": object_key(key_prefix, annotation_id, group_id, name),
        "content_type": spec.content_type,
        "size": spec.size,
        "md5": b64_to_hex(spec.md5),
        "sha256": b64_to_hex(spec.sha256),
        "slice_index": spec.slice_index,
        "label_name": spec.label_name,
        "sop_instance_uid": spec.sop_instance_uid,
        "width": spec.width,
        "height": spec.height,
        # Set for multipart uploads with declared part MD5s (multipart.multipart_targets).
        "multipart_etag": None,
    }


def upload_spec(row: Mapping[str, Any]) -> UploadSpec:
    return UploadSpec(
        key=row["object_key"],
        content_type=row["content_type"],
        size=row["size"],
        md5_b64=hex_to_b64(row["md5"]),
        sha256_b64=hex_to_b64(row["sha256"]),
    )


class Target(TypedDict):
    """An upload target as sent to the client (the UploadTarget schema), kept as a plain dict:
    creating thousands of pydantic models per request costs more than signing them."""

    filename: str
    object_key: str
    method: str
    url: str | None
    headers: dict[str, str]
    expires_at: datetime
    upload_id: str | None
    part_size: int | None
    parts: list[dict[str, Any]] | None
    part_count: int | None


def single_target(storage: ObjectStorage, row: Mapping[str, Any], ttl: int) -> Target:
    signed = storage.sign_upload(upload_spec(row), ttl)
    return {
        "filename": row["filename"],
        "object_key": row["object_key"],
        "method": "PUT",
        "url": signed.url,
        "headers": signed.headers,
        "expires_at": signed.expires_at,
        "upload_id": None,
        "part_size": None,
        "parts": None,
        "part_count": None,
    }


def part_sizes(size: int, part_size: int) -> list[int]:
    """Sizes of the parts of a multipart upload: full parts, then the remainder (at least one)."""
    count = max(1, -(-size // part_size))
    return [min(part_size, size - (n - 1) * part_size) for n in range(1, count + 1)]


def multipart_target(
    storage: ObjectStorage,
    row: Mapping[str, Any],
    upload_id: str,
    part_size: int,
    ttl: int,
    part_md5s: Sequence[str] | None = None,
    page: tuple[int, int] | None = None,
) -> Target:
    """Signed URLs for the parts of `page` (first part number, count), else all of them."""
    sizes = part_sizes(row["size"], part_size)
    first, count = page or (1, len(sizes))
    parts = []
    expires_at = None
    for n in range(first, min(first + count, len(sizes) + 1)):
        this_size = sizes[n - 1]
        signed = storage.sign_upload_part(
            row["object_key"],
            upload_id,
            n,
            ttl,
            size=this_size,
            md5_b64=part_md5s[n - 1] if part_md5s else None,
        )
        expires_at = signed.expires_at
        parts.append(
            {"part_number": n, "url": signed.url, "headers": signed.headers, "size": this_size}
        )
    assert expires_at is not None
    return {
        "filename": row["filename"],
        "object_key": row["object_key"],
        "method": "PUT",
        "url": None,
        "headers": {},
        "expires_at": expires_at,
        "upload_id": upload_id,
        "part_size": part_size,
        "parts": parts,
        "part_count": len(sizes),
    }
