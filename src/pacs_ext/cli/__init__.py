"""`pacs-ext`: the command line. One module per command group."""

from __future__ import annotations

import sys

import typer

from ..config import ConfigError
from . import db, janitor, serve, storage, token
from . import download as download_cmd
from . import upload as upload_cmd
from .migrate import migrate_cmd
from .reindex import reindex_cmd

app = typer.Typer(
    name="pacs-ext",
    help="PACS Extension Server: annotations and segmentation masks on object storage.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(db.app, name="db")
app.add_typer(storage.app, name="storage")
app.command("serve")(serve.serve)
app.command("token")(token.token)
# Client commands (the SDK in pacs_ext.client): talk to a running server.
app.command("upload")(upload_cmd.upload)
app.command("download")(download_cmd.download)
app.command("janitor")(janitor.janitor)
app.command("migrate")(migrate_cmd)
app.command("reindex")(reindex_cmd)


def main() -> None:
    try:
        app()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
