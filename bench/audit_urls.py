"""The audit trail of signed URLs: one row per request (the server, since 0007_audit_batches)
against one row per URL (the shape before it), on a migrated database.

Write: insert + commit of the audit of one request that signs N URLs, interleaved runs, min
and median. Read: after `--batches` such requests, the time to find every row that names
one object (GET /api/audit?object_key=...: a GIN index on PostgreSQL, json_each on SQLite)
against `object_key = ...` over the per-URL rows.

Usage: python bench/audit_urls.py [--files 2000 5000 10000] [--runs 15] [--batches 20]
                                  [--database sqlite|postgres|both]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

from sqlalchemy import delete, insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fixtures.databases import database
from fixtures.server import ServerProcess
from pacs_ext.audit import repository, service
from pacs_ext.audit.schemas import AuditFilters
from pacs_ext.core.auth import Principal
from pacs_ext.core.config import Settings
from pacs_ext.core.db import create_engine
from pacs_ext.models import AuditEvent
from pacs_ext.models.base import utcnow

WHO = Principal("bench")


def _urls(group: int, files: int) -> list[service.IssuedUrl]:
    expires = utcnow() + timedelta(minutes=10)
    return [service.IssuedUrl(f"mask/1/{group}/{i:05d}_liver.png", expires) for i in range(files)]


async def one_row(session: AsyncSession, group: int, urls: list[service.IssuedUrl]) -> None:
    await service.record_signed_urls(session, WHO, "PUT", urls, annotation_id=1, group_id=group)


async def row_per_url(session: AsyncSession, group: int, urls: list[service.IssuedUrl]) -> None:
    common = {
        "created_at": utcnow(),
        "subject": WHO.subject,
        "action": "signed_url.issue",
        "annotation_id": 1,
        "group_id": group,
        "method": "PUT",
        "object_count": 1,
        "url_count": 1,
    }
    rows = [{**common, "object_key": u.object_key, "expires_at": u.expires_at} for u in urls]
    await session.execute(insert(repository._TABLE), rows)


Writer = Callable[[AsyncSession, int, list[service.IssuedUrl]], Awaitable[None]]
SHAPES: dict[str, Writer] = {"one row (server)": one_row, "row per URL (before)": row_per_url}


async def measure(url: str, files: int, runs: int, batches: int) -> None:
    # The server's engine: on SQLite its WAL / synchronous=NORMAL pragmas matter here.
    engine = create_engine(Settings(database={"url": url}))
    maker = async_sessionmaker(engine)
    urls = _urls(2, files)
    writes: dict[str, list[float]] = {name: [] for name in SHAPES}
    for _ in range(runs + 1):
        for name, write in SHAPES.items():
            async with maker() as session:
                started = time.perf_counter()
                await write(session, 2, urls)
                await session.commit()
                writes[name].append((time.perf_counter() - started) * 1000)
    print(f"  write the audit of one request signing {files} URLs (insert + commit, ms)")
    for name, ts in writes.items():
        ts = ts[1:]  # the first round warms up
        print(f"    {name:22s} min {min(ts):7.1f}   median {statistics.median(ts):7.1f}")

    reads: dict[str, float] = {}
    for name, write in SHAPES.items():
        async with maker() as session:
            await session.execute(delete(AuditEvent))
            for group in range(batches):
                await write(session, 100 + group, _urls(100 + group, files))
            await session.commit()
            wanted = f"mask/1/{100 + batches // 2}/{files // 2:05d}_liver.png"
            filters = AuditFilters(object_key=wanted)
            times = []
            for _ in range(5):
                started = time.perf_counter()
                _, total = await repository.list_events(session, filters, 100, 0)
                times.append((time.perf_counter() - started) * 1000)
            assert total == 1, (name, total)
            reads[name] = statistics.median(times)
    print(f"  find the row naming one object among {batches} x {files} URLs (ms, median of 5)")
    for name, t in reads.items():
        print(f"    {name:22s} {t:7.1f}")
    await engine.dispose()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--files", type=int, nargs="+", default=[2000, 5000, 10000])
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    args = p.parse_args()
    kinds = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    for kind in kinds:
        with tempfile.TemporaryDirectory() as tmp, database(kind, Path(tmp)) as url:
            ServerProcess(data_dir=Path(tmp), database_url=url).run_cli("db", "upgrade")
            for files in args.files:
                print(f"database={kind} urls={files} runs={args.runs}")
                asyncio.run(measure(url, files, args.runs, args.batches))


if __name__ == "__main__":
    main()
