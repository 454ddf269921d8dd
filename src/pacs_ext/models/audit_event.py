from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from .base import NEVER_REUSED, Base, BigId, UTCDateTime, utcnow

# None is SQL NULL here (the default JSON type would store the JSON literal null).
_Detail = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


class AuditEvent(Base):
    """Who did what, when. No foreign keys: the trail outlives what it describes."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_created", "created_at"),
        Index("ix_audit_events_subject", "subject", "id"),
        Index("ix_audit_events_annotation", "annotation_id", "id"),
        # GET /api/audit?object_key=: `object_keys @> ["key"]` (0007_audit_batches).
        Index(
            "ix_audit_events_object_keys",
            "object_keys",
            postgresql_using="gin",
            postgresql_ops={"object_keys": "jsonb_path_ops"},
        ).ddl_if(dialect="postgresql"),
        # reindex moves the sequence past the bucket's mark; SQLite honours it only here.
        NEVER_REUSED,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    subject: Mapped[str] = mapped_column(String(255), nullable=False)
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    annotation_id: Mapped[int | None] = mapped_column(BigInteger)
    group_id: Mapped[int | None] = mapped_column(BigInteger)
    mask_id: Mapped[int | None] = mapped_column(BigInteger)
    # The object an event concerns, when it concerns one (a mask delete; signed URLs that
    # reach a single object).
    object_key: Mapped[str | None] = mapped_column(String(1024))
    # signed_url.issue: one row per request, whatever it signed. The HTTP method, the latest
    # expiry, how many URLs and objects, and every object's key; never a URL or signature.
    # The keys (up to signed_url.max_urls_per_request of them) are read only by
    # GET /api/audit/{id}: lists leave them out (raiseload: no accidental lazy load).
    method: Mapped[str | None] = mapped_column(String(8))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    part_number: Mapped[int | None] = mapped_column(Integer)  # first part, one-object pages
    url_count: Mapped[int | None] = mapped_column(Integer)
    object_count: Mapped[int | None] = mapped_column(Integer)
    object_keys: Mapped[list[str] | None] = mapped_column(
        _Detail, deferred=True, deferred_raiseload=True
    )
    request_id: Mapped[str | None] = mapped_column(String(128))
    detail: Mapped[dict[str, Any] | None] = mapped_column(_Detail)
