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
    fix: bool = typer.Option(
        False,
        "--fix",
        "--yes",
        help="also suspend versioning if it is on (it is only reported otherwise)",
    ),
    monitoring: bool = typer.Option(
        False, "--monitoring", help="then set up CloudWatch as `storage monitoring` does"
    ),
) -> None:
    """Create the bucket if missing and apply CORS, lifecycle, encryption, public access
    block and the TLS-only bucket policy; a second run changes nothing."""
    from ..provisioning.bucket_init import Provisioner
    from ..provisioning.outcomes import Outcome, Request

    settings = settings_or_exit()
    if settings.object_storage.provider == "local":
        folder = (settings.server.data_dir / "objects").resolve()
        if not dry_run:
            folder.mkdir(parents=True, exist_ok=True)
        console = err_console() if dry_run else out
        console.print(f"local store: nothing to provision (objects live in {escape(str(folder))})")
        if dry_run:
            print("[]")
        return
    storage = _s3_storage(settings)

    async def run() -> tuple[list[Request], list[Outcome]]:
        try:
            provisioner = Provisioner(settings, await storage.client(), dry_run=dry_run, fix=fix)
            outcomes = await provisioner.run()
            requests = provisioner.requests
            if monitoring and not any(o.status == "failed" for o in outcomes):
                more, extra = await _monitor(settings, storage, dry_run)
                outcomes, requests = outcomes + more, requests + extra
            return requests, outcomes
        finally:
            await storage.close()

    try:
        requests, outcomes = asyncio.run(run())
    except StorageError as exc:
        raise fail(str(exc)) from None
    _report(settings, outcomes, requests, dry_run)
    if monitoring and not dry_run:
        _print_cloudtrail(settings)


@app.command("monitoring")
def monitoring_cmd(
    dry_run: bool = typer.Option(
        False, "--dry-run", help="print the requests it would make, as JSON; change nothing"
    ),
    trail: str = typer.Option("TRAIL", "--trail", help="trail name in the CloudTrail command"),
) -> None:
    """Set up the bucket's CloudWatch side: S3 request metrics on the key prefix, the spec's
    alarms (4xxErrors, 5xxErrors), optional access logging; print the CloudTrail command.
    A second run changes nothing."""
    settings = settings_or_exit()
    if settings.object_storage.provider == "local":
        raise fail("object_storage.provider is local: CloudWatch monitors an S3 bucket", 2)
    storage = _s3_storage(settings)

    async def run() -> tuple[list[Any], list[Any]]:
        try:
            return await _monitor(settings, storage, dry_run)
        finally:
            await storage.close()

    try:
        outcomes, requests = asyncio.run(run())
    except StorageError as exc:
        raise fail(str(exc)) from None
    _report(settings, outcomes, requests, dry_run)
    if not dry_run:
        _print_cloudtrail(settings, trail)


async def _monitor(settings: Settings, storage: Any, dry_run: bool) -> tuple[list[Any], list[Any]]:
    from ..provisioning.monitoring import Monitor

    async with storage.service_client("cloudwatch") as cloudwatch:
        monitor = Monitor(settings, await storage.client(), cloudwatch, dry_run=dry_run)
        return await monitor.run(), monitor.requests


def _print_cloudtrail(settings: Settings, trail: str = "TRAIL") -> None:
    from ..provisioning.monitoring import cloudtrail_command

    out.print(
        "CloudTrail (not changed here; a trail is an account-wide choice): to audit every "
        "object call under the key prefix, add this data-event selector to your trail:"
    )
    print(cloudtrail_command(settings, trail))


def _report(settings: Settings, outcomes: list[Any], requests: list[Any], dry_run: bool) -> None:
    """One line per setting; in a dry run stdout carries only the JSON requests."""
    console = err_console() if dry_run else out
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
        print(json.dumps([r.as_json() for r in requests], indent=2))
        console.print(f"dry run: {len(requests)} request(s) shown, nothing changed")
    elif failed:
        console.print(f"[red]failed:[/] {', '.join(failed)}")
    elif changed:
        console.print(f"changed: {', '.join(dict.fromkeys(changed))}")
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
    bucket_policy: bool = typer.Option(
        False, "--bucket-policy", help="print the TLS-only bucket policy `init` applies"
    ),
    aws_cli: bool = typer.Option(
        False, "--aws-cli", help="print the AWS CLI commands that set up the IAM side"
    ),
    role: str = typer.Option(
        "",
        "--role",
        help="with --aws-cli: a role instead of the user (ec2 instance profile, ecs task "
        "role, eks IRSA)",
    ),
) -> None:
    """Print the least-privilege IAM policy for the server's keys (JSON)."""
    from ..provisioning import documents as doc

    settings = settings_or_exit()
    if settings.object_storage.provider == "local":
        err_console().print(
            "note: object_storage.provider is local; this is for bucket "
            f"{settings.object_storage.bucket_name!r} on S3"
        )
    if role and role not in ("ec2", "ecs", "eks"):
        raise fail(f"--role: one of ec2, ecs, eks (got {role!r})", 2)
    if aws_cli:
        from ..provisioning.iam_walkthrough import walkthrough

        print(walkthrough(settings, role or "user"), end="")  # type: ignore[arg-type]
        return
    if not doc.tls_enforced(settings) and settings.bucket.tls_only_policy:
        err_console().print(
            "note: the endpoint is plain http://, so the policy has no TLS-only deny (it would "
            "lock the server out)"
        )
    if cors and not settings.server.cors_allowed_origins:
        err_console().print(
            "warning: server.cors_allowed_origins is empty: the rule allows nothing"
        )
    if cors:
        document = doc.cors_configuration(settings)
    elif bucket_policy:
        document = doc.bucket_policy(settings)
    else:
        document = doc.iam_policy(settings, principal or None)
    print(json.dumps(document, indent=2))


@app.command("cloudformation")
def cloudformation() -> None:
    """Print a CloudFormation template of the bucket, the server's IAM identity and the
    alarms, built from the same documents as init, policy and monitoring."""
    from ..provisioning.cloudformation import render

    print(render(settings_or_exit()), end="")


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
