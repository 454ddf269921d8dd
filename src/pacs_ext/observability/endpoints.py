"""Operations endpoints: /health (alive), /ready (database and storage reachable), /metrics."""

from __future__ import annotations

import asyncio
import hmac
import time
from typing import Any

import anyio.to_thread
import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ..core import metrics
from ..core.db import no_answer
from ..core.logging import redact_text
from ..masks import service as masks
from ..objects.legacy_folder import inspect
from ..storage.base import ObjectStorage
from .drain import Drain

log = structlog.get_logger(__name__)

router = APIRouter(tags=["operations"])

OK = "ok"


class Readiness:
    """Probes behind /ready. The database is asked every time (SELECT 1 is cheap). The storage
    probe is a request to the storage service: a success is reused for a couple of seconds and
    concurrent callers share one probe; a failure is not reused, so a recovery shows at once."""

    def __init__(
        self,
        engine: AsyncEngine,
        storage: ObjectStorage,
        *,
        storage_ttl: float = 2.0,
        timeout: float = 3.0,
        legacy_dir: str = "",
    ) -> None:
        self._legacy_dir = legacy_dir
        self._engine = engine
        self._storage = storage
        self._ttl = storage_ttl
        self._timeout = timeout
        self._lock = asyncio.Lock()
        self._storage_ok_at = float("-inf")
        self._abandoned: set[asyncio.Future[None]] = set()

    async def database(self) -> str:
        # A task waited for with a deadline rather than cancelled in place: a connection that
        # stopped answering takes a while more to be closed, and the probe must not wait for it.
        probe = asyncio.ensure_future(self._select_one())
        done, _ = await asyncio.wait({probe}, timeout=self._timeout)
        if not done:
            probe.cancel()
            self._abandoned.add(probe)
            probe.add_done_callback(self._abandoned.discard)
            return f"unavailable: no answer within {self._timeout:g} s"
        exc = probe.exception()
        if exc is not None:  # any failure means "not ready"
            # /ready needs no token: our own timeouts are told, other errors only by name.
            timed_out = no_answer(exc)
            return f"unavailable: {timed_out or type(exc).__name__}"
        return OK

    async def _select_one(self) -> None:
        async with self._engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def storage(self) -> str:
        async with self._lock:
            if time.monotonic() - self._storage_ok_at < self._ttl:
                return OK
            answer = await self._probe_storage()
            if answer == OK:
                self._storage_ok_at = time.monotonic()
            return answer

    async def _probe_storage(self) -> str:
        try:
            async with asyncio.timeout(self._timeout):
                await self._storage.ping()
        except TimeoutError:
            return f"unavailable: no answer within {self._timeout:g} s"
        except Exception as exc:
            return redact_text(f"unavailable: {type(exc).__name__}: {exc}")[:300]
        return OK

    async def legacy(self) -> str:
        """The pre-migration folder still serves old masks: it must be there and readable."""
        try:
            async with asyncio.timeout(self._timeout):
                state = await anyio.to_thread.run_sync(inspect, self._legacy_dir)
        except TimeoutError:
            return f"unavailable: no answer within {self._timeout:g} s"
        return OK if state.ok else f"unavailable: {state.detail}"

    async def check(self) -> dict[str, str]:
        database, storage = await asyncio.gather(self.database(), self.storage())
        checks = {"database": database, "storage": storage}
        if self._legacy_dir:
            checks["legacy_local_dir"] = await self.legacy()
        return checks


@router.get("/health")
async def health() -> dict[str, str]:
    """The process is alive."""
    return {"status": OK}


@router.get("/ready", responses={503: {"description": "a dependency is down"}})
async def ready(request: Request) -> JSONResponse:
    """Database and storage reachable; 503 naming the failing part otherwise, and 503 at
    once while the instance drains after a SIGTERM."""
    drain: Drain = request.app.state.drain
    if drain.active:
        # Not probed: whatever the database says, new requests belong on another instance.
        return JSONResponse({"status": "draining", "failing": ["draining"]}, status_code=503)
    readiness: Readiness = request.app.state.readiness
    checks = await readiness.check()
    failing = [name for name, answer in checks.items() if answer != OK]
    if failing:
        log.warning("server.not_ready", failing=failing, checks=checks)
        return JSONResponse(
            {"status": "unavailable", "failing": failing, "checks": checks}, status_code=503
        )
    return JSONResponse({"status": OK, "checks": checks})


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics_endpoint(request: Request) -> Response:
    """Prometheus metrics (all workers' when several run)."""
    if request.app.state.settings.metrics.port:
        # Served only by the metrics listener (metrics.port).
        return JSONResponse({"error": "NotFound", "detail": "Not Found"}, status_code=404)
    return await metrics_response(request, request.app)


async def metrics_response(request: Request, app: Any) -> Response:
    """The scrape answer, with the main app's state; 401 without the configured token."""
    token = app.state.settings.metrics.token.get_secret_value()
    if token:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
            return JSONResponse(
                {"error": "Unauthorized", "detail": "metrics need the configured bearer token"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
    counts = await _mask_group_counts(app.state.sessionmaker)
    families = metrics.scrape_time_families(counts)
    body = await anyio.to_thread.run_sync(metrics.exposition, families)
    return Response(body, media_type=metrics.CONTENT_TYPE)


async def _mask_group_counts(maker: async_sessionmaker[AsyncSession]) -> dict[str, int] | None:
    try:
        async with asyncio.timeout(3.0), maker() as session:
            return await masks.group_counts(session)
    except Exception as exc:  # a scrape still reports everything else
        log.warning("metrics.database_unavailable", error=type(exc).__name__)
        return None
