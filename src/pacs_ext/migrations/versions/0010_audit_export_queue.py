"""audit export queue: rows not in the bucket yet; audit ids under the high-water mark

SQLite: audit_events is rebuilt with AUTOINCREMENT (as 0004 did for the tables in keys), or it
takes max(rowid) + 1 and ignores the sequence `reindex` moves past the bucket's mark: the ids
of audit rows lost with a database would be handed out again.

Revision ID: 0010_audit_export_queue
Revises: 0009_recovery_documents
Create Date: 2026-11-29 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_audit_export_queue"
down_revision: str | None = "0009_recovery_documents"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    _autoincrement(True)
    op.create_table(
        "audit_export_queue",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_export_queue")),
    )
    # Rows past the old cursor are not in the bucket yet. (Rows the cursor skipped, committed
    # after a higher id was exported, cannot be told apart from exported ones here.)
    op.execute(
        "INSERT INTO audit_export_queue (id) SELECT id FROM audit_events WHERE id > "
        "COALESCE((SELECT value FROM recovery_marks WHERE name = 'audit:exported'), 0)"
    )
    op.execute("DELETE FROM recovery_marks WHERE name = 'audit:exported'")
    # Present from the start, like the other marks: first writers lock it, never race.
    op.execute("INSERT INTO recovery_marks (name, value) VALUES ('ids:audit_events', 0)")


def downgrade() -> None:
    op.execute("DELETE FROM recovery_marks WHERE name = 'ids:audit_events'")
    op.execute(
        "INSERT INTO recovery_marks (name, value) SELECT 'audit:exported', "
        "COALESCE((SELECT MIN(id) - 1 FROM audit_export_queue), "
        "(SELECT MAX(id) FROM audit_events), 0)"
    )
    op.drop_table("audit_export_queue")
    _autoincrement(False)


def _autoincrement(on: bool) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    if bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError("foreign keys are on: rebuilding the table would cascade-delete rows")
    with op.batch_alter_table(
        "audit_events", recreate="always", table_kwargs={"sqlite_autoincrement": on}
    ):
        pass
