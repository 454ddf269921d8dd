"""reliability: pending object deletions and idempotency keys

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "pending_deletions",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("resource", sa.String(length=512), nullable=False),
        sa.Column("requested_by", sa.String(length=255), nullable=False),
        sa.Column("prefix", sa.String(length=1024), nullable=True),
        sa.Column(
            "keys",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pending_deletions")),
    )
    with op.batch_alter_table("pending_deletions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_pending_deletions_resource"), ["resource"], unique=False
        )

    op.create_table(
        "idempotency_keys",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("annotation_id", sa.BigInteger(), nullable=False),
        sa.Column("group_id", BIG_ID, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["mask_groups.id"],
            name=op.f("fk_idempotency_keys_group_id_mask_groups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_keys")),
        sa.UniqueConstraint("subject", "key", name=op.f("uq_idempotency_keys_subject")),
    )
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_idempotency_keys_group_id"), ["group_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_idempotency_keys_created_at"), ["created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_idempotency_keys_created_at"))
        batch_op.drop_index(batch_op.f("ix_idempotency_keys_group_id"))
    op.drop_table("idempotency_keys")
    with op.batch_alter_table("pending_deletions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pending_deletions_resource"))
    op.drop_table("pending_deletions")
