"""mask groups count changes to their declared files

Revision ID: 0011_group_declarations
Revises: 0010_audit_export_queue
Create Date: 2026-11-29 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_group_declarations"
down_revision: str | None = "0010_audit_export_queue"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("mask_groups") as batch:
        batch.add_column(
            sa.Column("declarations", sa.BigInteger(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("mask_groups") as batch:
        batch.drop_column("declarations")
