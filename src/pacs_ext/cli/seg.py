"""`pacs-ext export-seg` and `pacs-ext import-seg`: DICOM SEG out of and into mask groups."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from ..client import PacsClient
from ..client.errors import ApiError, ClientError
from ..client.seg_import import SegImport, fetch_seg, import_seg, source_order
from ..dicomweb import DicomwebError, DicomwebTarget
from ..exports.schemas import ExportRead
from ..seg.read import SegReadError
from .common import err_console
from .remote import (
    DEFAULT_SERVER,
    QuietOption,
    RetriesOption,
    ServerOption,
    TokenOption,
    out_console,
    require_token,
    retry_policy,
    run,
)

KindOption = Annotated[
    str,
    typer.Option("--type", help="segmentation type: LABELMAP (one label per pixel) or BINARY"),
]


def export_seg(
    annotation: Annotated[int, typer.Option("--annotation", "-a", help="annotation id")],
    group: Annotated[int, typer.Option("--group", "-g", help="mask group id")],
    store: Annotated[
        bool, typer.Option("--store", help="also store the SEG in the PACS (STOW-RS)")
    ] = False,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="write the SEG to this file")
    ] = None,
    kind: KindOption = "LABELMAP",
    slice_index_base: Annotated[
        int,
        typer.Option(
            "--slice-index-base", min=0, max=1, help="slice_index of the first slice (0 or 1)"
        ),
    ] = 0,
    retries: RetriesOption = 4,
    quiet: QuietOption = False,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
) -> None:
    """Export a complete mask group as a DICOM SEG (built by the server), with progress."""
    bearer = require_token(server, token)
    segmentation_type = _kind(kind)

    async def go() -> tuple[ExportRead, int]:
        async with PacsClient(server, bearer, retry=retry_policy(retries)) as client:
            try:
                started = await client.create_export(
                    annotation,
                    group,
                    segmentation_type=segmentation_type,
                    store=store,
                    slice_index_base=slice_index_base,
                )
            except ApiError as exc:
                for name in exc.body.get("masks", [])[:20]:
                    err_console().print(f"  {name}")
                raise
            with _bar(quiet) as bar:
                task = bar.add_task(f"export {started.id}", total=1.0, phase="queued")
                done = await client.wait_export(
                    started,
                    on_progress=lambda e: bar.update(task, completed=e.progress, phase=e.phase),
                )
            written = 0
            if done.status == "succeeded" and out is not None:
                data = await client.read_export(done)
                await asyncio.to_thread(out.write_bytes, data)
                written = len(data)
            return done, written

    done, written = run(go())
    if done.status != "succeeded":
        err_console().print(f"[red]error:[/red] export {done.id} failed: {done.error}")
        raise typer.Exit(1)
    out_console().print(
        f"export {done.id}: {done.segmentation_type} SEG, {done.frames} frames, "
        f"{done.file_size:,} bytes at {done.object_key}"
    )
    if done.stored:
        out_console().print(
            f"stored in the PACS: series {done.series_instance_uid}, "
            f"instance {done.sop_instance_uid}"
        )
    if out is not None:
        out_console().print(f"written to {out} ({written:,} bytes)")


def import_seg_cmd(
    annotation: Annotated[int, typer.Option("--annotation", "-a", help="annotation id")],
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="a DICOM SEG file", exists=True)
    ] = None,
    study: Annotated[
        str | None, typer.Option("--study", help="Study Instance UID (SEG on the PACS)")
    ] = None,
    series: Annotated[
        str | None, typer.Option("--series", help="the SEG's Series Instance UID on the PACS")
    ] = None,
    instance: Annotated[
        str | None, typer.Option("--instance", help="the SEG's SOP Instance UID (optional)")
    ] = None,
    source_series: Annotated[
        str | None,
        typer.Option(
            "--source-series",
            help="source series UID: slice_index follows its order (read from the PACS)",
        ),
    ] = None,
    group_name: Annotated[str | None, typer.Option("--group-name")] = None,
    dicomweb_url: Annotated[
        str | None,
        typer.Option("--dicomweb-url", envvar="PACS_EXT_DICOMWEB_URL", help="DICOMweb root"),
    ] = None,
    dicomweb_token: Annotated[
        str | None,
        typer.Option("--dicomweb-token", envvar="PACS_EXT_DICOMWEB_TOKEN", show_default=False),
    ] = None,
    retries: RetriesOption = 4,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
) -> None:
    """Import a DICOM SEG (a file, or --study/--series on the DICOMweb server) into a new
    mask group of ANNOTATION: one PNG per slice and label, uploaded and completed."""
    bearer = require_token(server, token)
    if (file is None) == (series is None):
        err_console().print("[red]error:[/red] give either --file or --study and --series")
        raise typer.Exit(2)
    needs_pacs = series is not None or source_series is not None
    if needs_pacs and (not dicomweb_url or not study):
        err_console().print(
            "[red]error:[/red] --series/--source-series need --study and --dicomweb-url"
        )
        raise typer.Exit(2)
    target = (
        DicomwebTarget(
            url=dicomweb_url,
            auth="bearer" if dicomweb_token else "none",
            token=dicomweb_token or "",
        )
        if dicomweb_url
        else None
    )

    async def go() -> SegImport:
        try:
            return await _import()
        except DicomwebError as exc:
            raise ClientError(str(exc)) from None

    async def _import() -> SegImport:
        if file is not None:
            data = await asyncio.to_thread(file.read_bytes)
        else:
            assert target is not None
            assert study is not None
            assert series is not None
            data = await fetch_seg(target, study, series, instance)
        order = None
        if source_series is not None:
            assert target is not None
            assert study is not None
            order = await source_order(target, study, source_series)
        async with PacsClient(server, bearer, retry=retry_policy(retries)) as client:
            return await import_seg(client, annotation, data, order=order, group_name=group_name)

    try:
        result = run(go())
    except (SegReadError, ValueError) as exc:
        err_console().print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    labels = sorted(set(result.contents.labels.values()))
    out_console().print(
        f"mask group {result.group.id}: {result.files:,} masks from a "
        f"{result.contents.segmentation_type} SEG ({', '.join(labels)})"
    )


def _kind(kind: str) -> Literal["LABELMAP", "BINARY"]:
    upper = kind.upper()
    if upper == "LABELMAP":
        return "LABELMAP"
    if upper == "BINARY":
        return "BINARY"
    err_console().print(f"[red]error:[/red] --type must be LABELMAP or BINARY (got {kind!r})")
    raise typer.Exit(2)


def _bar(quiet: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[phase]}"),
        TimeElapsedColumn(),
        console=err_console(),
        disable=quiet,
        transient=False,
    )
