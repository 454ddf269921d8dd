"""`pacs-ext reindex`: rebuild the database's groups and masks from the bucket's metadata.json."""

from __future__ import annotations

import asyncio
import json

import typer
from rich.console import Console

from ..core.config import Settings
from ..core.db import create_engine, create_sessionmaker
from ..recovery.reindex import ReindexRefused, ReindexReport, reindex
from ..storage.base import StorageError
from ..storage.registry import create_storage
from .common import err_console, fail, settings_or_exit
from .migrate import SHOWN, check_database
from .progress import RichProgress


def reindex_cmd(
    merge: bool = typer.Option(
        False, "--merge", help="the database is not empty: add only what it lacks"
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="report what would be restored"),
    ids_only: bool = typer.Option(
        False,
        "--ids-only",
        help="restore nothing: only move every id sequence past the ids the bucket names "
        "(after a point-in-time restore of the database)",
    ),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
) -> None:
    """Rebuild annotations, mask groups and masks from metadata.json files (disaster recovery).

    Exits 1 when something in the bucket is inconsistent (it is reported; the rest is restored).
    """
    settings = settings_or_exit()
    check_database(settings)
    try:
        report = asyncio.run(_run(settings, merge, dry_run, ids_only))
    except ReindexRefused as exc:
        raise fail(str(exc)) from None
    except StorageError as exc:
        raise fail(f"object storage: {exc}") from None
    out = Console(highlight=False, soft_wrap=True)
    if as_json:
        out.print_json(json.dumps(report.as_dict()))
    elif ids_only:
        out.print("id sequences moved past every id the bucket names; nothing restored")
    else:
        verb = "would restore" if dry_run else "restored"
        out.print(
            f"{report.documents:,} metadata.json read; {verb} {report.annotations:,} "
            f"annotation(s), {report.groups:,} group(s), {report.masks:,} mask(s); "
            f"{report.groups_present:,} group(s) already in the database"
        )
        if report.archived:
            out.print(
                f"[yellow]archived[/yellow]: {len(report.archived):,} metadata.json in an "
                "archive storage class (restore them, then reindex --merge)"
            )
        if report.audit_events or report.deleted_skipped:
            out.print(
                f"{report.audit_events:,} audit event(s) restored; {report.deleted_skipped:,} "
                "document(s) of deleted annotations or groups left out"
            )
        if report.unrestored_objects:
            out.print(
                f"{report.unrestored_objects:,} object(s) belong to no restored group (uploads "
                "never completed, deletions storage did not finish): `pacs-ext janitor --apply` "
                "deletes them once older than janitor.grace_seconds"
            )
        if report.problems:
            out.print(f"[red]inconsistent[/red] ({len(report.problems)}):")
            for problem in report.problems[:SHOWN]:
                out.print(f"  {problem}")
            if len(report.problems) > SHOWN:
                out.print(f"  ... and {len(report.problems) - SHOWN} more")
    raise typer.Exit(1 if report.problems else 0)


async def _run(settings: Settings, merge: bool, dry_run: bool, ids_only: bool) -> ReindexReport:
    storage = create_storage(settings)
    engine = create_engine(settings)
    try:
        with RichProgress(err_console()) as progress:
            return await reindex(
                storage,
                create_sessionmaker(engine),
                settings.object_storage.key_prefix,
                merge=merge,
                dry_run=dry_run,
                ids_only=ids_only,
                progress=progress,
                allowed_types=settings.object_storage.allowed_content_types,
            )
    finally:
        await storage.close()
        await engine.dispose()
