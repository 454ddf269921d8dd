"""Create a mask group with 2,000 files over HTTP, upload them, complete it; print medians.

Targets on this machine: create <= 150 ms median, complete of 2,000 files <= 1 s.
Usage: python bench/groups.py [--files 2000] [--runs 5] [--database sqlite|postgres|both]
                              [--storage local|s3|both]

--storage s3 runs the server on Ceph RGW (provider s3, a fresh bucket): the RGW named by
RGW_ENDPOINT/RGW_ACCESS_KEY/RGW_SECRET_KEY (scripts/rgw.sh's env.sh), else a throwaway one
started with scripts/rgw.sh. The default is both when RGW_ENDPOINT is set, else local.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fixtures.databases import database
from fixtures.factories import make_masks
from fixtures.rgw import Rgw, suite_rgw
from fixtures.server import ServerProcess, s3_server


def server_ms(response: httpx.Response) -> float:
    """The app's own time for the request, from its Server-Timing header."""
    timing = response.headers.get("server-timing", "")
    for part in timing.split(","):
        name, _, rest = part.strip().partition(";dur=")
        if name == "app" and rest:
            return float(rest)
    return float("nan")


async def put_all(uploads: list[dict], bodies: dict[str, bytes], concurrency: int = 16) -> None:
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:

        async def one(u: dict) -> None:
            async with sem:
                r = await http.put(u["url"], content=bodies[u["filename"]], headers=u["headers"])
                r.raise_for_status()

        await asyncio.gather(*(one(u) for u in uploads))


@contextlib.contextmanager
def server_on(storage: str, tmp: Path, url: str, rgw: Rgw | None) -> Iterator[ServerProcess]:
    if storage == "local":
        yield ServerProcess(data_dir=tmp, database_url=url)
        return
    assert rgw is not None
    with rgw.bucket() as bucket:
        yield s3_server(tmp, url, rgw, bucket)


def run(files: int, runs: int, kind: str, storage: str, rgw: Rgw | None) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        database(kind, Path(tmp)) as url,
        server_on(storage, Path(tmp), url, rgw) as srv,
    ):
        srv.start()
        try:
            masks = make_masks(files, labels=tuple(f"label{i}" for i in range(10)), size=20_000)
            bodies = {m.filename: m.body for m in masks}
            specs = [m.spec() for m in masks]
            create_wall, create_app, complete_wall, complete_app = [], [], [], []
            with srv.client("bench") as c:
                for _ in range(runs):
                    a = c.post("/api/annotations", json={"study_instance_uid": "1.2.3"}).json()
                    t0 = time.perf_counter()
                    r = c.post(f"/api/annotations/{a['id']}/mask-groups", json={"files": specs})
                    create_wall.append((time.perf_counter() - t0) * 1000)
                    r.raise_for_status()
                    create_app.append(server_ms(r))
                    group = r.json()
                    asyncio.run(put_all(group["uploads"], bodies))
                    t0 = time.perf_counter()
                    r = c.post(f"/api/annotations/{a['id']}/mask-groups/{group['id']}/complete")
                    complete_wall.append((time.perf_counter() - t0) * 1000)
                    r.raise_for_status()
                    assert r.json()["mask_count"] == files
                    complete_app.append(server_ms(r))
        finally:
            srv.stop()
    print(
        f"database={kind} storage={storage} files={files} runs={runs} "
        "(median; app = server's own time)"
    )
    print(
        f"  create   app {statistics.median(create_app):7.1f} ms   "
        f"wall {statistics.median(create_wall):7.1f} ms   target <= 150 ms"
    )
    print(
        f"  complete app {statistics.median(complete_app):7.1f} ms   "
        f"wall {statistics.median(complete_wall):7.1f} ms   target <= 1000 ms"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--files", type=int, default=2000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    default_storage = "both" if os.environ.get("RGW_ENDPOINT") else "local"
    p.add_argument("--storage", choices=["local", "s3", "both"], default=default_storage)
    args = p.parse_args()
    kinds = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    stores = ["local", "s3"] if args.storage == "both" else [args.storage]
    with contextlib.ExitStack() as stack:
        rgw = None
        if "s3" in stores:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-rgw-")))
            rgw = stack.enter_context(suite_rgw(folder / "rgw"))
        for storage in stores:
            for kind in kinds:
                run(args.files, args.runs, kind, storage, rgw)


if __name__ == "__main__":
    main()
