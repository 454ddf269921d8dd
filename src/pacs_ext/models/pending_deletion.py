from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, BigId, JsonType, UTCDateTime, utcnow


class PendingDeletion(Base):
    """Stored objects still to delete for a resource whose rows are already gone.

    Written in the same transaction that deletes the rows, so a storage failure afterwards
    can never leave objects nobody knows about; the request, a retried DELETE, or the
    janitor removes the objects and then this row.
    """

    __tablename__ = "pending_deletions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # The API path of what was deleted (e.g. "annotations/5/mask-groups/7"): a retried
    # DELETE of that path finds its unfinished deletion here.
    resource: Mapped[str] = mapped_column(String(512), nullable=False, index=True)
    requested_by: Mapped[str] = mapped_column(String(255), nullable=False)
    # Either every object under prefix, or exactly keys.
    prefix: Mapped[str | None] = mapped_column(String(1024))
    keys: Mapped[list[Any] | None] = mapped_column(JsonType)
    reason: Mapped[str] = mapped_column(String(64), nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
