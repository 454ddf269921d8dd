"""projects on annotations, and the audit trail

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 10:59:36.096997
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("annotation_id", sa.BigInteger(), nullable=True),
        sa.Column("group_id", sa.BigInteger(), nullable=True),
        sa.Column("mask_id", sa.BigInteger(), nullable=True),
        sa.Column("object_key", sa.String(length=1024), nullable=True),
        sa.Column("method", sa.String(length=8), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("part_number", sa.Integer(), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("detail", JSON, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index("ix_audit_events_created", "audit_events", ["created_at"])
    op.create_index("ix_audit_events_subject", "audit_events", ["subject", "id"])
    op.create_index("ix_audit_events_annotation", "audit_events", ["annotation_id", "id"])

    # A plain ADD COLUMN on both databases: no SQLite table rebuild of annotations.
    op.add_column("annotations", sa.Column("project_id", sa.String(length=255), nullable=True))
    op.create_index("ix_annotations_project", "annotations", ["project_id"])


def downgrade() -> None:
    op.drop_index("ix_annotations_project", table_name="annotations")
    # SQLite >= 3.35 drops a column in place. A batch rebuild would DROP TABLE annotations, and
    # with foreign keys on that cascades into mask groups.
    op.drop_column("annotations", "project_id")
    op.drop_index("ix_audit_events_annotation", table_name="audit_events")
    op.drop_index("ix_audit_events_subject", table_name="audit_events")
    op.drop_index("ix_audit_events_created", table_name="audit_events")
    op.drop_table("audit_events")
