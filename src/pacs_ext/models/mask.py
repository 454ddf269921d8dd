from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import NEVER_REUSED, Base, BigId, UTCDateTime, utcnow

if TYPE_CHECKING:
    from .mask_group import MaskGroup


class Mask(Base):
    """A verified object in storage, recorded by complete."""

    __tablename__ = "masks"
    __table_args__ = (
        UniqueConstraint("group_id", "object_key"),
        Index("ix_masks_group_slice", "group_id", "slice_index"),
        NEVER_REUSED,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    group_id: Mapped[int] = mapped_column(
        ForeignKey("mask_groups.id", ondelete="CASCADE"), nullable=False
    )
    slice_index: Mapped[int | None] = mapped_column(Integer)
    sop_instance_uid: Mapped[str | None] = mapped_column(String(64))
    label_name: Mapped[str | None] = mapped_column(String(255))
    filename: Mapped[str] = mapped_column(String(255), nullable=False)
    object_key: Mapped[str] = mapped_column(String(1024), nullable=False)
    mime_type: Mapped[str] = mapped_column(String(127), nullable=False)
    file_size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    md5: Mapped[str | None] = mapped_column(String(32))  # hex
    etag: Mapped[str | None] = mapped_column(String(64))
    sha256: Mapped[str | None] = mapped_column(String(64))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)

    group: Mapped[MaskGroup] = relationship(back_populates="masks")
