from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Boolean, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import NEVER_REUSED, Base, BigId, JsonType, TimestampMixin

if TYPE_CHECKING:
    from .mask_group import MaskGroup


class Annotation(TimestampMixin, Base):
    __tablename__ = "annotations"
    __table_args__ = (
        Index("ix_annotations_owner_created", "owner", "created_at"),
        Index("ix_annotations_study", "study_instance_uid"),
        Index("ix_annotations_project", "project_id"),
        NEVER_REUSED,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    owner: Mapped[str] = mapped_column(String(255), nullable=False)
    study_instance_uid: Mapped[str] = mapped_column(String(64), nullable=False)
    series_instance_uid: Mapped[str | None] = mapped_column(String(64))
    sop_instance_uid: Mapped[str | None] = mapped_column(String(64))
    tool_name: Mapped[str | None] = mapped_column(String(255))
    tool_version: Mapped[str | None] = mapped_column(String(64))
    viewer_software: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JsonType, nullable=False, default=dict)
    measurement_values: Mapped[list[Any]] = mapped_column(JsonType, nullable=False, default=list)
    is_shared: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # Tokens listing this project may read the annotation (and write, with the write role).
    project_id: Mapped[str | None] = mapped_column(String(255))

    mask_groups: Mapped[list[MaskGroup]] = relationship(
        back_populates="annotation", cascade="all, delete-orphan", passive_deletes=True
    )
