"""audit batches: one signed_url.issue row per request, naming every object it reaches

Revision ID: 0007_audit_batches
Revises: 0006_metadata_outbox
Create Date: 2026-11-29 01:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007_audit_batches"
down_revision: str | None = "0006_metadata_outbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    # Plain ADD COLUMNs on both databases: no SQLite table rebuild of the trail.
    op.add_column("audit_events", sa.Column("object_keys", JSON, nullable=True))
    op.add_column("audit_events", sa.Column("object_count", sa.Integer(), nullable=True))
    op.add_column("audit_events", sa.Column("url_count", sa.Integer(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        # GET /api/audit?object_key=...: `object_keys @> '["<key>"]'` uses this index.
        op.create_index(
            "ix_audit_events_object_keys",
            "audit_events",
            ["object_keys"],
            postgresql_using="gin",
            postgresql_ops={"object_keys": "jsonb_path_ops"},
        )
    # Rows written before: one object each (its key in object_key); a page of part URLs
    # (part_number set) had an unrecorded number of URLs.
    op.execute(
        "UPDATE audit_events SET object_count = 1, "
        "url_count = CASE WHEN part_number IS NULL THEN 1 END "
        "WHERE action = 'signed_url.issue'"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_audit_events_object_keys", table_name="audit_events")
    op.drop_column("audit_events", "url_count")
    op.drop_column("audit_events", "object_count")
    op.drop_column("audit_events", "object_keys")
