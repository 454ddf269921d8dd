"""The typed upload path: rows, targets and the status enum keep the database columns and the
JSON contract they replace (pure functions and models, no server)."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic_core import to_json
from sqlalchemy.dialects import postgresql, sqlite

from pacs_ext.core.schemas import MaskGroupStatus
from pacs_ext.masks.schemas import MaskGroupRead, PartTarget, UploadTarget
from pacs_ext.masks.service import issued_urls
from pacs_ext.masks.uploads import FileRow, PartUrl, Target
from pacs_ext.masks.verify import MaskRow
from pacs_ext.models import Mask, MaskGroup, MaskGroupFile
from pacs_ext.models.mask_group import StatusType

NOW = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def a_file_row(**changes: object) -> FileRow:
    row = FileRow(
        group_id=7,
        filename="0001_liver.png",
        object_key="mask/3/7/0001_liver.png",
        content_type="image/png",
        size=20_480,
        md5="00" * 16,
        sha256="11" * 32,
        slice_index=1,
        label_name="liver",
        sop_instance_uid="1.2.3",
        width=512,
        height=256,
        upload_id="up-1",
        part_size=5 * 1024 * 1024,
        multipart_etag="22" * 16 + "-2",
    )
    for name, value in changes.items():
        setattr(row, name, value)
    return row


def columns(model: type[MaskGroupFile] | type[Mask]) -> set[str]:
    return {c.name for c in model.__table__.columns} - {"id"}


def test_a_file_row_inserts_every_column_of_a_declared_file() -> None:
    # A column added to mask_group_files and forgotten here would be NULL on every insert.
    assert set(a_file_row().values()) == columns(MaskGroupFile)


def test_a_mask_row_inserts_every_column_of_a_mask() -> None:
    row = MaskRow(
        created_at=NOW,
        group_id=7,
        slice_index=None,
        sop_instance_uid=None,
        label_name=None,
        filename="a.png",
        object_key="mask/3/7/a.png",
        mime_type="image/png",
        file_size=3,
        md5=None,
        etag="e",
        sha256=None,
        width=None,
        height=None,
    )
    assert set(row.values()) == columns(Mask)


def test_declaring_a_file_again_rewrites_every_column_of_its_row() -> None:
    old = MaskGroupFile(**a_file_row().values())
    new = a_file_row(size=99, md5=None, upload_id=None, part_size=None, multipart_etag=None)
    assert not new.declares_same_bytes(old)
    new.apply_to(old)
    assert {c: getattr(old, c) for c in columns(MaskGroupFile)} == new.values()
    assert new.declares_same_bytes(old)


def test_a_target_serialises_as_the_upload_target_schema() -> None:
    """The dataclasses carry the UploadTarget/PartTarget fields in their order, so the JSON
    the server writes with pydantic-core is what the schema (and the client) reads."""
    part = PartUrl(part_number=2, url="https://s3/k?partNumber=2", headers={"h": "v"}, size=5)
    for target in (
        Target(
            "a.png",
            "mask/1/2/a.png",
            "PUT",
            "https://s3/a",
            {"x": "y"},
            NOW,
            None,
            None,
            None,
            None,
        ),
        Target("b.nii", "mask/1/2/b.nii", "PUT", None, {}, NOW, "up", 5, [part], 3),
    ):
        body = to_json(target)
        assert body.decode() == UploadTarget.model_validate_json(body).model_dump_json()
    assert list(Target.__dataclass_fields__) == list(UploadTarget.model_fields)
    assert list(PartUrl.__dataclass_fields__) == list(PartTarget.model_fields)


def test_the_audit_entry_of_a_page_of_part_urls_names_its_first_and_last_part() -> None:
    def part(n: int) -> PartUrl:
        return PartUrl(part_number=n, url=f"u{n}", headers={}, size=5)

    single = Target("a.png", "k/a", "PUT", "u", {}, NOW, None, None, None, None)
    page = Target("b.nii", "k/b", "PUT", None, {}, NOW, "up", 5, [part(3), part(4)], 9)
    urls = issued_urls([single, page])
    got = [(u.object_key, u.expires_at, u.parts, u.url_count) for u in urls]
    assert got == [("k/a", NOW, None, 1), ("k/b", NOW, (3, 4), 2)]


def test_the_status_is_stored_and_sent_as_its_plain_value() -> None:
    column = StatusType()
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        assert column.process_bind_param(MaskGroupStatus.EXPIRED, dialect) == "expired"
        assert column.process_result_value("complete", dialect) is MaskGroupStatus.COMPLETE
    # The column's DDL is the VARCHAR(16) of the plain-string column (no migration needed).
    assert str(MaskGroup.__table__.c.status.type.compile(sqlite.dialect())) == "VARCHAR(16)"
    read = MaskGroupRead(
        id=1,
        annotation_id=1,
        group_name=None,
        model_name=None,
        version=None,
        modality=None,
        slice_count=0,
        mask_type="segmentation",
        description=None,
        created_by="alice",
        status=MaskGroupStatus.PENDING,
        created_at=NOW,
        updated_at=NOW,
        completed_at=None,
    )
    assert read.model_dump(mode="json")["status"] == "pending"
    assert b'"status":"pending"' in to_json(read.model_dump())
    schema = MaskGroupRead.model_json_schema()
    assert schema["$defs"]["MaskGroupStatus"]["enum"] == ["pending", "complete", "expired"]


def test_the_created_body_is_the_group_and_its_uploads_as_before() -> None:
    """create answers MaskGroupRead's fields then "uploads", byte for byte what serialising
    the merged dict gave before targets were dataclasses; upload-urls just "uploads"."""
    from dataclasses import asdict

    from pacs_ext.masks.endpoints import _with_uploads

    part = PartUrl(part_number=1, url="https://s3/k?partNumber=1", headers={}, size=5)
    targets = [
        Target(
            "a.png", "k/a", "PUT", "https://s3/a?sig=1", {"x": "y"}, NOW, None, None, None, None
        ),
        Target("b.nii", "k/b", "PUT", None, {}, NOW, "up", 5, [part], 3),
    ]
    read = MaskGroupRead(
        id=1,
        annotation_id=1,
        group_name="g",
        model_name=None,
        version=None,
        modality=None,
        slice_count=0,
        mask_type="segmentation",
        description=None,
        created_by="alice",
        status=MaskGroupStatus.PENDING,
        created_at=NOW,
        updated_at=NOW,
        completed_at=None,
    )
    as_dicts = [asdict(t) for t in targets]
    created = _with_uploads(read.model_dump_json().encode(), targets)
    assert created == to_json({**read.model_dump(), "uploads": as_dicts})
    assert _with_uploads(b"{}", targets) == to_json({"uploads": as_dicts})
    assert _with_uploads(b"{}", []) == b'{"uploads":[]}'
