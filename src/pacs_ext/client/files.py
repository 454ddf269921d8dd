"""Local mask files: find them, name them, and hash them (blocking: call in a thread)."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..masks.schemas import MAX_PARTS, MIN_PART_SIZE
from ..objects.keys import check_filename, parse_slice_filename
from .errors import LocalFileError

CHUNK = 1024 * 1024
# Files up to this size keep the bytes their hash read (LocalFile.body) until they are sent:
# a small file is read once, not once to hash and once more in a thread to send. The
# uploader holds about two batches of files at once (2 x 500 x 64 KiB at most).
KEEP_BODY = 64 * 1024
# Files from S3's smallest part size up declare their part size and part MD5s: the server
# uploads them in parts when they reach its multipart threshold (which the client does not
# know), and then storage checks each part and `complete` the whole object against them.
PART_SIZE = 16 * CHUNK  # the server's default object_storage.multipart_part_size
# Types the server's default allow-list accepts; any other file goes as octet-stream (the
# server refuses types off its list, and never serves bytes as a page).
CONTENT_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".dcm": "application/dicom",
    ".json": "application/json",
    ".nii": "application/octet-stream",
    ".gz": "application/gzip",
}


class LocalSpec(dict[str, object]):
    """A file spec the client wrote itself from a scanned, hashed file (its name checked by
    scan()): PacsClient sends it as it is. Validating it into a FileSpec first cost a
    pydantic round trip per file, for a check the server makes anyway (a 422 names it)."""

    __slots__ = ()


@dataclass(slots=True)
class LocalFile:
    path: Path
    name: str
    size: int
    mtime_ns: int
    content_type: str
    slice_index: int | None = None
    label_name: str | None = None
    md5: str | None = None  # base64, as the API wants it
    sha256: str | None = None
    part_md5s: list[str] | None = None  # base64, one per part of part_size bytes
    part_size: int | None = None
    body: bytes | None = None  # the bytes hashed, for a small file, until it is sent

    def spec(self) -> LocalSpec:
        """The file spec to declare; the local name is kept as the object's name."""
        spec = LocalSpec(
            {
                "filename": self.name,
                "content_type": self.content_type,
                "size": self.size,
                "md5": self.md5,
            }
        )
        if self.sha256 is not None:
            spec["sha256"] = self.sha256
        if self.part_md5s is not None:
            spec["part_size"] = self.part_size or part_size(self.size)
            spec["part_md5s"] = self.part_md5s
        if self.slice_index is not None:
            spec["slice_index"] = self.slice_index
            spec["label_name"] = self.label_name
        return spec


