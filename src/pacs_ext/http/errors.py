"""The last answer to an error nothing else handled: a JSON 500 (or 503), connection kept;
and the one mapping of storage-neutral errors to HTTP (`storage_answer`).

A handler registered for `Exception` runs in Starlette's ServerErrorMiddleware, which sends
the handler's response and then re-raises: uvicorn logs "Exception in ASGI application" and
closes the connection, so the client's next request on it fails with a reset. This pure ASGI
middleware sits inside that one and answers instead, without re-raising.
"""

from __future__ import annotations

import json

import structlog
from sqlalchemy import exc as sa_exc
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..storage.base import (
    InvalidObjectKey,
    ObjectArchived,
    ObjectNotFound,
    StorageAccessDenied,
    StorageError,
    StorageUnavailable,
)

log = structlog.get_logger(__name__)


async def send_json(
    send: Send, status: int, payload: dict[str, object], headers: list[tuple[bytes, bytes]]
) -> None:
    """A whole JSON answer from pure ASGI middleware (before any app has answered)."""
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class ErrorResponses:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracked)
        except Exception as exc:
            if started:
                # Half a response is out: only closing the connection tells the client.
                raise
            status, body = answer(exc)
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body})


def answer(exc: Exception) -> tuple[int, bytes]:
    """Status and JSON body for an exception no handler took; logs it."""
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        status, error = 503, "DatabaseUnavailable"
        detail = "the database connection was lost; retry"
    elif isinstance(exc, ConnectionError | TimeoutError) and not isinstance(exc, StorageError):
        # A dependency that dropped the connection or did not answer in time: retryable.
        # Any other OSError (a FileNotFoundError, a PermissionError) is a bug or a broken
        # installation, not a passing outage: a 500 with the request id, below.
        log.warning("dependency.unavailable", error=repr(exc)[:200])
        status, error, detail = 503, "ServiceUnavailable", "a backing service is unavailable; retry"
    else:
        log.error("server.unhandled_error", exc_info=exc)
        status, error = 500, "InternalError"
        detail = "unexpected server error (logged)"
        if request_id:
            detail += f"; quote request id {request_id}"
    body = {"error": error, "detail": detail, "request_id": request_id}
    return status, json.dumps(body).encode()


def storage_answer(exc: StorageError) -> tuple[int, str, str]:
    """Status, error name and detail for a storage-neutral error: the only such table.

    With an operation recorded (storage/errors.py), the answer names it; without one, the
    historical "StorageUnavailable" answer is kept (HTTP contract unchanged)."""
    op = exc.operation
    if isinstance(exc, ObjectArchived):
        return 409, "ObjectArchived", str(exc)
    if op is None:
        return 503, "StorageUnavailable", f"object storage failed: {exc}"
    if isinstance(exc, ObjectNotFound):
        return 404, "NotFound", f"object not found in storage: {exc}"
    if isinstance(exc, InvalidObjectKey):
        return 422, "ValidationError", str(exc)
    if isinstance(exc, StorageAccessDenied):
        # The server's own credentials were refused: an operator problem, not the caller's.
        return 503, "ServiceUnavailable", f"storage refused access during {op}: {exc}"
    if isinstance(exc, StorageUnavailable):
        return 503, "ServiceUnavailable", f"storage unavailable during {op}: {exc}"
    return 503, "ServiceUnavailable", f"storage error during {op}: {exc}"
