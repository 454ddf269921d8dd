"""`pacs-ext serve`: run the HTTP server (uvicorn)."""

from __future__ import annotations

import os
from typing import Any

import typer
import uvicorn

from ..core.config import ConfigError, Settings
from ..core.db import database_error_reason
from ..storage.registry import create_storage
from .common import fail, settings_or_exit
from .db import pending_migrations


def serve(
    host: str = typer.Option(None, help="bind address (default: server.host)"),
    port: int = typer.Option(None, help="port (default: server.port)"),
    workers: int = typer.Option(None, help="worker processes (default: server.workers)"),
) -> None:
    """Serve the API, the docs and (for the local provider) the object store."""
    # Workers build their own settings from the environment: pass overrides that way.
    if host:
        os.environ["APP_SERVER__HOST"] = host
    if port:
        os.environ["APP_SERVER__PORT"] = str(port)
    settings = settings_or_exit()
    settings.hs256_secret()  # a development secret is made once, before workers race for it
    if settings.object_storage.provider == "local":
        settings.local_storage_secret()
    else:
        try:
            create_storage(settings)  # checks endpoint, region and bucket; no I/O
        except (ConfigError, ValueError) as exc:
            raise fail(f"configuration error: {exc}", 2) from None
    if settings.object_storage.legacy_local_dir:
        from ..objects.legacy_folder import KEY, inspect

        state = inspect(settings.object_storage.legacy_local_dir)
        if not state.ok:
            # Served anyway, every old mask would get a URL that 404s.
            raise fail(f"configuration error: {KEY}: {state.detail}", 2)
    try:
        behind = pending_migrations(settings)
    except Exception as exc:
        raise fail(f"cannot reach the database: {database_error_reason(exc)}") from None
    if behind:
        raise fail("the database schema is not up to date: run `pacs-ext db upgrade` first")
    workers = workers or settings.server.workers
    if workers > 1 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Each worker records its metrics in files there; /metrics sums them all.
        from ..core.multiproc import prepare_multiprocess_dir

        prepare_multiprocess_dir(settings.server.data_dir / "prometheus-multiproc")
    uvicorn.run("pacs_ext.app:create_app", **uvicorn_options(settings, workers))


def uvicorn_options(settings: Settings, workers: int) -> dict[str, Any]:
    """What `serve` gives uvicorn besides the app (tests read them back through uvicorn.Config)."""
    return {
        "factory": True,
        "host": settings.server.host,
        "port": settings.server.port,
        "workers": workers,
        "log_config": None,
        "access_log": False,
        "proxy_headers": True,
        "server_header": False,
        # uvicorn's own default is 5 s, the same as httpx's pool: a client reusing a connection
        # just as the server closes it loses the request (issue 17).
        "timeout_keep_alive": settings.server.keepalive_timeout_seconds,
    }
