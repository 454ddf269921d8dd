"""`pacs-ext download`: every verified mask of a group into a folder, with progress bars."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.filesize import decimal

from ..client import DownloadResult, PacsClient, download_mask_group
from .common import err_console
from .notes import transfer_progress
from .remote import (
    DEFAULT_SERVER,
    ConcurrencyOption,
    QuietOption,
    RetriesOption,
    ServerOption,
    TokenOption,
    rate,
    require_token,
    retry_policy,
    run,
)


def download(
    dest: Annotated[
        Path, typer.Argument(help="folder to write the masks into", show_default=False)
    ],
    annotation: Annotated[int, typer.Option("--annotation", "-a", help="annotation id")],
    group: Annotated[int, typer.Option("--group", "-g", help="mask group id")],
    concurrency: ConcurrencyOption = 16,
    retries: RetriesOption = 4,
    quiet: QuietOption = False,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
) -> None:
    """Download a complete mask group's masks into DEST, each checked against its MD5.

    Files already in DEST with the right size and MD5 are kept, so a re-run resumes.
    """
    bearer = require_token(server, token)
    if dest.exists() and not dest.is_dir():
        err_console().print(f"[red]error:[/red] {dest} exists and is not a folder")
        raise typer.Exit(2)

    async def go() -> DownloadResult:
        async with PacsClient(server, bearer, retry=retry_policy(retries)) as client:
            with transfer_progress("download", quiet=quiet) as bars:
                return await download_mask_group(
                    client, annotation, group, dest, concurrency=concurrency, progress=bars
                )

    result = run(go())
    extra = f"; {result.files_skipped:,} already there" if result.files_skipped else ""
    # Plain print: a result line needs no styling, and rich.console is not imported for it.
    print(
        f"mask group {group}: {result.files_total:,} masks in {dest}; fetched "
        f"{result.files_downloaded:,} file(s), {decimal(result.bytes_downloaded)} in "
        f"{result.seconds:.1f} s ({rate(result.files_downloaded, result.seconds):,.0f} files/s, "
        f"{decimal(int(rate(result.bytes_downloaded, result.seconds)))}/s){extra}"
    )
