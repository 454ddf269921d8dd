"""The janitor inside the server: one run every `janitor.interval_seconds` (0: off)."""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ..core.clock import SYSTEM_CLOCK, Clock
from ..core.config import Settings
from ..storage.base import ObjectStorage
from . import metrics
from .lock import single_run
from .service import run

log = structlog.get_logger(__name__)


def start(
    engine: AsyncEngine,
    maker: async_sessionmaker[AsyncSession],
    storage: ObjectStorage,
    settings: Settings,
    clock: Clock = SYSTEM_CLOCK,
) -> asyncio.Task[None] | None:
    j = settings.janitor
    if j.interval_seconds <= 0:
        log.info("janitor.off", hint="janitor.interval_seconds = 0; run `pacs-ext janitor` instead")
        return None
    # Said at start-up so an operator sees what removes orphans and expired uploads.
    log.info(
        "janitor.scheduled",
        interval_seconds=j.interval_seconds,
        grace_seconds=j.grace_seconds,
        apply=j.apply,
    )
    return asyncio.create_task(_loop(engine, maker, storage, settings, clock), name="janitor")


async def stop(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def run_once(
    engine: AsyncEngine,
    maker: async_sessionmaker[AsyncSession],
    storage: ObjectStorage,
    settings: Settings,
    clock: Clock = SYSTEM_CLOCK,
) -> None:
    apply = settings.janitor.apply
    async with single_run(engine, settings.server.data_dir) as mine:
        if not mine:
            metrics.RUNS.labels(mode=metrics.mode(apply), outcome="skipped").inc()
            log.info("janitor.skipped", reason="another run holds the lock")
            return
        # With janitor.finished, brackets the run: one instance at a time holds the lock, and
        # the logs show it (bench/cluster.py checks that no two runs overlap).
        log.info("janitor.started", apply=apply)
        report = await run(maker, storage, settings, apply=apply, clock=clock)
    metrics.publish(report)


async def _loop(
    engine: AsyncEngine,
    maker: async_sessionmaker[AsyncSession],
    storage: ObjectStorage,
    settings: Settings,
    clock: Clock,
) -> None:
    interval = settings.janitor.interval_seconds
    while True:
        await asyncio.sleep(interval)
        try:
            await run_once(engine, maker, storage, settings, clock)
        except Exception:
            # The database or storage being down must not end the loop: next time may work.
            metrics.RUNS.labels(mode=metrics.mode(settings.janitor.apply), outcome="error").inc()
            log.exception("janitor.failed")
