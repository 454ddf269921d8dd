"""Domain errors carry their HTTP status; one handler in app.py maps them to JSON."""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    status_code = 500
    error = "InternalError"

    def __init__(self, detail: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra or {}
        # Response headers, e.g. Retry-After.
        self.headers: dict[str, str] = {}


class BadRequest(AppError):
    status_code = 400
    error = "BadRequest"


class Unauthorized(AppError):
    status_code = 401
    error = "Unauthorized"


class Forbidden(AppError):
    status_code = 403
    error = "Forbidden"


class NotFound(AppError):
    status_code = 404
    error = "NotFound"


class Conflict(AppError):
    status_code = 409
    error = "Conflict"


class InvalidInput(AppError):
    status_code = 422
    error = "ValidationError"


class ServiceUnavailable(AppError):
    status_code = 503
    error = "ServiceUnavailable"


class BadGateway(AppError):
    """A server we depend on (the DICOMweb PACS) refused or failed."""

    status_code = 502
    error = "BadGateway"
