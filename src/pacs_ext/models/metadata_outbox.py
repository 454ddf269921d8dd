from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, UTCDateTime, utcnow


class MetadataOutbox(Base):
    """A group whose metadata.json must be (re)written from committed state.

    Written in the same transaction as the change (complete, PATCH, a mask deleted), so a
    change can never commit without its document following: the request writes the document
    after its commit and removes this row; if it dies first, a retry or the janitor does.
    One row per group; `token` changes on every request, so a writer removes only the row
    it read. A writer claims the row (`claimed_by`, committed) for the time of its storage
    write instead of holding a lock across it; a claim older than the lease is abandoned.
    """

    __tablename__ = "metadata_outbox"

    # No foreign key: a group deleted meanwhile simply has nothing left to write.
    group_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    annotation_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    token: Mapped[str] = mapped_column(String(32), nullable=False)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    claimed_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
