"""ids never reused: SQLite AUTOINCREMENT on the tables whose ids are in keys and URLs

Revision ID: 0004_ids_never_reused
Revises: 0003
Create Date: 2026-11-28 22:40:00

Plain SQLite INTEGER PRIMARY KEYs take max(rowid) + 1: deleting the newest annotation handed
its id (and so its object keys mask/{annotation}/{group}/...) to the next user, whose objects
an old signed URL then reached. AUTOINCREMENT keeps a high-water mark in sqlite_sequence.
SQLite cannot add it with ALTER TABLE, so each table is rebuilt (batch mode copies the rows,
ids included; env.py turns foreign keys off on SQLite so dropping the old parent table does
not cascade). The audit trail remembers ids whose rows are already gone: every sequence, on
both databases, is moved past those as well.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_ids_never_reused"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Parents first; each table with the audit column that names its ids (if any).
TABLES = {
    "annotations": "annotation_id",
    "mask_groups": "group_id",
    "masks": "mask_id",
    "mask_group_files": None,
}


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        if bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
            raise RuntimeError(
                "foreign keys are on: rebuilding the tables would cascade-delete rows "
                "(migrations/env.py turns them off for SQLite)"
            )
        for table in TABLES:
            with op.batch_alter_table(
                table, recreate="always", table_kwargs={"sqlite_autoincrement": True}
            ):
                pass
    for table, audit_column in TABLES.items():
        floor = _largest_id(bind, table, audit_column)
        if bind.dialect.name == "sqlite":
            _sqlite_floor(bind, table, floor)
        elif bind.dialect.name == "postgresql" and floor > 0:
            bind.execute(
                sa.text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    "GREATEST(:floor, COALESCE(pg_sequence_last_value("
                    f"pg_get_serial_sequence('{table}', 'id')::regclass), 0)))"
                ),
                {"floor": floor},
            )


def _largest_id(bind: sa.Connection, table: str, audit_column: str | None) -> int:
    largest = bind.execute(sa.text(f"SELECT COALESCE(MAX(id), 0) FROM {table}")).scalar() or 0  # noqa: S608 - fixed names
    if audit_column:
        audited = bind.execute(
            sa.text(f"SELECT COALESCE(MAX({audit_column}), 0) FROM audit_events")  # noqa: S608
        ).scalar()
        largest = max(largest, audited or 0)
    return int(largest)


def _sqlite_floor(bind: sa.Connection, table: str, floor: int) -> None:
    if floor <= 0:
        return
    updated = bind.execute(
        sa.text("UPDATE sqlite_sequence SET seq = MAX(seq, :floor) WHERE name = :name"),
        {"floor": floor, "name": table},
    ).rowcount
    if not updated:
        bind.execute(
            sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES (:name, :floor)"),
            {"floor": floor, "name": table},
        )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    if bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError("foreign keys are on: rebuilding the tables would cascade-delete rows")
    for table in reversed(list(TABLES)):
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": False}
        ):
            pass
