"""The resume record: which group an upload went to and what it declared.

For a directory it lives in the directory (`.pacs-ext-upload-a{annotation}.json`), so the
same command run again — from any shell, after a crash or a kill — finds the same group.
For a list of files, or a directory we cannot write to, it lives in the user's cache folder
under a name derived from the server, the annotation and the files' absolute paths.
The server stays the judge of what is uploaded: `complete` lists what is missing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .files import LocalFile

STATE_VERSION = 1


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pacs-ext" / "uploads"


def default_state_path(
    source: Path | Sequence[Path], server: str, annotation_id: int, files: Sequence[LocalFile]
) -> Path:
    if isinstance(source, Path | str) and Path(source).is_dir():
        folder = Path(source)
        if os.access(folder, os.W_OK):
            return folder / f".pacs-ext-upload-a{annotation_id}.json"
    paths = sorted(str(f.path.resolve()) for f in files)
    digest = hashlib.sha256("\n".join([server, str(annotation_id), *paths]).encode()).hexdigest()
    return cache_dir() / f"upload-{digest[:24]}.json"


@dataclass(slots=True)
class FileState:
    """What the state file remembers of one local file (its JSON keys are these fields).
    A value missing or of the wrong type reads as None: it matches nothing, so the file is
    hashed and declared again rather than trusted."""

    size: int | None
    md5: str | None
    sha256: str | None
    part_md5s: list[str] | None
    part_size: int | None
    mtime_ns: int | None
    declared: bool

    @classmethod
    def parse(cls, raw: Mapping[str, object]) -> FileState:
        part_md5s = raw.get("part_md5s")
        return cls(
            size=_int(raw.get("size")),
            md5=_str(raw.get("md5")),
            sha256=_str(raw.get("sha256")),
            part_md5s=[str(m) for m in part_md5s] if isinstance(part_md5s, list) else None,
            part_size=_int(raw.get("part_size")),
            mtime_ns=_int(raw.get("mtime_ns")),
            declared=bool(raw.get("declared")),
        )

    def to_json(self) -> dict[str, object]:
        return {
            "size": self.size,
            "md5": self.md5,
            "sha256": self.sha256,
            "part_md5s": self.part_md5s,
            "part_size": self.part_size,
            "mtime_ns": self.mtime_ns,
            "declared": self.declared,
        }


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


@dataclass
class UploadState:
    path: Path
    server: str
    annotation_id: int
    group_id: int
    group_name: str | None
    files: dict[str, FileState] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> UploadState | None:
        """The saved state, or None when there is none or it cannot be used."""
        try:
            raw = json.loads(path.read_text())
            if raw.get("version") != STATE_VERSION:
                return None
            return cls(
                path=path,
                server=str(raw["server"]),
                annotation_id=int(raw["annotation_id"]),
                group_id=int(raw["group_id"]),
                group_name=raw.get("group_name"),
                files={str(k): FileState.parse(v) for k, v in raw["files"].items()},
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def matches(self, server: str, annotation_id: int, group_name: str | None) -> bool:
        return (
            self.server == server
            and self.annotation_id == annotation_id
            and (group_name is None or group_name == self.group_name)
        )

    def record(self, files: Sequence[LocalFile], *, declared: bool) -> None:
        for f in files:
            self.files[f.name] = FileState(
                size=f.size,
                md5=f.md5,
                sha256=f.sha256,
                part_md5s=f.part_md5s,
                part_size=f.part_size,
                mtime_ns=f.mtime_ns,
                declared=declared,
            )

    def reuse_digests(self, files: Sequence[LocalFile]) -> None:
        """Skip re-hashing files whose size and mtime are as they were when hashed."""
        for f in files:
            old = self.files.get(f.name)
            if old and old.size == f.size and old.mtime_ns == f.mtime_ns:
                f.md5 = old.md5
                f.sha256 = old.sha256
                f.part_md5s = old.part_md5s
                f.part_size = old.part_size

    def needs_declaring(self, f: LocalFile) -> bool:
        old = self.files.get(f.name)
        return not (
            old
            and old.declared
            and old.size == f.size
            and old.md5 == f.md5
            and (f.sha256 is None or old.sha256 == f.sha256)
        )

    def save(self) -> None:
        doc = {
            "version": STATE_VERSION,
            "server": self.server,
            "annotation_id": self.annotation_id,
            "group_id": self.group_id,
            "group_name": self.group_name,
            "files": {name: f.to_json() for name, f in self.files.items()},
        }
        # dumps, then one write: json.dump writes piece by piece, ~3x the CPU (the state is
        # saved after every batch: ~60 ms of an upload of 2,000 files).
        text = json.dumps(doc, separators=(",", ":"))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Atomic: a kill while saving leaves the old record, never half of one.
        fd, tmp = tempfile.mkstemp(prefix=".pacs-ext-state-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
