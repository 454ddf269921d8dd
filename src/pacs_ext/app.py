"""create_app(): the lifespan builds engine, sessionmaker and storage; errors map in one place."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__
from .api import api_router
from .auth import TokenVerifier
from .config import Settings, get_settings
from .db import create_engine, create_sessionmaker
from .exceptions import AppError
from .observability.logging import configure_logging
from .storage.base import StorageError
from .storage.registry import create_storage

log = structlog.get_logger(__name__)

DESCRIPTION = """
Annotations and segmentation masks for DICOM studies, with **verified direct upload**:
the server signs short-lived URLs, clients PUT mask files straight to object storage, then
call `complete`, and the server verifies every object before recording the masks.

Every `/api` route needs `Authorization: Bearer <JWT>` (`pacs-ext token SUBJECT` prints one).
Errors are JSON `{"error": "<Name>", "detail": "..."}`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.logging)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        app.state.storage = create_storage(settings)
        log.info(
            "server.started",
            storage=settings.object_storage.provider,
            database=engine.dialect.name,
            version=__version__,
        )
        try:
            yield
        finally:
            await app.state.storage.close()
            await engine.dispose()

    app = FastAPI(
        title="PACS Extension Server",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.token_verifier = TokenVerifier(settings)

    _install_error_handlers(app)
    app.middleware("http")(_request_context)
    if settings.server.cors_allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.server.cors_allowed_origins,
            allow_methods=["GET", "PUT", "POST", "PATCH", "DELETE", "HEAD"],
            allow_headers=["*"],
            expose_headers=["ETag", "X-Request-ID"],
            max_age=3000,
        )
    app.include_router(api_router, prefix="/api")
    _add_health_routes(app)
    if settings.object_storage.provider == "local":
        from .storage.local_endpoints import router as local_storage_router

        app.include_router(local_storage_router)
    return app


async def _request_context(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
    request_id = request_id[:128]
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    response = await call_next(request)
    response.headers["X-Request-ID"] = request_id
    # The path only: query strings of signed URLs are credentials.
    log.info(
        "http.request",
        method=request.method,
        path=request.url.path,
        status=response.status_code,
        subject=getattr(request.state, "subject", None),
        duration_ms=round((time.perf_counter() - started) * 1000, 2),
    )
    return response


def _error(status: int, error: str, detail: Any, **extra: Any) -> JSONResponse:
    return JSONResponse(
        jsonable_encoder({"error": error, "detail": detail, **extra}), status_code=status
    )


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def app_error(_: Request, exc: AppError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        resp = _error(exc.status_code, exc.error, exc.detail, **exc.extra)
        if headers:
            resp.headers.update(headers)
        return resp

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
            problems.append({"field": ".".join(loc) or "body", "message": err.get("msg", "")})
        summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])
        return _error(422, "ValidationError", summary or "invalid request", errors=problems)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        names = {404: "NotFound", 405: "MethodNotAllowed", 401: "Unauthorized", 403: "Forbidden"}
        return _error(exc.status_code, names.get(exc.status_code, "HTTPError"), exc.detail)

    @app.exception_handler(StorageError)
    async def storage_error(_: Request, exc: StorageError) -> JSONResponse:
        log.warning("storage.error", error=str(exc), kind=type(exc).__name__)
        return _error(503, "StorageUnavailable", f"object storage failed: {exc}")

    @app.exception_handler(sa_exc.IntegrityError)
    async def integrity_error(_: Request, exc: sa_exc.IntegrityError) -> JSONResponse:
        log.warning("db.integrity_error", error=str(exc.orig)[:200])
        return _error(409, "Conflict", "the change conflicts with a concurrent one; retry")

    @app.exception_handler(sa_exc.OperationalError)
    @app.exception_handler(sa_exc.InterfaceError)
    async def db_unavailable(_: Request, exc: sa_exc.DBAPIError) -> JSONResponse:
        log.warning("db.unavailable", error=str(exc.orig)[:200])
        return _error(503, "DatabaseUnavailable", "the database is unavailable; retry shortly")

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
            return _error(503, "DatabaseUnavailable", "the database connection was lost; retry")
        if isinstance(exc, (ConnectionError, OSError)) and not isinstance(exc, StorageError):
            log.warning("dependency.unavailable", error=repr(exc)[:200])
            return _error(503, "ServiceUnavailable", "a backing service is unavailable; retry")
        log.exception("server.unhandled_error")
        return _error(500, "InternalError", "unexpected server error (logged)")


def _add_health_routes(app: FastAPI) -> None:
    @app.get("/health", tags=["health"])
    async def health() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/ready", tags=["health"], responses={503: {"description": "a dependency is down"}})
    async def ready(request: Request) -> JSONResponse:
        """Database and storage reachable."""
        checks: dict[str, str] = {}
        try:
            async with request.app.state.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:  # any failure means "not ready"
            checks["database"] = f"unavailable: {type(exc).__name__}"
        try:
            await request.app.state.storage.ping()
            checks["storage"] = "ok"
        except Exception as exc:
            checks["storage"] = f"unavailable: {type(exc).__name__}: {exc}"[:300]
        failing = [k for k, v in checks.items() if v != "ok"]
        if failing:
            return JSONResponse(
                {"status": "unavailable", "failing": failing, "checks": checks}, status_code=503
            )
        return JSONResponse({"status": "ok", "checks": checks})
