"""`pacs-ext token SUBJECT`: print a bearer token signed with the configured secret."""

from __future__ import annotations

import typer

from ..core.auth import create_token
from .common import fail, settings_or_exit


def token(
    subject: str = typer.Argument(..., help="the token's subject (user id)"),
    admin: bool = typer.Option(False, "--admin", help="grant the admin role"),
    ttl: int = typer.Option(12 * 3600, "--ttl", min=60, help="lifetime in seconds"),
    project: list[str] = typer.Option([], "--project", help="list this project (repeatable)"),
    role: list[str] = typer.Option([], "--role", help="add this role (repeatable)"),
) -> None:
    """Print a bearer token (HS256) for SUBJECT."""
    settings = settings_or_exit()
    if settings.hs256_secret() is None:
        raise fail(
            "HS256 tokens are off (only OIDC is configured): set auth.jwt_secret "
            "(APP_AUTH__JWT_SECRET), or get a token from the identity provider",
            code=2,
        )
    typer.echo(
        create_token(settings, subject, admin=admin, projects=project, roles=role, ttl_seconds=ttl)
    )
