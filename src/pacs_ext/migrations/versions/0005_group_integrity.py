"""group integrity: tombstones, declared multipart ETags, signed-URL counts per group

Revision ID: 0005_group_integrity
Revises: 0004_ids_never_reused
Create Date: 2026-11-28 22:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_group_integrity"
down_revision: str | None = "0004_ids_never_reused"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "tombstones",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("object_id", sa.BigInteger(), nullable=False),
        sa.Column("parent_id", sa.BigInteger(), nullable=True),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("deleted_by", sa.String(length=255), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tombstones")),
    )
    with op.batch_alter_table("tombstones", schema=None) as batch_op:
        batch_op.create_index("ix_tombstones_kind_object", ["kind", "object_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_tombstones_deleted_at"), ["deleted_at"], unique=False)
    with op.batch_alter_table("mask_group_files", schema=None) as batch_op:
        batch_op.add_column(sa.Column("multipart_etag", sa.String(length=48), nullable=True))
    with op.batch_alter_table("mask_groups", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("urls_signed", sa.BigInteger(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("mask_groups", schema=None) as batch_op:
        batch_op.drop_column("urls_signed")
    with op.batch_alter_table("mask_group_files", schema=None) as batch_op:
        batch_op.drop_column("multipart_etag")
    with op.batch_alter_table("tombstones", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tombstones_deleted_at"))
        batch_op.drop_index("ix_tombstones_kind_object")
    op.drop_table("tombstones")
