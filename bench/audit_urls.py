"""Audit rows for the signed URLs of one mask group: the single INSERT the server uses
(unnest on PostgreSQL, json_each on SQLite) against a plain executemany of the same rows.
Runs interleaved on a migrated database; prints min and median of insert + commit.

Usage: python bench/audit_urls.py [--files 2000 5000] [--runs 15] [--database sqlite|postgres|both]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fixtures.databases import database
from fixtures.server import ServerProcess
from pacs_ext.audit import repository, service
from pacs_ext.core.auth import Principal
from pacs_ext.core.config import Settings
from pacs_ext.core.db import create_engine
from pacs_ext.models.base import utcnow


async def measure(url: str, files: int, runs: int) -> dict[str, list[float]]:
    # The server's engine: on SQLite its WAL / synchronous=NORMAL pragmas matter here.
    engine = create_engine(Settings(database={"url": url}))
    maker = async_sessionmaker(engine)
    who = Principal("bench")
    expires = utcnow() + timedelta(minutes=10)
    urls = [service.IssuedUrl(f"mask/1/2/{i:04d}_liver.png", expires) for i in range(files)]

    async def batch(session: AsyncSession) -> None:
        await service.record_signed_urls(session, who, "PUT", urls, annotation_id=1, group_id=2)

    async def executemany(session: AsyncSession) -> None:
        common = {
            "created_at": utcnow(),
            "subject": "bench",
            "action": "signed_url.issue",
            "annotation_id": 1,
            "group_id": 2,
            "mask_id": None,
            "method": "PUT",
            "request_id": None,
        }
        rows = [
            {**common, "object_key": u.object_key, "expires_at": u.expires_at, "part_number": None}
            for u in urls
        ]
        await session.execute(insert(repository._TABLE), rows)

    times: dict[str, list[float]] = {"one INSERT (server)": [], "executemany": []}
    for _ in range(runs + 1):
        for name, fn in (("one INSERT (server)", batch), ("executemany", executemany)):
            async with maker() as session:
                started = time.perf_counter()
                await fn(session)
                await session.commit()
                times[name].append((time.perf_counter() - started) * 1000)
    await engine.dispose()
    return {k: v[1:] for k, v in times.items()}  # first round warms up


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--files", type=int, nargs="+", default=[2000, 5000])
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    args = p.parse_args()
    kinds = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    for kind in kinds:
        with tempfile.TemporaryDirectory() as tmp, database(kind, Path(tmp)) as url:
            ServerProcess(data_dir=Path(tmp), database_url=url).run_cli("db", "upgrade")
            for files in args.files:
                result = asyncio.run(measure(url, files, args.runs))
                print(f"database={kind} urls={files} runs={args.runs} (insert + commit, ms)")
                for name, ts in result.items():
                    print(f"  {name:20s} min {min(ts):7.1f}   median {statistics.median(ts):7.1f}")


if __name__ == "__main__":
    main()
