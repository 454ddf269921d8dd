"""recovery document writers claim their outbox row instead of locking rows across the write

Revision ID: 0013_recovery_claims
Revises: 0012_metadata_claims
Create Date: 2026-11-29 16:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_recovery_claims"
down_revision: str | None = "0012_metadata_claims"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("recovery_outbox") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("recovery_outbox") as batch:
        batch.drop_column("claimed_at")
        batch.drop_column("claimed_by")
