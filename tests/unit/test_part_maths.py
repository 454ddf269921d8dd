"""Part maths of multipart uploads, server and client side, and the ETag of part MD5s."""

from __future__ import annotations

import base64
import hashlib

import pytest

from pacs_ext.client.files import PART_SIZE, needs_part_md5s, part_size
from pacs_ext.core.config import Settings
from pacs_ext.core.errors import InvalidInput
from pacs_ext.masks.multipart import check_part_md5s, declared_etag, part_size_for
from pacs_ext.masks.schemas import MAX_PARTS, MIN_PART_SIZE, FileSpec
from pacs_ext.masks.uploads import part_sizes
from pacs_ext.storage.base import multipart_etag

MiB = 1024 * 1024


def b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def settings(part: int = 16 * MiB) -> Settings:
    return Settings(env="test", object_storage={"multipart_part_size": part})


@pytest.mark.parametrize(
    ("size", "part", "sizes"),
    [
        (0, 5, [0]),  # an empty file is one empty part
        (1, 5, [1]),
        (5, 5, [5]),
        (6, 5, [5, 1]),
        (15, 5, [5, 5, 5]),
        (17, 5, [5, 5, 5, 2]),
    ],
)
def test_part_sizes_are_full_parts_then_the_remainder(
    size: int, part: int, sizes: list[int]
) -> None:
    assert part_sizes(size, part) == sizes
    assert sum(part_sizes(size, part)) == size


def test_the_configured_part_size_is_used() -> None:
    spec = FileSpec(filename="v.nii", size=100 * MiB)
    assert part_size_for(settings(16 * MiB), spec, 0) == 16 * MiB
    assert part_size_for(settings(MIN_PART_SIZE), spec, 0) == MIN_PART_SIZE


def test_the_part_size_grows_in_whole_mib_to_stay_within_max_parts() -> None:
    size = MAX_PARTS * 16 * MiB + 1
    spec = FileSpec(filename="huge.nii", size=size)
    grown = part_size_for(settings(16 * MiB), spec, 0)
    assert grown == 17 * MiB
    assert len(part_sizes(size, grown)) <= MAX_PARTS


def test_a_client_part_size_making_too_many_parts_is_refused_naming_the_field() -> None:
    spec = FileSpec(filename="v.nii", size=MAX_PARTS * MIN_PART_SIZE + 1, part_size=MIN_PART_SIZE)
    with pytest.raises(InvalidInput) as caught:
        part_size_for(settings(), spec, 3)
    assert "files[3].part_size" in str(caught.value)


def test_the_client_grows_its_part_size_like_the_server() -> None:
    assert part_size(1) == PART_SIZE
    size = MAX_PARTS * PART_SIZE + 1
    assert part_size(size) == part_size_for(
        settings(PART_SIZE), FileSpec(filename="x", size=size), 0
    )
    assert needs_part_md5s(MIN_PART_SIZE)
    assert not needs_part_md5s(MIN_PART_SIZE - 1)


def test_the_etag_of_part_md5s_is_the_md5_of_their_digests_and_the_count() -> None:
    parts = [b"a" * 10, b"b" * 3]
    digests = [hashlib.md5(p).digest() for p in parts]
    expected = hashlib.md5(b"".join(digests)).hexdigest() + "-2"
    assert multipart_etag(digests) == expected
    assert declared_etag([b64md5(p) for p in parts]) == expected
    # Order matters: the same parts swapped make another ETag.
    assert declared_etag([b64md5(p) for p in reversed(parts)]) != expected


def test_a_one_part_multipart_file_takes_its_md5_as_the_part_md5() -> None:
    spec = FileSpec(filename="v.nii", size=10 * MiB, md5=b64md5(b"x"))
    check_part_md5s(settings(16 * MiB), [spec], [True])
    assert spec.part_md5s == [spec.md5]


def test_a_multipart_file_with_md5_must_declare_every_part_md5() -> None:
    spec = FileSpec(filename="v.nii", size=40 * MiB, md5=b64md5(b"x"))
    with pytest.raises(InvalidInput, match=r"files\[0\].part_md5s: required"):
        check_part_md5s(settings(16 * MiB), [spec], [True])
    short = FileSpec(
        filename="v.nii", size=40 * MiB, md5=b64md5(b"x"), part_md5s=[b64md5(b"a")] * 2
    )
    with pytest.raises(InvalidInput, match="expected 3 part MD5s"):
        check_part_md5s(settings(16 * MiB), [short], [True])


def test_files_sent_in_one_put_or_declaring_nothing_are_not_checked() -> None:
    single = FileSpec(filename="a.png", size=10, md5=b64md5(b"x"))
    unknown = FileSpec(filename="v.nii", size=40 * MiB)
    check_part_md5s(settings(), [single, unknown], [False, True])
    assert single.part_md5s is None
    assert unknown.part_md5s is None
