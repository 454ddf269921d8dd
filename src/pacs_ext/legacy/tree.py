"""The source tree of a migration: `{annotation_id}/{group_id}/{file}`, and local checksums."""

from __future__ import annotations

import hashlib
import mimetypes
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..core.config import DEFAULT_ALLOWED_CONTENT_TYPES
from ..objects.keys import FILENAME_RE, METADATA_NAME
from ..storage.base import multipart_etag

MiB = 1024 * 1024
# Part sizes other tools upload with (aws cli 8 MiB, rclone 5 MiB), besides ours: an object
# they stored whole in parts still matches the local file without a new upload.
COMMON_PART_SIZES = (5 * MiB, 8 * MiB, 16 * MiB, 64 * MiB)


@dataclass(frozen=True, slots=True)
class LocalFile:
    annotation_id: int
    group_id: int
    name: str
    path: Path
    size: int

    @property
    def rel(self) -> str:
        return f"{self.annotation_id}/{self.group_id}/{self.name}"

    @property
    def group(self) -> tuple[int, int]:
        return (self.annotation_id, self.group_id)


@dataclass
class Tree:
    files: list[LocalFile] = field(default_factory=list)
    # metadata.json of a group in the source: never copied as is for groups the database knows.
    metadata: dict[tuple[int, int], LocalFile] = field(default_factory=dict)
    # Paths (relative to the source) that are not in the layout: reported, never copied.
    ignored: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def _id(name: str) -> int | None:
    """A canonical positive decimal id ("7", not "07" or "+7"): the key is made from it."""
    if name.isascii() and name.isdigit() and not name.startswith("0") and len(name) <= 18:
        return int(name)
    return None


def scan(source: Path, follow_symlinks: bool = False) -> Tree:
    """Walk the source (blocking: call in a thread). Symlinked folders are not followed; a
    symlinked file is taken only when it points inside the source (or follow_symlinks)."""
    tree = Tree()
    root = None if follow_symlinks else source.resolve()
    with os.scandir(source) as level1:
        for a in sorted(level1, key=lambda e: e.name):
            annotation_id = _id(a.name)
            if annotation_id is None or not a.is_dir(follow_symlinks=False):
                tree.ignored.append(a.name + ("/" if a.is_dir() else ""))
                continue
            with os.scandir(a.path) as level2:
                for g in sorted(level2, key=lambda e: e.name):
                    group_id = _id(g.name)
                    if group_id is None or not g.is_dir(follow_symlinks=False):
                        tree.ignored.append(f"{a.name}/{g.name}")
                        continue
                    _scan_group(tree, annotation_id, group_id, Path(g.path), root)
    return tree


def _scan_group(
    tree: Tree, annotation_id: int, group_id: int, folder: Path, root: Path | None
) -> None:
    """root: the resolved source, when symlinks must not lead out of it."""
    with os.scandir(folder) as entries:
        for f in sorted(entries, key=lambda e: e.name):
            rel = f"{annotation_id}/{group_id}/{f.name}"
            if root is not None and f.is_symlink() and not _inside(Path(f.path), root):
                tree.ignored.append(f"{rel} (a symlink out of the source; --follow-symlinks)")
                continue
            if not f.is_file():
                tree.ignored.append(rel + ("/" if f.is_dir() else ""))
                continue
            local = LocalFile(annotation_id, group_id, f.name, Path(f.path), f.stat().st_size)
            if f.name == METADATA_NAME:
                tree.metadata[(annotation_id, group_id)] = local
            elif FILENAME_RE.fullmatch(f.name) and ".." not in f.name:
                tree.files.append(local)
            else:
                tree.ignored.append(rel)


def _inside(path: Path, root: Path) -> bool:
    try:
        return path.resolve(strict=True).is_relative_to(root)
    except (OSError, RuntimeError):  # dangling, or a loop
        return False


def content_type_for(name: str) -> str:
    """The guessed type when the default allow-list has it, else application/octet-stream."""
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed if guessed in DEFAULT_ALLOWED_CONTENT_TYPES else "application/octet-stream"


def checksums(path: Path, part_sizes: Sequence[int] = ()) -> tuple[str, dict[int, str]]:
    """Hex MD5 of the file, and the multipart ETag it would have for each part size
    (blocking: call in a thread). One read whatever the number of part sizes."""
    whole = hashlib.md5()  # noqa: S324 - S3's ETag contract, not a security control
    parts: dict[int, list[bytes]] = {p: [] for p in part_sizes}
    current = {p: hashlib.md5() for p in part_sizes}  # noqa: S324
    filled = dict.fromkeys(part_sizes, 0)
    with open(path, "rb") as fh:
        while chunk := fh.read(MiB):
            whole.update(chunk)
            for p in part_sizes:
                view = memoryview(chunk)
                while view:
                    take = min(len(view), p - filled[p])
                    current[p].update(view[:take])
                    filled[p] += take
                    view = view[take:]
                    if filled[p] == p:
                        parts[p].append(current[p].digest())
                        current[p], filled[p] = hashlib.md5(), 0  # noqa: S324
    for p in part_sizes:
        if filled[p]:
            parts[p].append(current[p].digest())
    return whole.hexdigest(), {p: multipart_etag(parts[p]) for p in part_sizes if parts[p]}


def same_content(local_md5: str, etags: dict[int, str], stored_etag: str) -> bool:
    stored = stored_etag.lower()
    if "-" not in stored:
        return stored == local_md5
    return stored in etags.values()


def part_sizes_for(stored_etags: Iterable[str], ours: int) -> tuple[int, ...]:
    """Part sizes worth trying: only when some stored object is multipart."""
    if not any("-" in e for e in stored_etags):
        return ()
    return tuple(sorted({ours, *COMMON_PART_SIZES}))
