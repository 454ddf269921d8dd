from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import NEVER_REUSED, Base, BigId

if TYPE_CHECKING:
    from .mask_group import MaskGroup


class MaskGroupFile(Base):
    """A file a group declared at creation (or via upload-urls); complete checks each one."""

    __tablename__ = "mask_group_files"
    __table_args__ = (UniqueConstraint("group_id", "filename"), NEVER_REUSED)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    group_id: Mapped[int] = mapped_column(
        ForeignKey("mask_groups.id", ondelete="CASCADE"), nullable=False
    )
    filename: Mapped[str] = mapped_column(String(255), nullable=False)
    object_key: Mapped[str] = mapped_column(String(1024), nullable=False)
    content_type: Mapped[str] = mapped_column(String(127), nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    md5: Mapped[str | None] = mapped_column(String(32))  # hex
    sha256: Mapped[str | None] = mapped_column(String(64))  # hex
    slice_index: Mapped[int | None] = mapped_column(Integer)
    label_name: Mapped[str | None] = mapped_column(String(255))
    sop_instance_uid: Mapped[str | None] = mapped_column(String(64))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    # Multipart upload in progress for this file (large files only).
    upload_id: Mapped[str | None] = mapped_column(String(1024))
    part_size: Mapped[int | None] = mapped_column(BigInteger)
    # The ETag S3 gives the object built from the declared part MD5s ("<hex>-<parts>"):
    # complete compares the stored object's ETag with it.
    multipart_etag: Mapped[str | None] = mapped_column(String(48))

    group: Mapped[MaskGroup] = relationship(back_populates="files")
