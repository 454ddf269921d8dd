"""metadata.json writers claim their outbox row instead of locking it across the write

Revision ID: 0012_metadata_claims
Revises: 0011_group_declarations
Create Date: 2026-11-29 11:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_metadata_claims"
down_revision: str | None = "0011_group_declarations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("metadata_outbox") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("metadata_outbox") as batch:
        batch.drop_column("claimed_at")
        batch.drop_column("claimed_by")
