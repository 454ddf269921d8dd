"""Helpers shared by commands: settings that fail with one clear line."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

import typer

from ..core.config_error import ConfigError

if TYPE_CHECKING:
    from rich.console import Console

    from ..core.config import Settings


@cache
def err_console() -> Console:
    """Messages on stderr, through rich; made on first use, as rich.console costs ~20 ms of
    CPU to import, which a `pacs-ext upload` that goes well never needs."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def settings_or_exit() -> Settings:
    from ..core.config import load_settings  # here: client commands never load settings

    try:
        return load_settings()
    except ConfigError as exc:
        err_console().print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None


def fail(message: str, code: int = 1) -> typer.Exit:
    err_console().print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def describe_os_error(exc: OSError) -> str:
    """'cannot write /x/y: Permission denied' rather than a traceback."""
    where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{where}: {reason}" if where else reason
