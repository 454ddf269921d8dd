"""`pacs-ext migrate SOURCE_DIR`: copy a local mask tree into object storage (see migration/)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from ..core.config import Settings
from ..core.db import create_engine, create_sessionmaker
from ..legacy.run import MigrationError, Options, Summary, migrate
from ..legacy.verify import VerifyReport, verify
from ..storage.base import StorageError
from ..storage.registry import create_storage
from .common import err_console, fail, settings_or_exit
from .db import pending_migrations
from .progress import RichProgress

SHOWN = 10  # entries of each list printed before "... and N more"


def migrate_cmd(
    source: Path = typer.Argument(
        ..., help="folder laid out as {annotation_id}/{group_id}/{file}", show_default=False
    ),
    concurrency: int = typer.Option(
        32, "--concurrency", "-j", min=1, max=512, help="copies in flight"
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the plan; change nothing"),
    delete: bool = typer.Option(
        False,
        "--delete",
        help="remove objects under the prefix that have no local file (never metadata.json, "
        "never objects the database knows); needs --yes",
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="confirm --delete"),
    check: bool = typer.Option(
        False, "--verify", help="report local files not yet in storage; exit 1 while any are"
    ),
    use_db: bool = typer.Option(
        True, "--register/--no-register", help="record files of known mask groups as masks"
    ),
    follow_symlinks: bool = typer.Option(
        False,
        "--follow-symlinks",
        help="also copy files symlinked from outside SOURCE_DIR (by default they are ignored)",
    ),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
) -> None:
    """Copy a local mask tree into object storage under the key prefix; safe to re-run."""
    if check and (delete or dry_run):
        raise fail("--verify only reads: drop --delete and --dry-run", 2)
    if delete and not yes and not dry_run:
        raise fail(
            "--delete removes objects from the bucket: add --yes to confirm, or --dry-run to "
            "see what it would remove",
            2,
        )
    if delete and not use_db:
        raise fail("--delete needs the database to keep objects uploaded through the API", 2)
    settings = settings_or_exit()
    options = Options(
        source=source,
        key_prefix=settings.object_storage.key_prefix,
        concurrency=concurrency,
        dry_run=dry_run,
        delete=delete,
        part_size=settings.object_storage.multipart_part_size,
        follow_symlinks=follow_symlinks,
    )
    if use_db and not check:
        check_database(settings, " (or use --no-register)")
    out = Console(highlight=False, soft_wrap=True)
    try:
        if check:
            report = asyncio.run(_verify(settings, options))
            _print_verify(out, report, as_json)
            raise typer.Exit(1 if report.local_only else 0)
        summary = asyncio.run(_migrate(settings, options, use_db and not check))
    except KeyboardInterrupt:
        err_console().print(
            "[yellow]interrupted[/yellow]: every object is either fully copied or absent; "
            "run the same command again to finish"
        )
        raise typer.Exit(130) from None
    except MigrationError as exc:
        raise fail(str(exc), 2) from None
    except StorageError as exc:
        raise fail(f"object storage: {exc}") from None
    _print_summary(out, summary, as_json)
    raise typer.Exit(1 if summary.failed or summary.gave_up else 0)


def check_database(settings: Settings, hint: str = "") -> None:
    """Exit with one line unless the database is reachable and migrated; hint is appended
    to the unreachable message (only `migrate` has --no-register to offer)."""
    try:
        behind = pending_migrations(settings)
    except Exception as exc:
        raise fail(f"cannot reach the database: {exc}{hint}") from None
    if behind:
        raise fail("the database schema is not up to date: run `pacs-ext db upgrade` first")


async def _migrate(settings: Settings, options: Options, use_db: bool) -> Summary:
    storage = create_storage(settings)
    engine = create_engine(settings) if use_db else None
    try:
        with RichProgress(err_console()) as progress:
            maker = create_sessionmaker(engine) if engine is not None else None
            return await migrate(storage, maker, options, progress)
    finally:
        await storage.close()
        if engine is not None:
            await engine.dispose()


async def _verify(settings: Settings, options: Options) -> VerifyReport:
    storage = create_storage(settings)
    try:
        with RichProgress(err_console()) as progress:
            return await verify(storage, options, progress)
    finally:
        await storage.close()


def _listed(out: Console, title: str, items: list[Any]) -> None:
    if not items:
        return
    out.print(f"{title} ({len(items)}):")
    for item in items[:SHOWN]:
        out.print(f"  {item}")
    if len(items) > SHOWN:
        out.print(f"  ... and {len(items) - SHOWN} more")


def _metadata_note(out: Console, count: int) -> None:
    """The folder's metadata.json files are not among the files counted: say so."""
    if count:
        out.print(
            f"{count:,} metadata.json file(s) in the folder are not counted as files: the "
            "server writes each group's own (a group the database does not know keeps the "
            "folder's)"
        )


def _print_summary(out: Console, s: Summary, as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(s.as_dict()))
        return
    r = s.registration
    table = Table(title="dry run: nothing was changed" if s.dry_run else "migration")
    table.add_column("", style="bold")
    table.add_column("files", justify="right")
    if s.dry_run:
        table.add_row("to copy", f"{s.to_copy:,}")
        table.add_row("already there", f"{s.skipped:,}")
        table.add_row("to delete", f"{s.to_delete:,}")
    else:
        table.add_row("copied", f"{s.copied:,}")
        table.add_row("skipped (identical)", f"{s.skipped:,}")
        table.add_row("deleted", f"{s.deleted:,}")
        table.add_row("failed", f"{s.failed:,}", style="red" if s.failed else None)
        table.add_row("bytes copied", f"{s.bytes:,}")
        table.add_row("files/s", f"{s.files_per_second:,.1f}")
    if s.kept:
        table.add_row("kept (in the database)", f"{s.kept:,}")
    table.add_row("groups registered" if not s.dry_run else "known groups", f"{r.groups:,}")
    if not s.dry_run:
        table.add_row("masks added", f"{r.masks_added:,}")
    table.add_row("seconds", f"{s.seconds:,.2f}")
    out.print(table)
    unknown = [f"{a}/{g} ({n} files)" for (a, g), n in sorted(r.unknown.items())]
    _listed(out, "groups the database does not know (copied, not registered)", unknown)
    _listed(out, "groups under another annotation in the database", r.conflicts)
    _listed(out, "pending groups left as they are (declared files not in the folder)", r.pending)
    _metadata_note(out, s.metadata_files)
    _listed(out, "would copy", s.planned_copies)
    _listed(out, "would delete", s.planned_deletions)
    _listed(out, "ignored (not {annotation_id}/{group_id}/{file})", s.ignored)
    _listed(out, "failed", [f"{p}: {why}" for p, why in s.failures])
    if s.gave_up:
        out.print(f"[red]stopped early[/red]: storage kept failing ({s.gave_up})")


def _print_verify(out: Console, report: VerifyReport, as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(report.as_dict()))
        return
    out.print(
        f"{report.local_files:,} local files: {report.in_storage:,} in object storage, "
        f"{report.local_only:,} local only"
    )
    _listed(out, "not in object storage", report.missing)
    _listed(out, "different in object storage", report.different)
    _listed(out, "ignored (not {annotation_id}/{group_id}/{file})", report.ignored)
    _metadata_note(out, report.metadata_files)
    if report.local_only:
        out.print("[red]not safe to remove the local folder yet[/red]: run `pacs-ext migrate`")
    else:
        out.print("[green]every local file is in object storage[/green]")
