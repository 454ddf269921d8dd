from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import NEVER_REUSED, Base, BigId, JsonType, UTCDateTime, utcnow

# Export states: queued → running → succeeded | failed.
QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
# The last phase of a running export: its SEG is in storage, and its group's metadata.json is
# being rewritten to list it. The document lists it from this phase on, so that a client that
# sees `succeeded` finds it listed (objects/outbox.py).
LISTING = "listing"


class SegExport(Base):
    """One DICOM SEG export of a complete mask group, and how far it got.

    The SEG object is written once, whole, under the group's prefix (exports/{id}.dcm) before
    the row says `succeeded`; a failed export keeps its reason in `error`."""

    __tablename__ = "seg_exports"
    __table_args__ = (Index("ix_seg_exports_group", "group_id", "id"), NEVER_REUSED)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    group_id: Mapped[int] = mapped_column(
        ForeignKey("mask_groups.id", ondelete="CASCADE"), nullable=False
    )
    annotation_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    created_by: Mapped[str] = mapped_column(String(255), nullable=False)
    format: Mapped[str] = mapped_column(String(16), nullable=False, default="dicom-seg")
    segmentation_type: Mapped[str] = mapped_column(String(16), nullable=False)
    store: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=QUEUED)
    phase: Mapped[str] = mapped_column(String(32), nullable=False, default=QUEUED)
    progress: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    error: Mapped[str | None] = mapped_column(Text)
    object_key: Mapped[str | None] = mapped_column(String(1024))
    file_size: Mapped[int | None] = mapped_column(BigInteger)
    frames: Mapped[int | None] = mapped_column(BigInteger)
    series_instance_uid: Mapped[str | None] = mapped_column(String(64))
    sop_instance_uid: Mapped[str | None] = mapped_column(String(64))
    stored: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # Seconds per part (fetch, decode, build, encode, write, stow): for operators and bench/.
    timings: Mapped[dict[str, Any]] = mapped_column(JsonType, nullable=False, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
