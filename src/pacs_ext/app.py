"""create_app(): the lifespan builds engine, sessionmaker and storage; errors map in one place."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import structlog
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__
from .api import api_router
from .core import gc_pause, metrics
from .core.auth import TokenVerifier
from .core.clock import SYSTEM_CLOCK, Clock
from .core.config import Settings, config_layers, get_settings
from .core.db import create_engine, create_sessionmaker, no_answer
from .core.errors import AppError
from .core.logging import configure_logging, register_secrets
from .exports.runner import ExportRunner
from .http.admission import Admission
from .http.body_limit import BodyLimit
from .http.docs import install_docs
from .http.errors import ErrorResponses, storage_answer
from .http.observability import RequestObservability
from .http.security_headers import SecurityHeaders
from .http.viewer import install_viewer
from .janitor import periodic as periodic_janitor
from .masks import upload_guard
from .objects import high_water
from .observability import listener as metrics_listener
from .observability import waits
from .observability.drain import Drain
from .observability.endpoints import Readiness
from .observability.endpoints import router as operations_router
from .storage.base import ObjectStorage, StorageError
from .storage.downloads import DirectDownloads, DownloadSigner
from .storage.instrumented import instrument
from .storage.registry import create_storage

if TYPE_CHECKING:
    from .legacy.serving import LegacyFiles

log = structlog.get_logger(__name__)

DESCRIPTION = """
Annotations and segmentation masks for DICOM studies, with **verified direct upload**:
the server signs short-lived URLs, clients PUT mask files straight to object storage, then
call `complete`, and the server verifies every object before recording the masks.

