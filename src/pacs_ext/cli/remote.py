"""What the client commands share: --server/--token (or PACS_EXT_SERVER/PACS_EXT_TOKEN), and
turning SDK errors into one clear message and an exit code."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from ..client import (
    ApiError,
    ClientError,
    DownloadFailed,
    RetryPolicy,
    ServerUnreachable,
    UploadFailed,
)
from ..core.loops import loop_factory
from .common import describe_os_error, err_console

if TYPE_CHECKING:
    from rich.console import Console

T = TypeVar("T")

ServerOption = Annotated[
    str,
    typer.Option(
        "--server",
        envvar="PACS_EXT_SERVER",
        help="base URL of the PACS Extension Server",
        show_envvar=True,
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="PACS_EXT_TOKEN",
        help="bearer token (`pacs-ext token SUBJECT` prints one)",
        show_envvar=True,
        show_default=False,
    ),
]
ConcurrencyOption = Annotated[
    int, typer.Option("--concurrency", "-c", min=1, max=256, help="transfers in flight")
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars")]
RetriesOption = Annotated[
    int,
    typer.Option(
        "--retries", min=0, max=20, help="retries per request on 5xx and connection errors"
    ),
]

DEFAULT_SERVER = "http://127.0.0.1:8000"


@cache
def out_console() -> Console:
    """Results on stdout, through rich (made on first use, like common.err_console)."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def retry_policy(retries: int) -> RetryPolicy:
    return RetryPolicy(attempts=retries + 1)


def require_token(server: str, token: str | None) -> str:
    """The token to use; exits with a clear message when it or the server URL is unusable."""
    if not server.startswith(("http://", "https://")):
        _error(f"--server must be an http:// or https:// URL (got {server!r})")
        raise typer.Exit(2)
    if not token or not token.strip():
        _error("no token: pass --token or set PACS_EXT_TOKEN (`pacs-ext token SUBJECT`)")
        raise typer.Exit(2)
    return token.strip()


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a client coroutine; every failure becomes a message and a non-zero exit."""
    # What the imports made (~100,000 objects: typer, pydantic, httpx...) lives as long as the
    # command: frozen, the cyclic collector no longer walks it in its full collections, one
    # of which (~25 ms of CPU) fell inside every 2,000-file upload.
    gc.freeze()
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            return runner.run(coro)
    except KeyboardInterrupt:
        _error("interrupted; run the same command again to resume")
        raise typer.Exit(130) from None
    except UploadFailed as exc:
        _error(f"{len(exc.failures)} file(s) failed to upload to mask group {exc.group_id}:")
        _list_failures(exc.failures)
        err_console().print(
            "the group is left pending: run the same command again to send only what is missing"
        )
        raise typer.Exit(1) from None
    except DownloadFailed as exc:
        _error(f"{len(exc.failures)} file(s) failed to download:")
        _list_failures(exc.failures)
        missing = sum(1 for f in exc.failures if f.missing)
        if missing:
            err_console().print(
                f"{missing} of them are missing from object storage: running again cannot "
                "fetch them; tell an administrator (`pacs-ext janitor` lists masks whose "
                "object is gone)"
            )
        if missing < len(exc.failures):
            err_console().print("run the same command again to fetch only what is missing")
        raise typer.Exit(1) from None
    except ApiError as exc:
        hint = ""
        if exc.status_code == 401:
            hint = " (check --token / PACS_EXT_TOKEN)"
        _error(f"the server answered {exc.status_code} {exc.error}: {exc.detail}{hint}")
        raise typer.Exit(1) from None
    except ServerUnreachable as exc:
        _error(f"{exc} (check --server / PACS_EXT_SERVER)")
        raise typer.Exit(1) from None
    except ClientError as exc:
        _error(str(exc))
        raise typer.Exit(1) from None
    except OSError as exc:  # a destination that cannot be created or written, a full disk
        _error(describe_os_error(exc))
        raise typer.Exit(1) from None


def _error(message: str) -> None:
    from rich.text import Text

    err_console().print(Text.assemble(("error: ", "red"), message))


def _list_failures(failures: list[Any]) -> None:
    from rich.text import Text

    for f in failures[:10]:
        err_console().print(Text(f"  {f.filename}: {f.reason}"))
    if len(failures) > 10:
        err_console().print(f"  ... and {len(failures) - 10} more")


def rate(count: float, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0
