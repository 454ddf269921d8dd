"""Rows that keep the bucket able to rebuild the database (recovery/, objects/recovery_*.py)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, UTCDateTime, utcnow

# Kinds of recovery documents an outbox row asks for.
ANNOTATION_DOC = "annotation"
GROUP_TOMBSTONE = "mask_group"


class RecoveryOutbox(Base):
    """A recovery document (an annotation's, or a deleted group's tombstone) to write from
    committed state: inserted in the change's transaction, removed once written (by the
    request after its commit, or by the janitor), like metadata_outbox; claimed by its writer
    (`claimed_by`, committed) for the time of its storage PUT, like metadata_outbox."""

    __tablename__ = "recovery_outbox"

    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    object_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    token: Mapped[str] = mapped_column(String(32), nullable=False)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    claimed_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class RecoveryMark(Base):
    """A named counter: `ids:<table>` is the id reserved in the bucket's high-water mark (no
    id above it was ever handed out)."""

    __tablename__ = "recovery_marks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, nullable=False)


class AuditExportQueue(Base):
    """An audit row not in the bucket yet: inserted with the row, in its transaction, and
    removed once the janitor has stored the row's batch. A row that commits late (after rows
    with higher ids were exported) is still here, so the export never skips it."""

    __tablename__ = "audit_export_queue"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
