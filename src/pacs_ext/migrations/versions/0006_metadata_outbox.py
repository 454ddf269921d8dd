"""metadata outbox: metadata.json is written after the commit, from committed state

Revision ID: 0006_metadata_outbox
Revises: 0005_group_integrity
Create Date: 2026-11-28 22:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_metadata_outbox"
down_revision: str | None = "0005_group_integrity"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "metadata_outbox",
        sa.Column("group_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("annotation_id", sa.BigInteger(), nullable=False),
        sa.Column("token", sa.String(length=32), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("group_id", name=op.f("pk_metadata_outbox")),
    )


def downgrade() -> None:
    op.drop_table("metadata_outbox")
