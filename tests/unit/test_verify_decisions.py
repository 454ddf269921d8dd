"""masks/verify.py: which declared files pass, which are missing or mismatched (no I/O)."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import replace

from pacs_ext.masks.multipart import declared_etag
from pacs_ext.masks.verify import DeclaredFile, verify
from pacs_ext.storage.base import ObjectInfo

BODY = b"\x89PNG" + bytes(96)
MD5_HEX = hashlib.md5(BODY).hexdigest()


def declared(name: str = "0001_liver.png", **fields: object) -> DeclaredFile:
    base = DeclaredFile(
        id=1,
        group_id=7,
        filename=name,
        object_key=f"mask/5/7/{name}",
        content_type="image/png",
        size=len(BODY),
        md5=MD5_HEX,
        sha256=None,
        slice_index=1,
        label_name="liver",
        sop_instance_uid=None,
        width=None,
        height=None,
        upload_id=None,
        part_size=None,
        multipart_etag=None,
    )
    return replace(base, **fields)  # type: ignore[arg-type]


def stored(f: DeclaredFile, **fields: object) -> ObjectInfo:
    return replace(ObjectInfo(f.object_key, f.size, MD5_HEX), **fields)  # type: ignore[arg-type]


def test_a_file_stored_as_declared_passes() -> None:
    f = declared()
    result = verify([f], {f.object_key: stored(f)})
    assert result.passed
    assert [d for d, _ in result.ok] == [f]


def test_a_file_not_listed_is_missing() -> None:
    f = declared()
    result = verify([f], {})
    assert not result.passed
    assert [(p.filename, p.reason) for p in result.missing] == [(f.filename, "not uploaded")]
    assert result.mismatched == []


def test_another_size_is_a_mismatch_with_both_sizes() -> None:
    f = declared()
    result = verify([f], {f.object_key: stored(f, size=f.size + 1)})
    (problem,) = result.mismatched
    assert (problem.expected_size, problem.actual_size) == (f.size, f.size + 1)
    assert "size" in problem.reason


def test_another_md5_is_a_mismatch_and_the_etag_is_compared_case_blind() -> None:
    f = declared()
    assert verify([f], {f.object_key: stored(f, etag=MD5_HEX.upper())}).passed
    result = verify([f], {f.object_key: stored(f, etag="0" * 32)})
    (problem,) = result.mismatched
    assert "MD5" in problem.reason


def test_a_file_without_declared_md5_is_not_compared_by_content() -> None:
    f = declared(md5=None)
    assert verify([f], {f.object_key: stored(f, etag="0" * 32)}).passed


def _multipart(parts: list[bytes]) -> tuple[DeclaredFile, str]:
    md5s = [base64.b64encode(hashlib.md5(p).digest()).decode() for p in parts]
    etag = declared_etag(md5s)
    f = declared(
        "volume.nii",
        size=sum(map(len, parts)),
        md5=None,
        upload_id="u1",
        part_size=len(parts[0]),
        multipart_etag=etag.split("-")[0] + "-" + etag.split("-")[1],
    )
    return f, etag


def test_a_multipart_object_passes_when_its_etag_is_the_declared_parts_etag() -> None:
    f, etag = _multipart([b"a" * 10, b"b" * 10, b"c" * 5])
    assert verify([f], {f.object_key: stored(f, etag=etag)}).passed


def test_a_multipart_object_in_another_number_of_parts_is_a_mismatch() -> None:
    f, etag = _multipart([b"a" * 10, b"b" * 10, b"c" * 5])
    result = verify([f], {f.object_key: stored(f, etag=etag.split("-")[0] + "-2")})
    (problem,) = result.mismatched
    assert problem.reason == "stored in 2 parts, not the 3 declared"


def test_multipart_parts_in_another_order_are_a_mismatch() -> None:
    f, _ = _multipart([b"a" * 10, b"b" * 10, b"c" * 5])
    _, swapped = _multipart([b"b" * 10, b"a" * 10, b"c" * 5])
    result = verify([f], {f.object_key: stored(f, etag=swapped)})
    (problem,) = result.mismatched
    assert "part MD5s" in problem.reason


def test_each_file_is_judged_on_its_own() -> None:
    ok, gone, bent = declared("a.png"), declared("b.png"), declared("c.png")
    listing = {ok.object_key: stored(ok), bent.object_key: stored(bent, size=1)}
    result = verify([ok, gone, bent], listing)
    assert [d.filename for d, _ in result.ok] == ["a.png"]
    assert [p.filename for p in result.missing] == ["b.png"]
    assert [p.filename for p in result.mismatched] == ["c.png"]
