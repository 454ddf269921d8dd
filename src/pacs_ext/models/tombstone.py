from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, BigId, UTCDateTime, utcnow

# Kinds of deleted things; object_id is that table's id (ids are never reused).
ANNOTATION = "annotation"
MASK_GROUP = "mask_group"
MASK = "mask"


class Tombstone(Base):
    """Something deleted: a retried DELETE of it answers 204 (not 404) while this row lasts.

    General on purpose (kind + id + owner + when), so other jobs (recovery, reindex) can
    tell "deleted" from "never existed". The janitor prunes rows older than
    `janitor.tombstone_retention_seconds`.
    """

    __tablename__ = "tombstones"
    __table_args__ = (Index("ix_tombstones_kind_object", "kind", "object_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    object_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # The id of what it belonged to (the annotation of a group, the group of a mask).
    parent_id: Mapped[int | None] = mapped_column(BigInteger)
    # The annotation's owner (who may see the deletion), and who deleted it.
    owner: Mapped[str] = mapped_column(String(255), nullable=False)
    deleted_by: Mapped[str] = mapped_column(String(255), nullable=False)
    deleted_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, nullable=False, index=True
    )
