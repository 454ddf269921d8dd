from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, BigId, UTCDateTime, utcnow

# None is SQL NULL here (the default JSON type would store the JSON literal null).
_Detail = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


class AuditEvent(Base):
    """Who did what, when. No foreign keys: the trail outlives what it describes."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_created", "created_at"),
        Index("ix_audit_events_subject", "subject", "id"),
        Index("ix_audit_events_annotation", "annotation_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    subject: Mapped[str] = mapped_column(String(255), nullable=False)
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    annotation_id: Mapped[int | None] = mapped_column(BigInteger)
    group_id: Mapped[int | None] = mapped_column(BigInteger)
    mask_id: Mapped[int | None] = mapped_column(BigInteger)
    # Signed URLs: the object, the HTTP method and the expiry; never the URL or its signature.
    object_key: Mapped[str | None] = mapped_column(String(1024))
    method: Mapped[str | None] = mapped_column(String(8))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    part_number: Mapped[int | None] = mapped_column(Integer)  # multipart upload URLs
    request_id: Mapped[str | None] = mapped_column(String(128))
    detail: Mapped[dict[str, Any] | None] = mapped_column(_Detail)