Every `/api` route needs `Authorization: Bearer <JWT>` (`pacs-ext token SUBJECT` prints one).
Errors are JSON `{"error": "<Name>", "detail": "..."}`.
"""


def _downloads(legacy: LegacyFiles | None, storage: ObjectStorage) -> DownloadSigner:
    """Who signs downloads: the storage, or the legacy fallback during migration phase 2."""
    if legacy is None:
        return DirectDownloads(storage)
    from .legacy.serving import Fallback

    return Fallback(legacy, storage)


def create_app(
    settings: Settings | None = None, *, clock: Clock = SYSTEM_CLOCK, drain: Drain | None = None
) -> FastAPI:
    """clock: the time signed-URL expiry and the janitor decide against (tests pass a fake);
    drain: set by `serve` on SIGTERM, turns /ready to 503 (cli/serve.py)."""
    settings = settings or get_settings()
    configure_logging(settings.logging)
    register_secrets(_secrets(settings))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        # Every storage call is counted and timed for /metrics (storage/instrumented.py).
        backend = create_storage(settings, clock)
        app.state.storage = instrument(backend)
        # The local store's own routes serve its files: they are handed the store itself.
        app.state.local_store = backend if settings.object_storage.provider == "local" else None
        legacy_dir = settings.object_storage.legacy_local_dir
        app.state.readiness = Readiness(engine, app.state.storage, legacy_dir=legacy_dir)
        if legacy_dir:
            _log_legacy_dir(legacy_dir)
        app.state.downloads = _downloads(app.state.legacy_files, app.state.storage)
        if settings.object_storage.provider == "local":
            # The local store's PUTs are write-once and refused for groups no longer pending.
            app.state.upload_guard = partial(
                upload_guard.check, app.state.sessionmaker, settings.object_storage.key_prefix
            )
        log.info(
            "server.started",
            database=engine.dialect.name,
            version=__version__,
            **storage_summary(settings),
        )
        # DICOM SEG exports run here, off the requests that start them.
        app.state.exports = ExportRunner(app.state.sessionmaker, app.state.storage, settings)
        app.state.exports.start()
        janitor_task = periodic_janitor.start(
            engine, app.state.sessionmaker, app.state.storage, settings, clock
        )
        metrics_task = await metrics_listener.start(app, settings)
        probe_task = waits.start(engine)
        marks_task = asyncio.create_task(
            high_water.raise_ahead(
                app.state.sessionmaker, app.state.storage, settings.object_storage.key_prefix
            ),
            name="high-water-marks",
        )
        gc_pause.settle_once("start-up")  # what start-up made, out of the collector's way
        try:
            yield
        finally:
            marks_task.cancel()
            await asyncio.gather(marks_task, return_exceptions=True)
            await waits.stop(probe_task)
            await metrics_listener.stop(metrics_task)
            await app.state.exports.close()
            await periodic_janitor.stop(janitor_task)
            await app.state.storage.close()
            await engine.dispose()

    app = FastAPI(
        title="PACS Extension Server",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # /docs and /redoc are served with assets from the package (docs.py), not a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.clock = clock
    app.state.drain = drain or Drain()
    app.state.token_verifier = TokenVerifier(settings)

    _install_error_handlers(app)
    # Inside RequestObservability: the answer to an unhandled error carries the request id.
    app.add_middleware(ErrorResponses)
    # Inside BodyLimit (a body has arrived before its request takes a slot) and inside the
    # observability middleware (the wait counts in the request's reported time).
    app.add_middleware(
        Admission,
        max_active=settings.server.max_active_requests,
        timeout=settings.server.admission_timeout_seconds,
        record_wait=metrics.ADMISSION_WAIT.observe,
    )
    # Inside the observability middleware, so a 413 is counted and logged like any answer.
    app.add_middleware(BodyLimit, max_bytes=settings.limits.max_body_bytes)
    app.add_middleware(RequestObservability)
    app.add_middleware(SecurityHeaders)
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
    app.include_router(operations_router)
    install_viewer(app)  # the /viewer page for people
    install_docs(app)
    if settings.object_storage.provider == "local":
        from .storage.local.endpoints import router as local_storage_router

        app.include_router(local_storage_router)
    app.state.legacy_files = None
    if settings.object_storage.legacy_local_dir:
        # Migration phase 2: masks not yet in object storage are served from the old folder.
        from .legacy.serving import legacy_files
        from .legacy.serving import router as legacy_router

        app.state.legacy_files = legacy_files(settings)
        app.include_router(legacy_router)
    return app


def storage_summary(settings: Settings) -> dict[str, str]:
    """Which storage the server uses and where its settings came from, for the start-up log:
    an operator whose `.env` was not read sees `storage=local` at once. Never a secret."""
    o = settings.object_storage
    summary = {"storage": o.provider, "config": ", ".join(config_layers().describe())}
    if o.provider == "local":
        summary["objects"] = str((settings.server.data_dir / "objects").resolve())
        return summary
    summary |= {
        "bucket": o.bucket_name,
        "region": o.region,
        "endpoint": o.endpoint or f"AWS S3 ({o.region})",
        "credentials": "static access key" if o.access_key else "AWS credential chain",
    }
    if o.public_endpoint:
        summary["public_endpoint"] = o.public_endpoint
    return summary


def _log_legacy_dir(folder: str) -> None:
    from .objects.legacy_folder import KEY, inspect

    state = inspect(folder)
    if state.ok:
        log.info("legacy_local_dir.serving", key=KEY, path=folder)
    else:  # `serve` refuses to start on this; an app built otherwise says it loudly
        log.error("legacy_local_dir.unusable", key=KEY, path=folder, detail=state.detail)


def _secrets(settings: Settings) -> list[str]:
    """Values the log redaction masks wherever they would appear."""
    storage = settings.object_storage
    values = [
        settings.auth.jwt_secret.get_secret_value(),
        settings.metrics.token.get_secret_value(),
        storage.secret_key.get_secret_value(),
        storage.session_token.get_secret_value(),
        settings.dicomweb.password.get_secret_value(),
        settings.dicomweb.token.get_secret_value(),
    ]
    if settings.is_development:  # the generated ones, kept in data_dir
        values.append(settings.jwt_secret())
        if storage.provider == "local":
            values.append(settings.local_storage_secret().decode())
    return values


def _error(status: int, error: str, detail: Any, **extra: Any) -> JSONResponse:
    return JSONResponse(
        jsonable_encoder({"error": error, "detail": detail, **extra}), status_code=status
    )


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def app_error(_: Request, exc: AppError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else {}
        resp = _error(exc.status_code, exc.error, exc.detail, **exc.extra)
        resp.headers.update(headers | exc.headers)
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
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and isinstance(exc.__cause__, RecursionError):
            # JSON nested deeper than the parser's stack: bad input, named like the cap.
            depth = request.app.state.settings.limits.annotation_data_max_depth
            return _error(
                422,
                "ValidationError",
                f"the JSON body is nested too deeply (data may nest at most {depth} levels: "
                "limits.annotation_data_max_depth)",
            )
        names = {
            400: "BadRequest",
            401: "Unauthorized",
            403: "Forbidden",
            404: "NotFound",
            405: "MethodNotAllowed",
        }
        return _error(exc.status_code, names.get(exc.status_code, "HTTPError"), exc.detail)

    @app.exception_handler(StorageError)
    async def storage_error(_: Request, exc: StorageError) -> JSONResponse:
        log.warning("storage.error", error=str(exc), kind=type(exc).__name__)
        return _error(*storage_answer(exc))

    @app.exception_handler(sa_exc.IntegrityError)
    async def integrity_error(_: Request, exc: sa_exc.IntegrityError) -> JSONResponse:
        log.warning("db.integrity_error", error=str(exc.orig)[:200])
        return _error(409, "Conflict", "the change conflicts with a concurrent one; retry")

    @app.exception_handler(sa_exc.OperationalError)
    @app.exception_handler(sa_exc.InterfaceError)
    async def db_unavailable(_: Request, exc: sa_exc.DBAPIError) -> JSONResponse:
        log.warning("db.unavailable", error=str(exc.orig)[:200])
        timed_out = no_answer(exc)
        if timed_out is not None:  # our own words: the timeout and its setting
            detail = f"the database is unavailable: {timed_out}; retry shortly"
            return _error(503, "DatabaseUnavailable", detail)
        return _error(503, "DatabaseUnavailable", "the database is unavailable; retry shortly")

    @app.exception_handler(sa_exc.TimeoutError)
    async def pool_exhausted(request: Request, exc: sa_exc.TimeoutError) -> JSONResponse:
        # Every pooled connection stayed in use for the whole wait: the database is not
        # down, but for this request it is unavailable, and a retry may find one free.
        log.warning("db.pool_exhausted", error=str(exc)[:200])
        timeout = request.app.state.settings.database.pool_timeout_seconds
        detail = (
            f"no database connection came free within {timeout:g} s "
            "(database.pool_timeout_seconds); retry shortly"
        )
        return _error(503, "DatabaseUnavailable", detail)

    @app.exception_handler(sa_exc.DBAPIError)
    async def db_error(_: Request, exc: sa_exc.DBAPIError) -> JSONResponse:
        # A connection dropped mid-request (backend terminated, failover): the pool replaces
        # it, so this is a 503 the client may retry, not a server bug.
        if exc.connection_invalidated:
            log.warning("db.connection_lost", error=str(exc.orig)[:200])
            return _error(503, "DatabaseUnavailable", "the database connection was lost; retry")
        log.error("server.unhandled_error", exc_info=exc)
        return _error(500, "InternalError", "unexpected server error (logged)")