def part_size(size: int) -> int:
    """PART_SIZE, grown in whole MiB to keep within S3's 10,000 parts."""
    needed = -(-size // MAX_PARTS)
    return max(PART_SIZE, -(-needed // CHUNK) * CHUNK)


def needs_part_md5s(size: int) -> bool:
    return size >= MIN_PART_SIZE


def content_type_for(name: str) -> str:
    ext = os.path.splitext(name)[1].lower()
    return CONTENT_TYPES.get(ext, "application/octet-stream")


def scan(source: Path | Sequence[Path], follow_symlinks: bool = False) -> list[LocalFile]:
    """A directory (its top-level files, hidden ones skipped) or a list of files, by name.

    A directory's file that is a symlink to outside it is refused unless follow_symlinks:
    uploading a folder must not send what the folder only points at (e.g. /etc/hostname)."""
    if isinstance(source, Path | str):
        root = Path(source)
        if not root.exists():
            raise LocalFileError(f"{root} does not exist")
        if root.is_dir():
            # scandir: the entries' types come with the listing and each stat is made once
            # (a 2,000-file folder cost four stats per file through Path).
            with os.scandir(root) as listing:
                entries = sorted(
                    (e for e in listing if not e.name.startswith(".") and e.is_file()),
                    key=lambda e: e.name,
                )
            if not entries:
                raise LocalFileError(f"no files to upload in {root}")
            if not follow_symlinks:
                _refuse_symlinks_out(root, [root / e.name for e in entries if e.is_symlink()])
            return _describe((root / e.name, _stat(e)) for e in entries)
        paths = [root]
    else:
        paths = [Path(p) for p in source]
        if not paths:
            raise LocalFileError("no files to upload")
    return _describe((p, None) for p in paths)


def _stat(entry: os.DirEntry[str]) -> os.stat_result | None:
    try:
        return entry.stat()
    except OSError:
        return None  # _describe stats it again and says why it cannot


def _refuse_symlinks_out(root: Path, paths: Sequence[Path]) -> None:
    inside = root.resolve()
    out = []
    for p in paths:
        if p.is_symlink():
            try:
                target = p.resolve(strict=True)
            except (OSError, RuntimeError):
                target = None
            if target is None or not target.is_relative_to(inside):
                out.append(p.name)
    if out:
        more = f" and {len(out) - 5} more" if len(out) > 5 else ""
        raise LocalFileError(
            f"symlink(s) to files outside {root}: {', '.join(out[:5])}{more}; "
            "refusing to upload what the folder only points at (--follow-symlinks allows it)"
        )


def _describe(paths: Iterable[tuple[Path, os.stat_result | None]]) -> list[LocalFile]:
    """LocalFiles of (path, its stat when known) pairs; the stat follows symlinks."""
    out: list[LocalFile] = []
    seen: dict[str, Path] = {}
    bad: list[str] = []
    for path, known in paths:
        name = path.name
        try:
            check_filename(name)
        except ValueError as exc:
            bad.append(f"{name!r} ({exc})")
            continue
        if name in seen:
            raise LocalFileError(f"two files are named {name!r}: {seen[name]} and {path}")
        seen[name] = path
        try:
            st = known or path.stat()
        except OSError as exc:
            raise LocalFileError(f"cannot read {path}: {exc.strerror}") from None
        if not stat.S_ISREG(st.st_mode):
            raise LocalFileError(f"{path} is not a regular file")
        parsed = parse_slice_filename(name)
        out.append(
            LocalFile(
                path=path,
                name=name,
                size=st.st_size,
                mtime_ns=st.st_mtime_ns,
                content_type=content_type_for(name),
                slice_index=parsed[0] if parsed else None,
                label_name=parsed[1] if parsed else None,
            )
        )
    if bad:
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise LocalFileError(
            f"file names the server cannot store: {', '.join(bad[:5])}{more}; "
            "rename them to [A-Za-z0-9._-] (e.g. 0001_liver.png)"
        )
    return out


def hash_file(f: LocalFile, sha256: bool) -> None:
    """Size, MD5 (and SHA-256) computed in one read; the size read is the size declared.

    Plain file descriptor reads, no file object: for a small file, what a buffered file object
    adds (its own stat, an isatty ioctl, a seek, a 64 KiB buffer) was most of the system calls
    of hashing it, the call made for every file of an upload."""
    try:
        fd = os.open(f.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            st = os.fstat(fd)
            if st.st_size <= KEEP_BODY:
                # One read, kept: what is sent is exactly what was hashed.
                data = _read_small(fd, st.st_size)
                if data is not None:
                    _set_digests(f, data, st, sha256)
                    return
                os.lseek(fd, 0, os.SEEK_SET)  # it grew past KEEP_BODY since the stat
            _hash_large(f, fd, st, sha256)
        finally:
            os.close(fd)
    except OSError as exc:
        raise LocalFileError(f"cannot read {f.path}: {exc.strerror}") from None


def _read_small(fd: int, size: int) -> bytes | None:
    """The whole file, or None when it holds more than KEEP_BODY bytes. Read to an empty read,
    as a buffered reader does: a short read ends a regular file, but the empty one says so."""
    chunks: list[bytes] = []
    total = 0
    want = size + 1  # one more than the stat said: a file that grew since is seen
    while chunk := os.read(fd, want):
        chunks.append(chunk)
        total += len(chunk)
        if total > KEEP_BODY:
            return None
        want = KEEP_BODY + 1 - total
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _hash_large(f: LocalFile, fd: int, st: os.stat_result, sha256: bool) -> None:
    """Digests and part MD5s of a file read CHUNK by CHUNK (its bytes are not kept)."""
    md5 = hashlib.md5()  # noqa: S324 - S3's Content-MD5 integrity contract
    sha = hashlib.sha256() if sha256 else None
    # Part MD5s in the same read, for the part size of the size known now; the size read
    # decides below whether they are declared.
    step = part_size(st.st_size)
    size = 0
    parts: list[str] = []
    part = hashlib.md5()  # noqa: S324
    in_part = 0
    while chunk := os.read(fd, CHUNK):
        size += len(chunk)
        md5.update(chunk)
        if sha is not None:
            sha.update(chunk)
        while chunk:
            take = chunk[: step - in_part]
            part.update(take)
            in_part += len(take)
            chunk = chunk[len(take) :]
            if in_part == step:
                parts.append(base64.b64encode(part.digest()).decode())
                part, in_part = hashlib.md5(), 0  # noqa: S324
    if in_part or not parts:
        parts.append(base64.b64encode(part.digest()).decode())
    f.size = size
    f.mtime_ns = st.st_mtime_ns
    f.md5 = base64.b64encode(md5.digest()).decode()
    f.sha256 = base64.b64encode(sha.digest()).decode() if sha is not None else None
    f.part_md5s = parts if needs_part_md5s(size) else None
    f.part_size = step if needs_part_md5s(size) else None


def _set_digests(f: LocalFile, data: bytes, st: os.stat_result, sha256: bool) -> None:
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode()  # noqa: S324 - Content-MD5
    f.size = len(data)
    f.mtime_ns = st.st_mtime_ns
    f.md5 = md5
    f.sha256 = base64.b64encode(hashlib.sha256(data).digest()).decode() if sha256 else None
    f.part_md5s = None  # far below S3's smallest part
    f.part_size = None
    f.body = data


def hash_files(files: Sequence[LocalFile], sha256: bool) -> None:
    for f in files:
        if (
            f.md5 is None
            or (sha256 and f.sha256 is None)
            or (needs_part_md5s(f.size) and f.part_md5s is None)
        ):
            hash_file(f, sha256)


def read_range(path: Path, offset: int, length: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read(length)
    if len(data) != length:
        raise LocalFileError(f"{path} is shorter than when it was hashed (it changed)")
    return data
