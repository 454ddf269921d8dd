from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, TypeDecorator
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column, relationship

# The enum lives with the JSON schemas, which the client SDK imports without SQLAlchemy.
from ..core.schemas import MaskGroupStatus
from .base import NEVER_REUSED, Base, BigId, TimestampMixin, UTCDateTime

if TYPE_CHECKING:
    from .annotation import Annotation
    from .mask import Mask
    from .mask_group_file import MaskGroupFile


# Short names for queries and comparisons (members, so they type as MaskGroupStatus).
PENDING = MaskGroupStatus.PENDING
COMPLETE = MaskGroupStatus.COMPLETE
EXPIRED = MaskGroupStatus.EXPIRED


class StatusType(TypeDecorator[MaskGroupStatus]):
    """The status column: VARCHAR(16) holding the value, read back as the enum (the schema
    and the stored values are those of the plain-string column it replaces)."""

    impl = String(16)
    cache_ok = True

    def process_bind_param(self, value: MaskGroupStatus | None, dialect: Dialect) -> str | None:
        return None if value is None else MaskGroupStatus(value).value

    def process_result_value(self, value: str | None, dialect: Dialect) -> MaskGroupStatus | None:
        return None if value is None else MaskGroupStatus(value)


class MaskGroup(TimestampMixin, Base):
    __tablename__ = "mask_groups"
    __table_args__ = (
        Index("ix_mask_groups_annotation", "annotation_id", "id"),
        Index("ix_mask_groups_status", "status", "upload_expires_at"),
        NEVER_REUSED,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    annotation_id: Mapped[int] = mapped_column(
        ForeignKey("annotations.id", ondelete="CASCADE"), nullable=False
    )
    group_name: Mapped[str | None] = mapped_column(String(255))
    model_name: Mapped[str | None] = mapped_column(String(255))
    version: Mapped[str | None] = mapped_column(String(64))
    modality: Mapped[str | None] = mapped_column(String(16))
    slice_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    mask_type: Mapped[str] = mapped_column(String(64), nullable=False, default="segmentation")
    description: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(255), nullable=False)
    status: Mapped[MaskGroupStatus] = mapped_column(StatusType(), nullable=False, default=PENDING)
    # Latest expiry of any upload URL issued for this group (the janitor's clock).
    upload_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Upload URLs signed for this group so far (capped by signed_url.max_urls_per_group).
    urls_signed: Mapped[int] = mapped_column(
        BigInteger, nullable=False, default=0, server_default="0"
    )

    # Bumped by every change to the declared files after creation (upload-urls): `complete`
    # verifies storage without holding the group's lock and records the result only if this
    # has not moved meanwhile (masks/service.py).
    declarations: Mapped[int] = mapped_column(
        BigInteger, nullable=False, default=0, server_default="0"
    )

    annotation: Mapped[Annotation] = relationship(back_populates="mask_groups")
    files: Mapped[list[MaskGroupFile]] = relationship(
        back_populates="group", cascade="all, delete-orphan", passive_deletes=True
    )
    masks: Mapped[list[Mask]] = relationship(
        back_populates="group", cascade="all, delete-orphan", passive_deletes=True
    )
