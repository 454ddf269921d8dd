"""An optional listener of its own for /metrics (metrics.port), e.g. on an internal interface,
run inside the server's event loop next to the API."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response

from ..core.config import Settings
from .endpoints import metrics_response


def metrics_app(main: FastAPI) -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        return await metrics_response(request, main)

    return app


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to the API's server (the process's main one)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def install_signal_handlers(self) -> None:  # uvicorn < 0.29
        pass


@dataclass
class Listener:
    server: uvicorn.Server
    task: asyncio.Task[None]


async def start(main: FastAPI, settings: Settings) -> Listener | None:
    """Serve /metrics on metrics.host:metrics.port; None when metrics.port is 0."""
    if not settings.metrics.port:
        return None
    family = socket.AF_INET6 if ":" in settings.metrics.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Several workers each serve it; any one's answer holds every worker's counts.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((settings.metrics.host, settings.metrics.port))
    config = uvicorn.Config(
        metrics_app(main), lifespan="off", log_config=None, access_log=False, log_level="warning"
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="metrics-listener")
    while not server.started and not task.done():  # noqa: ASYNC110 - uvicorn has no event
        await asyncio.sleep(0.005)
    if task.done():
        sock.close()
        task.result()  # it could not start: neither does the server
        raise RuntimeError("the metrics listener stopped at start-up")
    return Listener(server, task)


async def stop(listener: Listener | None) -> None:
    if listener is None:
        return
    listener.server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await listener.task
