"""`pacs-ext janitor [--apply]`: report (and with --apply, clean up) what uploads left behind."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ..core.config import Settings
from ..core.db import create_engine, create_sessionmaker
from ..core.logging import configure_logging
from ..janitor import metrics
from ..janitor.lock import single_run
from ..janitor.report import JanitorReport
from ..janitor.service import run
from ..storage.registry import create_storage
from .common import fail, settings_or_exit

LABELS = {
    "expired_groups": ("pending groups past URL expiry + grace", "expired, objects deleted"),
    "pending_deletions": ("unfinished deletions", "finished"),
    "stale_multipart_uploads": ("stale multipart uploads", "aborted"),
    "orphan_objects": ("objects with no database record", "deleted"),
    "missing_objects": ("masks whose object is gone", "(reported only)"),
    "idempotency_keys": ("idempotency keys past retention", "forgotten"),
    "tombstones": ("tombstones of deletions past retention", "forgotten"),
    "metadata_outbox": ("metadata.json writes left unfinished", "written"),
    "metadata_mismatch": ("metadata.json differing from the database", "rewritten"),
    "recovery_outbox": ("recovery documents left unwritten", "written"),
    "audit_export": ("audit rows not yet exported to the bucket", "exported"),
}


def janitor(
    apply: bool = typer.Option(False, "--apply", help="act; without it nothing is changed"),
    grace: int = typer.Option(
        None, "--grace", min=0, help="grace period in seconds (default: janitor.grace_seconds)"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the full report as JSON"),
    metrics_file: Path = typer.Option(
        None, "--metrics-file", help="also write the counts in Prometheus text format here"
    ),
) -> None:
    """Expire abandoned uploads, finish recorded deletions, find orphans (dry run by default)."""
    settings = settings_or_exit()
    configure_logging(settings.logging)  # to stderr: stdout carries the report
    if grace is not None:
        settings.janitor.grace_seconds = grace
    try:
        report = asyncio.run(_run(settings, apply))
    except _Busy:
        raise fail("another janitor run is in progress; try again later") from None
    except Exception as exc:
        raise fail(f"janitor failed: {type(exc).__name__}: {exc}") from None
    metrics.publish(report)
    if metrics_file is not None:
        metrics.write_textfile(metrics_file)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), default=_iso, indent=1))
    else:
        _print(report)
    if report.errors:
        raise typer.Exit(1)


def _iso(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


class _Busy(Exception):
    pass


async def _run(settings: Settings, apply: bool) -> JanitorReport:
    engine = create_engine(settings)
    storage = create_storage(settings)
    try:
        async with single_run(engine, settings.server.data_dir) as mine:
            if not mine:
                raise _Busy
            return await run(create_sessionmaker(engine), storage, settings, apply=apply)
    finally:
        await storage.close()
        await engine.dispose()


def _print(report: JanitorReport) -> None:
    console = Console(highlight=False)
    mode = "applied" if report.apply else "dry run (nothing changed; --apply to act)"
    table = Table(title=f"janitor: {mode}, grace {report.grace_seconds} s")
    table.add_column("finding")
    table.add_column("found", justify="right")
    table.add_column("acted", justify="right")
    table.add_column("action")
    for name in report.FINDINGS:
        if name == "stale_multipart_uploads" and not report.multipart_supported:
            continue
        finding = report.finding(name)
        label, action = LABELS[name]
        acted = str(finding.acted) if report.apply else "-"
        if finding.failed:
            acted += f" ({finding.failed} failed)"
        table.add_row(label, str(finding.found), acted, action)
    console.print(table)
    console.print(f"objects deleted: {report.objects_deleted}; orphan bytes: {report.orphan_bytes}")
    if report.young_unclaimed:
        console.print(
            f"{report.young_unclaimed} object(s) with no database record are younger than the "
            f"grace period ({report.grace_seconds} s, janitor.grace_seconds): kept for now, "
            "deleted by a run once they are older (an upload may still be arriving)"
        )
    for name in ("orphan_objects", "missing_objects"):
        for sample in report.finding(name).samples[:20]:
            console.print(f"  {name.replace('_', ' ')[:-1]}: {sample['key']}")
    for error in report.errors:
        console.print(f"[red]error:[/red] {error}")
