"""`pacs-ext upload`: a folder of mask files → one verified mask group, with progress bars."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.filesize import decimal

from ..client import PacsClient, UploadResult, upload_mask_group
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


def upload(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="a folder of mask files (0001_liver.png → slice 1, label liver) or the files",
            show_default=False,
        ),
    ],
    annotation: Annotated[int, typer.Option("--annotation", "-a", help="annotation id")],
    group_name: Annotated[
        str | None, typer.Option("--group-name", help="name of the group")
    ] = None,
    model_name: Annotated[str | None, typer.Option("--model-name")] = None,
    model_version: Annotated[str | None, typer.Option("--model-version")] = None,
    modality: Annotated[str | None, typer.Option("--modality")] = None,
    description: Annotated[str | None, typer.Option("--description")] = None,
    sha256: Annotated[bool, typer.Option("--sha256", help="also declare SHA-256")] = False,
    ttl: Annotated[
        int | None, typer.Option("--ttl", min=1, help="signed URL lifetime, seconds")
    ] = None,
    new_group: Annotated[
        bool, typer.Option("--new-group", help="start a new group; ignore an earlier run")
    ] = False,
    follow_symlinks: Annotated[
        bool,
        typer.Option(
            "--follow-symlinks", help="also upload files symlinked from outside the folder"
        ),
    ] = False,
    concurrency: ConcurrencyOption = 16,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=10_000, help="files per URL request")
    ] = 500,
    retries: RetriesOption = 4,
    quiet: QuietOption = False,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
) -> None:
    """Upload mask files into a new mask group (or resume the one an interrupted run began).

    Files go straight to object storage through signed URLs; the server then verifies them.
    Running the same command again after an interruption sends only what is missing.
    """
    bearer = require_token(server, token)
    source: Path | list[Path] = paths[0] if len(paths) == 1 else paths

    async def go() -> UploadResult:
        async with PacsClient(server, bearer, retry=retry_policy(retries)) as client:
            with transfer_progress("upload", quiet=quiet) as bars:
                return await upload_mask_group(
                    client,
                    annotation,
                    source,
                    group_name=group_name,
                    model_name=model_name,
                    version=model_version,
                    modality=modality,
                    description=description,
                    sha256=sha256,
                    concurrency=concurrency,
                    batch_size=batch_size,
                    ttl_seconds=ttl,
                    resume=not new_group,
                    progress=bars,
                    follow_symlinks=follow_symlinks,
                )

    result = run(go())
    g = result.group
    sent = (
        f"sent {result.files_uploaded:,} file(s), {decimal(result.bytes_uploaded)} in "
        f"{result.seconds:.1f} s ({rate(result.files_uploaded, result.seconds):,.0f} files/s, "
        f"{decimal(int(rate(result.bytes_uploaded, result.seconds)))}/s)"
    )
    extra = []
    if result.files_skipped:
        extra.append(f"{result.files_skipped:,} already uploaded")
    if result.retries:
        extra.append(f"{result.retries} retries")
    if result.renewed_urls:
        extra.append(f"{result.renewed_urls} URLs renewed")
    tail = f"; {', '.join(extra)}" if extra else ""
    # Plain print: a result line needs no styling, and rich.console is not imported for it.
    print(
        f"mask group {g.id} {g.status}: {g.mask_count:,} masks, {decimal(g.total_bytes)}; "
        f"{sent}{tail}"
    )
