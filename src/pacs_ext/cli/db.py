"""`pacs-ext db upgrade | downgrade | current`: Alembic migrations with the app's settings."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from ..core.config import Settings
from ..core.db import create_engine
from .common import fail, settings_or_exit

app = typer.Typer(help="Database migrations.", no_args_is_help=True)

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(settings: Settings) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", settings.database_url().replace("%", "%%"))
    return cfg


def upgrade(settings: Settings, revision: str = "head") -> None:
    if settings.database_url().startswith("sqlite"):
        settings.server.data_dir.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(settings), revision)


def pending_migrations(settings: Settings) -> bool:
    """True when the database is behind the newest migration."""
    head = ScriptDirectory.from_config(alembic_config(settings)).get_current_head()

    async def current() -> str | None:
        engine = create_engine(settings)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(
                    lambda c: MigrationContext.configure(c).get_current_revision()
                )
        finally:
            await engine.dispose()

    return asyncio.run(current()) != head


@app.command("upgrade")
def upgrade_cmd(revision: str = typer.Argument("head", help="target revision")) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    settings = settings_or_exit()
    try:
        upgrade(settings, revision)
    except Exception as exc:
        raise fail(f"migration failed: {exc}") from None
    typer.echo(f"database at {revision}: {_safe_url(settings)}")


@app.command("downgrade")
def downgrade_cmd(revision: str = typer.Argument(..., help="target revision, e.g. base")) -> None:
    """Revert migrations down to REVISION."""
    settings = settings_or_exit()
    command.downgrade(alembic_config(settings), revision)
    typer.echo(f"database at {revision}")


def _safe_url(settings: Settings) -> str:
    from sqlalchemy.engine import make_url

    return make_url(settings.database_url()).render_as_string(hide_password=True)
