"""The client's hashing of local files (client/files.py): what is declared is what was read,
small files keep their bytes, large ones get part MD5s, and a file that grew between its stat
and its read is read to its end."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import pytest

from pacs_ext.client.errors import LocalFileError
from pacs_ext.client.files import KEEP_BODY, PART_SIZE, LocalFile, _read_small, hash_file, scan


def b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def hashed(path: Path, *, sha256: bool = False) -> LocalFile:
    (f,) = scan([path])
    hash_file(f, sha256)
    return f


@pytest.mark.parametrize("size", [0, 1, 20_000, KEEP_BODY])
def test_a_small_file_keeps_the_bytes_it_was_hashed_from(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    (tmp_path / "0001_liver.png").write_bytes(data)
    f = hashed(tmp_path / "0001_liver.png", sha256=True)
    assert (f.size, f.md5, f.body) == (size, b64md5(data), data)
    assert f.sha256 == base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert f.part_md5s is None


def test_a_file_above_the_kept_size_is_hashed_without_keeping_it(tmp_path: Path) -> None:
    data = os.urandom(KEEP_BODY + 1)
    (tmp_path / "a.png").write_bytes(data)
    f = hashed(tmp_path / "a.png")
    assert (f.size, f.md5, f.body, f.part_md5s) == (len(data), b64md5(data), None, None)


def test_a_large_file_declares_the_md5_of_each_part(tmp_path: Path) -> None:
    data = os.urandom(PART_SIZE + 1234)
    (tmp_path / "big.nii").write_bytes(data)
    f = hashed(tmp_path / "big.nii")
    assert (f.size, f.md5, f.part_size) == (len(data), b64md5(data), PART_SIZE)
    assert f.part_md5s == [b64md5(data[:PART_SIZE]), b64md5(data[PART_SIZE:])]


def test_a_file_that_grew_since_its_stat_is_read_to_its_end(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(b"x" * 5000)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert _read_small(fd, 10) == b"x" * 5000  # the stat said 10 bytes
        os.lseek(fd, 0, os.SEEK_SET)
        path.write_bytes(b"y" * (KEEP_BODY + 5))
        assert _read_small(fd, 10) is None  # now too large to keep
    finally:
        os.close(fd)


def test_a_file_that_cannot_be_read_is_a_local_file_error(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(b"x")
    (f,) = scan([path])
    path.unlink()
    with pytest.raises(LocalFileError, match=r"cannot read .*a\.png"):
        hash_file(f, False)
