"""`pacs-ext storage init | policy | check`: provision the bucket, print its IAM policy or CORS
rules, and check the configured storage end to end."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from ..core.config import ConfigError, Settings
from ..storage.base import StorageError
from ..storage.registry import create_storage
from .common import err_console, fail, settings_or_exit

app = typer.Typer(
    help="Object storage: provision the bucket, print its policy, check the setup.",
    no_args_is_help=True,
)
out = Console(highlight=False, soft_wrap=True)

INIT_STYLE = {
    "unchanged": "green",
    "changed": "cyan",
    "refused": "yellow",
    "skipped": "dim",
    "warning": "yellow",
    "failed": "red",
}
CHECK_STYLE = {"PASS": "green", "WARN": "yellow", "FAIL": "red", "SKIP": "dim"}


def _s3_storage(settings: Settings) -> Any:
    try:
        return create_storage(settings)
    except (ConfigError, ValueError) as exc:
        raise fail(f"configuration error: {exc}", 2) from None


@app.command("init")
def init(
    dry_run: bool = typer.Option(
        False, "--dry-run", help="print the requests it would make, as JSON; change nothing"
    ),
) -> None:
    """Create the bucket if missing and apply CORS, lifecycle, encryption and public access
    block; a second run changes nothing."""
    from ..provisioning.bucket_init import Outcome, Provisioner

    settings = settings_or_exit()
    if settings.object_storage.provider == "local":
        folder = (settings.server.data_dir / "objects").resolve()
        if not dry_run:
            folder.mkdir(parents=True, exist_ok=True)
        console = err_console if dry_run else out
        console.print(f"local store: nothing to provision (objects live in {escape(str(folder))})")
        if dry_run:
            print("[]")
        return
    storage = _s3_storage(settings)

    async def run() -> tuple[Provisioner, list[Outcome]]:
        try:
            provisioner = Provisioner(settings, await storage.client(), dry_run=dry_run)
            return provisioner, await provisioner.run()
        finally:
            await storage.close()

    try:
        provisioner, outcomes = asyncio.run(run())
    except StorageError as exc:
        raise fail(str(exc)) from None
    # In a dry run stdout carries only the JSON requests; the verdicts go to stderr.
    console = err_console if dry_run else out
    width = max(len(o.setting) for o in outcomes)
    for o in outcomes:
        label = "would change" if dry_run and o.status == "changed" else o.status
        console.print(
            f"{o.setting:<{width}}  [{INIT_STYLE[o.status]}]{label}[/] — {escape(o.detail)}"
        )
        if o.instead:
            console.print(f"{'':<{width}}  instead: {escape(o.instead)}")
    changed = [o.setting for o in outcomes if o.status == "changed"]
    failed = [o.setting for o in outcomes if o.status == "failed"]
    refused = [o.setting for o in outcomes if o.status == "refused"]
    bucket = settings.object_storage.bucket_name
    if dry_run:
        print(json.dumps([r.as_json() for r in provisioner.requests], indent=2))
        console.print(f"dry run: {len(provisioner.requests)} request(s) shown, nothing changed")
    elif failed:
        console.print(f"[red]failed:[/] {', '.join(failed)}")
    elif changed:
        console.print(f"changed: {', '.join(changed)}")
    else:
        console.print(f"no changes: bucket {bucket!r} already matches the configuration")
    if refused and not failed:
        console.print(
            f"refused by the store (not errors; see 'instead'): {', '.join(dict.fromkeys(refused))}"
        )
    if failed:
        raise typer.Exit(1)


@app.command("policy")
def policy(
    cors: bool = typer.Option(False, "--cors", help="print the bucket's CORS rules instead"),
    principal: str = typer.Option(
        "",
        "--principal",
        help="print it as a bucket policy for this principal ARN "
        "(Ceph RGW: arn:aws:iam:::user/NAME)",
    ),
) -> None:
    """Print the least-privilege IAM policy for the server's keys (JSON)."""
    from ..provisioning.documents import cors_configuration, iam_policy

    settings = settings_or_exit()
    if settings.object_storage.provider == "local":
        err_console.print(
            "note: object_storage.provider is local; this is for bucket "
            f"{settings.object_storage.bucket_name!r} on S3"
        )
    if cors and not settings.server.cors_allowed_origins:
        err_console.print("warning: server.cors_allowed_origins is empty: the rule allows nothing")
    document = cors_configuration(settings) if cors else iam_policy(settings, principal or None)
    print(json.dumps(document, indent=2))


@app.command("check")
def check(
    as_json: bool = typer.Option(False, "--json", help="print the verdicts as JSON"),
) -> None:
    """Check the configured storage for real: credentials, bucket, clock, region, CORS, and a
    signed PUT, GET and delete of a probe object. Exit code 1 if any step fails."""
    from ..provisioning.checks import run_checks

    settings = settings_or_exit()
    storage = _s3_storage(settings)
    steps = asyncio.run(run_checks(settings, storage))
    failed = any(s.status == "FAIL" for s in steps)
    if as_json:
        o = settings.object_storage
        print(
            json.dumps(
                {
                    "ok": not failed,
                    "provider": o.provider,
                    "bucket": o.bucket_name,
                    "endpoint": o.endpoint,
                    "steps": [s.as_json() for s in steps],
                },
                indent=2,
            )
        )
    else:
        width = max(len(s.name) for s in steps)
        for s in steps:
            out.print(
                f"[{CHECK_STYLE[s.status]}]{s.status}[/]  {s.name:<{width}}  {escape(s.detail)}"
            )
            if s.cause:
                out.print(f"      {'':<{width}}  cause: {escape(s.cause)}")
            if s.fix:
                out.print(f"      {'':<{width}}  fix:   {escape(s.fix)}")
    if failed:
        raise typer.Exit(1)
