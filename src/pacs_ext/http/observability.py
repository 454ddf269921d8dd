"""Per-request observability as a pure ASGI middleware: request id, Server-Timing, metrics,
one log line.

Pure ASGI rather than BaseHTTPMiddleware: no extra task per request, so context variables bound
while handling the request (the subject, the ids in the path) stay visible here, and the
response body streams through untouched.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core import metrics

log = structlog.get_logger("pacs_ext.http")

# A caller's X-Request-ID is kept when it is a plain token; anything else gets a fresh id.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
# Probes and scrapes arrive every few seconds: logged at debug level only.
_QUIET_PATHS = frozenset({"/health", "/ready", "/metrics"})
PATH_IDS = ("annotation_id", "group_id", "mask_id")
UNMATCHED = "unmatched"


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _REQUEST_ID.fullmatch(candidate):
                return candidate
            break
    return uuid.uuid4().hex


def _path_ids(params: dict[str, Any]) -> dict[str, Any]:
    return {
        k: int(v) if isinstance(v, str) and v.isdigit() else v
        for k, v in params.items()
        if k in PATH_IDS
    }


def _route(scope: Scope) -> str:
    """The route's template, never the raw path: one series per route, not one per id."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    if not isinstance(template, str):
        return UNMATCHED
    regex = getattr(route, "path_regex", None)
    path: str = scope["path"]
    if regex is None or regex.match(path):
        return template
    # A route of a router included with a prefix (/api) knows only its own part of the path
    # in recent FastAPI versions: the prefix is what precedes the part it matches.
    start = path.find("/", 1)
    while start > 0:
        if regex.match(path[start:]):
            return path[:start] + template
        start = path.find("/", start + 1)
    return template


class RequestObservability:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        header = (b"x-request-id", request_id.encode())
        status = 500
        recorded = False

        def record() -> None:
            nonlocal recorded
            if not recorded:
                recorded = True
                _record(scope, status, time.perf_counter() - started)

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # The app's own time until the response starts (bench/ reads it).
                timing = f"app;dur={(time.perf_counter() - started) * 1000:.1f}".encode()
                headers = [*message.get("headers", ()), header, (b"server-timing", timing)]
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                # Before the last byte leaves: a client that has its answer finds it counted
                # when it scrapes next, whichever worker answers.
                record()
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            record()  # no response (an exception, a disconnect): counted as a 500


def _record(scope: Scope, status: int, elapsed: float) -> None:
    method, route = scope["method"], _route(scope)
    metrics.HTTP_REQUESTS.labels(method=method, route=route, status=str(status)).inc()
    metrics.HTTP_DURATION.labels(method=method, route=route).observe(elapsed)
    path = scope["path"]
    # The path only: query strings of signed URLs (and ?access_token=) are credentials.
    fields: dict[str, Any] = {
        "method": method,
        "path": path,
        "route": route,
        "status": status,
        "duration_ms": round(elapsed * 1000, 2),
    }
    state = scope.get("state") or {}
    if state.get("subject"):
        fields["subject"] = state["subject"]
    fields.update(_path_ids(scope.get("path_params") or {}))
    emit = log.debug if path in _QUIET_PATHS else log.info
    emit("http.request", **fields)


async def bind_path_ids(request: Request) -> None:
    """Router dependency: the annotation, group and mask ids of the path go on every log line
    of the request (async, so the binding happens in the request's own context)."""
    ids = _path_ids(request.path_params)
    if ids:
        structlog.contextvars.bind_contextvars(**ids)
