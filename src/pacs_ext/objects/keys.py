"""Object keys are made by the server: {prefix}{annotation_id}/{group_id}/{name}."""

from __future__ import annotations

import re

# Matched with fullmatch: `$` would also match before a final newline ("x.png\n").
FILENAME_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")
LABEL_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")
METADATA_NAME = "metadata.json"
# DICOM SEG exports of a group: {prefix}{annotation}/{group}/exports/{export_id}.dcm
EXPORTS_DIR = "exports"
RESERVED_NAMES = frozenset({METADATA_NAME})


def check_filename(name: str) -> str:
    """A filename as given by a client: [A-Za-z0-9._-], no leading dot, no '..'."""
    if not FILENAME_RE.fullmatch(name) or ".." in name:
        raise ValueError(
            "must be 1-200 characters of [A-Za-z0-9._-], not start with '.', and not contain '..'"
        )
    if name in RESERVED_NAMES:
        raise ValueError(f"{name!r} is reserved for the server")
    return name


def check_label(label: str) -> str:
    if not LABEL_RE.fullmatch(label) or ".." in label:
        raise ValueError(
            "must be 1-100 characters of [A-Za-z0-9._-], not start with '.', and not contain '..'"
        )
    return label


def slice_filename(slice_index: int, label_name: str, extension: str = "png") -> str:
    return f"{slice_index:04d}_{label_name}.{extension}"


def group_prefix(key_prefix: str, annotation_id: int, group_id: int) -> str:
    return f"{key_prefix}{annotation_id}/{group_id}/"


def annotation_prefix(key_prefix: str, annotation_id: int) -> str:
    return f"{key_prefix}{annotation_id}/"


def object_key(key_prefix: str, annotation_id: int, group_id: int, name: str) -> str:
    return f"{key_prefix}{annotation_id}/{group_id}/{name}"


FILENAME_PATTERN = re.compile(
    r"(?P<slice>[0-9]+)_(?P<label>[A-Za-z0-9_-][A-Za-z0-9._-]*?)\.[A-Za-z0-9]+"
)


def parse_slice_filename(name: str) -> tuple[int, str] | None:
    """'0001_liver.png' → (1, 'liver'); None when the name does not follow the convention."""
    m = FILENAME_PATTERN.fullmatch(name)
    if not m:
        return None
    return int(m.group("slice")), m.group("label")


def export_key(key_prefix: str, annotation_id: int, group_id: int, export_id: int) -> str:
    return f"{key_prefix}{annotation_id}/{group_id}/{EXPORTS_DIR}/{export_id}.dcm"


# Recovery documents (recovery/, objects/recovery_*.py) live beside the groups, under the same
# prefix (the least-privilege policy covers only it), in a folder no annotation id can name.
RECOVERY_DIR = "_recovery/"


def recovery_prefix(key_prefix: str) -> str:
    return f"{key_prefix}{RECOVERY_DIR}"


def annotation_document_key(key_prefix: str, annotation_id: int) -> str:
    """The annotation's own document, or its tombstone once it is deleted."""
    return f"{key_prefix}{RECOVERY_DIR}annotations/{annotation_id}.json"


def group_tombstone_key(key_prefix: str, group_id: int) -> str:
    return f"{key_prefix}{RECOVERY_DIR}groups/{group_id}.json"


def high_water_key(key_prefix: str, table: str) -> str:
    return f"{key_prefix}{RECOVERY_DIR}ids/{table}.json"


def audit_batch_key(key_prefix: str, first_id: int, last_id: int) -> str:
    # Zero-padded so that a listing returns the batches in id order.
    return f"{key_prefix}{RECOVERY_DIR}audit/{first_id:020d}-{last_id:020d}.jsonl"
