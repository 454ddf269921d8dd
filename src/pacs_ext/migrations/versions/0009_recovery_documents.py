"""recovery documents: an outbox for annotation documents and tombstones, id marks

Revision ID: 0009_recovery_documents
Revises: 0008_seg_exports
Create Date: 2026-11-29 01:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_recovery_documents"
down_revision: str | None = "0008_seg_exports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "recovery_outbox",
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("object_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("token", sa.String(length=32), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kind", "object_id", name=op.f("pk_recovery_outbox")),
    )
    op.create_table(
        "recovery_marks",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_recovery_marks")),
    )
    # Present from the start, so that concurrent first writers lock a row instead of racing
    # to insert it.
    marks = sa.table(
        "recovery_marks", sa.column("name", sa.String), sa.column("value", sa.BigInteger)
    )
    op.bulk_insert(
        marks,
        [
            {"name": name, "value": 0}
            for name in ("ids:annotations", "ids:mask_groups", "ids:masks", "audit:exported")
        ],
    )

    # Existing annotations and remembered deletions get their documents written by the
    # janitor's next run (it writes what the outbox asks for).
    _backfill()


def _backfill() -> None:
    op.execute(
        "INSERT INTO recovery_outbox (kind, object_id, token, requested_at) "
        "SELECT 'annotation', id, 'upgrade-0007', CURRENT_TIMESTAMP FROM annotations"
    )
    op.execute(
        "INSERT INTO recovery_outbox (kind, object_id, token, requested_at) "
        "SELECT DISTINCT kind, object_id, 'upgrade-0007', CURRENT_TIMESTAMP FROM tombstones "
        "WHERE kind IN ('annotation', 'mask_group') AND NOT (kind = 'annotation' "
        "AND object_id IN (SELECT id FROM annotations))"
    )


def downgrade() -> None:
    op.drop_table("recovery_marks")
    op.drop_table("recovery_outbox")
