"""`pacs-ext serve`: run the HTTP server (uvicorn)."""

from __future__ import annotations

import os
import signal
import time
from types import FrameType
from typing import TYPE_CHECKING, Any

import structlog
import typer
import uvicorn

from ..core.config import ConfigError, Settings
from ..core.db import database_error_reason
from ..storage.registry import create_storage
from .common import fail, settings_or_exit
from .db import pending_migrations

if TYPE_CHECKING:
    from ..observability.drain import Drain

log = structlog.get_logger(__name__)


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
    if workers > 1:
        # uvicorn's supervisor forwards SIGTERM to each worker, which stops listening and
        # finishes its requests (shutdown_timeout_seconds), without the /ready drain phase.
        uvicorn.run("pacs_ext.app:create_app", **uvicorn_options(settings, workers))
        return
    from ..app import create_app
    from ..observability.drain import Drain

    drain = Drain()
    options = {k: v for k, v in uvicorn_options(settings, 1).items() if k != "workers"}
    options["factory"] = False
    server = DrainingServer(
        uvicorn.Config(create_app(settings, drain=drain), **options),
        drain,
        settings.server.drain_seconds,
    )
    server.run()
    if not server.started:
        raise typer.Exit(3)  # uvicorn's own code for a start-up failure


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
        # After the listener closes: the longest wait for requests in flight.
        "timeout_graceful_shutdown": settings.server.shutdown_timeout_seconds,
    }


class DrainingServer(uvicorn.Server):
    """uvicorn's server with a drain phase on SIGTERM, for rolling restarts behind a balancer.

    SIGTERM: /ready answers 503 at once while every request is still served for
    `drain_seconds` (the balancer's health checks take the instance out meanwhile); then
    uvicorn's own shutdown: the listener closes, requests in flight get up to
    `timeout_graceful_shutdown`, and the process exits 0 — a requested stop, not a failure
    (uvicorn itself re-raises the signal, which makes the exit status 143).
    A second SIGTERM, or SIGINT, ends the drain at once.
    """

    def __init__(self, config: uvicorn.Config, drain: Drain, drain_seconds: float) -> None:
        super().__init__(config)
        self._drain = drain
        self._drain_seconds = drain_seconds
        self._drain_until: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM:
            super().handle_exit(sig, frame)
            return
        if self._drain.active or self._drain_seconds <= 0:
            self._drain.begin()
            self.should_exit = True
            return
        self._drain.begin()
        self._drain_until = time.monotonic() + self._drain_seconds
        log.info("server.draining", seconds=self._drain_seconds)

    async def on_tick(self, counter: int) -> bool:
        # main_loop ticks every 0.1 s: the drain ends within a tick of its deadline.
        if self._drain_until is not None and time.monotonic() >= self._drain_until:
            self.should_exit = True
        return await super().on_tick(counter)
