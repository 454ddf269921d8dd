"""Is `object_storage.legacy_local_dir` the pre-migration mask tree? Checked at start (a
misspelt path used to be accepted silently, and every old mask then got a URL that 404s),
by `/ready` and by `storage check`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

KEY = "object_storage.legacy_local_dir"
SAMPLE = 200  # top-level entries looked at: enough to recognise the layout, cheap on a big tree


@dataclass(frozen=True, slots=True)
class FolderState:
    ok: bool
    detail: str


def _is_id(name: str) -> bool:
    return name.isascii() and name.isdigit() and not name.startswith("0")


def inspect(folder: str) -> FolderState:
    """Exists, is readable, and holds at least one {annotation_id}/{group_id}/ folder
    (blocking: call in a thread from async code)."""
    path = Path(folder)
    if not path.is_absolute():
        return FolderState(False, f"{folder!r} is not an absolute path")
    if not path.exists():
        return FolderState(False, f"{folder} does not exist")
    if not path.is_dir():
        return FolderState(False, f"{folder} is not a folder")
    if not os.access(path, os.R_OK | os.X_OK):
        return FolderState(False, f"{folder} is not readable by this process")
    seen = 0
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                seen += 1
                if seen > SAMPLE:
                    break
                if _is_id(entry.name) and entry.is_dir(follow_symlinks=False):
                    with os.scandir(entry.path) as groups:
                        if any(_is_id(g.name) and g.is_dir() for g in groups):
                            return FolderState(True, f"{folder} (the pre-migration mask tree)")
    except OSError as exc:
        return FolderState(False, f"{folder} cannot be read: {exc.strerror}")
    return FolderState(
        False,
        f"{folder} does not look like the pre-migration mask tree: no "
        "{annotation_id}/{group_id}/ folder among its first entries",
    )
