"""`pacs-ext`: the command line. One module per command group, imported only when its
command runs, so `pacs-ext upload` does not pay for the server's imports (FastAPI, Alembic)."""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

# httpx's __init__ imports its own command line (httpx._main), and with it click, pygments and
# more of rich: ~40 ms of CPU at every start of a client command, for a tool never run here.
# A placeholder without `main` makes that import fail, which httpx expects and falls back on.
if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", types.ModuleType("httpx._main"))

import typer
from typer.core import TyperGroup

from ..core.config_error import ConfigError

# command name → (module in this package, attribute): a typer.Typer (a group) or a function.
COMMANDS: dict[str, tuple[str, str]] = {
    "db": ("db", "app"),
    "storage": ("storage", "app"),
    "serve": ("serve", "serve"),
    "token": ("token", "token"),
    # Client commands (the SDK in pacs_ext.client): talk to a running server.
    "upload": ("upload", "upload"),
    "download": ("download", "download"),
    "export-seg": ("seg", "export_seg"),
    "import-seg": ("seg", "import_seg_cmd"),
    "janitor": ("janitor", "janitor"),
    "migrate": ("migrate", "migrate_cmd"),
    "reindex": ("reindex", "reindex_cmd"),
}


def load_command(name: str) -> Any:  # a command of typer's vendored click
    module_name, attr = COMMANDS[name]
    target: Any = getattr(importlib.import_module(f"{__name__}.{module_name}"), attr)
    if isinstance(target, typer.Typer):
        group = typer.main.get_group(target)
        group.name = name
        return group
    single = typer.Typer(pretty_exceptions_enable=False, add_completion=False)
    single.command(name)(target)
    command = typer.main.get_command(single)
    command.name = name
    return command


class LazyCommands(TyperGroup):
    # Typed Any: typer vendors its own click, whose classes it does not export.
    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        return load_command(cmd_name) if cmd_name in COMMANDS else None


app = typer.Typer(
    name="pacs-ext",
    cls=LazyCommands,
    help="PACS Extension Server: annotations and segmentation masks on object storage.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """PACS Extension Server: annotations and segmentation masks on object storage."""


def main() -> None:
    try:
        app()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:
        # Any command: a folder that cannot be read or created, a read-only destination.
        from .common import describe_os_error

        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        sys.exit(1)
