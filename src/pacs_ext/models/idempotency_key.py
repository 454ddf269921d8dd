from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, BigId, UTCDateTime, utcnow


class IdempotencyKey(Base):
    """An Idempotency-Key sent with a group creation, and the group it created."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("subject", "key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # Keys are scoped per caller: two users may pick the same key.
    subject: Mapped[str] = mapped_column(String(255), nullable=False)
    key: Mapped[str] = mapped_column(String(255), nullable=False)
    # SHA-256 of the request (annotation id and parsed body): the same key with another
    # request is refused instead of silently answered with the first one's group.
    request_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    annotation_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # Set in the same transaction that claims the key; the key goes when its group does.
    group_id: Mapped[int | None] = mapped_column(
        ForeignKey("mask_groups.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, nullable=False, index=True
    )
