"""Load test: N concurrent clients run the whole upload flow for a fixed time, then every
completed mask is downloaded and checked against its MD5, and the janitor must find nothing
left over (no orphan, no missing object, no unfinished deletion).

Flow per client, repeated until time is up: create a mask group with F files, PUT each file
to its signed URL, complete, get a download URL for one mask and download it.

Usage: python bench/load.py [--clients 32] [--seconds 30] [--files 20] [--size 20000]
                            [--database postgres|sqlite] [--storage local|s3] [--workers 1]
`--storage s3` talks to the S3 endpoint in RGW_ENDPOINT / RGW_ACCESS_KEY / RGW_SECRET_KEY /
RGW_REGION (exported by `scripts/rgw.sh start DIR` in DIR/env.sh) and uses a fresh bucket that
it drops afterwards: the database is fresh too, so objects of an earlier run would be orphans,
and one of them (same key, same bytes) could stand in for an upload that failed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fixtures.databases import database
from fixtures.factories import png_like
from fixtures.metrics import Scrape, scrape
from fixtures.rgw import Rgw
from fixtures.server import ServerProcess, make_token


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    # The server's own time per request (its Server-Timing `app;dur=`), API endpoints only.
    server: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    # The same, leaving out each client's first flow: those arrive all at once on a cold
    # server (the pool opens its connections then), which is where the tail may come from.
    server_warm: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    flows: int = 0
    # (annotation id, group id) → {filename: base64 md5}
    completed: list[tuple[int, int, dict[str, str]]] = field(default_factory=list)

    async def timed(
        self, name: str, request: asyncio.Future[httpx.Response], *, warm: bool = False
    ) -> httpx.Response:
        t0 = time.perf_counter()
        try:
            response = await request
        except httpx.HTTPError:
            self.errors[f"{name} (transport)"] += 1
            raise
        self.latencies[name].append(time.perf_counter() - t0)
        timing = response.headers.get("server-timing", "")
        if timing.startswith("app;dur="):
            self.server[name].append(float(timing[len("app;dur=") :]) / 1000)
            if warm:
                self.server_warm[name].append(self.server[name][-1])
        if response.status_code >= 400:
            self.errors[f"{name} {response.status_code}"] += 1
        return response


def rgw_from_env() -> Rgw:
    need = ["RGW_ENDPOINT", "RGW_ACCESS_KEY", "RGW_SECRET_KEY"]
    missing = [k for k in need if not os.environ.get(k)]
    if missing:
        sys.exit(f"--storage s3 needs {', '.join(missing)} (source scripts/rgw.sh's env.sh)")
    return Rgw(
        endpoint=os.environ["RGW_ENDPOINT"],
        access_key=os.environ["RGW_ACCESS_KEY"],
        secret_key=os.environ["RGW_SECRET_KEY"],
        region=os.environ.get("RGW_REGION", "us-east-1"),
        dir=None,
    )


def storage_env(rgw: Rgw, bucket: str) -> dict[str, str]:
    return {
        "APP_OBJECT_STORAGE__PROVIDER": "s3",
        "APP_OBJECT_STORAGE__ENDPOINT": rgw.endpoint,
        "APP_OBJECT_STORAGE__ACCESS_KEY": rgw.access_key,
        "APP_OBJECT_STORAGE__SECRET_KEY": rgw.secret_key,
        "APP_OBJECT_STORAGE__BUCKET_NAME": bucket,
        "APP_OBJECT_STORAGE__REGION": rgw.region,
    }


def make_files(client: int, count: int, size: int) -> list[dict]:
    files = []
    for i in range(count):
        body = png_like(size + i, client * 1000 + i)
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
        files.append(
            {
                "spec": {"filename": f"{i + 1:04d}_label.png", "size": len(body), "md5": md5},
                "body": body,
            }
        )
    return files


async def client_loop(
    base: str, n: int, deadline: float, args: argparse.Namespace, stats: Stats
) -> None:
    # Each client has its own connection pool, as separate processes or machines would: one
    # shared pool of 32 x 4 connections cost the bench itself most of a core (httpcore scans
    # every connection of its pool for every request), CPU the server and storage then lacked.
    limits = httpx.Limits(max_connections=args.put_concurrency + 1)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        await _client_flows(http, base, n, deadline, args, stats)


async def _client_flows(
    http: httpx.AsyncClient,
    base: str,
    n: int,
    deadline: float,
    args: argparse.Namespace,
    stats: Stats,
) -> None:
    auth = {"Authorization": f"Bearer {make_token(f'load-{n}', ttl=6 * 3600)}"}
    files = make_files(n, args.files, args.size)
    bodies = {f["spec"]["filename"]: f["body"] for f in files}
    md5s = {f["spec"]["filename"]: f["spec"]["md5"] for f in files}
    r = await http.post(
        f"{base}/api/annotations", headers=auth, json={"study_instance_uid": f"1.2.826.0.1.{n}"}
    )
    r.raise_for_status()
    annotation = r.json()["id"]
    groups = f"{base}/api/annotations/{annotation}/mask-groups"
    put_gate = asyncio.Semaphore(args.put_concurrency)

    async def put(target: dict) -> None:
        async with put_gate:
            await stats.timed(
                "PUT object",
                http.put(
                    target["url"], content=bodies[target["filename"]], headers=target["headers"]
                ),
            )

    warm = False  # from each client's second flow on
    while time.monotonic() < deadline:
        try:
            r = await stats.timed(
                "POST mask-groups",
                http.post(groups, headers=auth, json={"files": [f["spec"] for f in files]}),
                warm=warm,
            )
            if r.status_code != 201:
                continue
            group = r.json()
            await asyncio.gather(*(put(t) for t in group["uploads"]))
            r = await stats.timed(
                "POST complete",
                http.post(f"{groups}/{group['id']}/complete", headers=auth),
                warm=warm,
            )
            warm = True
            if r.status_code != 200:
                continue
            stats.completed.append((annotation, group["id"], md5s))
            r = await stats.timed(
                "GET masks",
                http.get(f"{groups}/{group['id']}/masks", headers=auth, params={"limit": 1}),
            )
            mask = r.json()["items"][0]
            r = await stats.timed(
                "GET download-url",
                http.get(f"{groups}/{group['id']}/masks/{mask['id']}/download-url", headers=auth),
            )
            got = await stats.timed("GET object", http.get(r.json()["url"]))
            if (
                base64.b64encode(hashlib.md5(got.content).digest()).decode()
                != md5s[mask["filename"]]
            ):
                stats.errors["download MD5 mismatch"] += 1
            stats.flows += 1
        except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
            stats.errors[f"flow aborted ({type(exc).__name__})"] += 1


async def verify_all(http: httpx.AsyncClient, base: str, stats: Stats) -> tuple[int, int]:
    """Download every completed mask; (checked, bad)."""
    gate = asyncio.Semaphore(16)
    checked = bad = 0
    auth = {"Authorization": f"Bearer {make_token('load-admin', admin=True, ttl=6 * 3600)}"}

    async def one(annotation: int, group: int, md5s: dict[str, str]) -> None:
        nonlocal checked, bad
        async with gate:
            url = f"{base}/api/annotations/{annotation}/mask-groups/{group}/masks"
            items = (await http.get(url, headers=auth, params={"limit": 1000})).json()["items"]
            if sorted(m["filename"] for m in items) != sorted(md5s):
                bad += 1
            for m in items:
                signed = (await http.get(f"{url}/{m['id']}/download-url", headers=auth)).json()
                body = (await http.get(signed["url"])).content
                checked += 1
                if base64.b64encode(hashlib.md5(body).digest()).decode() != md5s[m["filename"]]:
                    bad += 1

    await asyncio.gather(*(one(*c) for c in stats.completed))
    return checked, bad


def bucket_quantile(before: Scrape, after: Scrape, name: str, q: float, **labels: str) -> float:
    """The q-quantile of a histogram's observations between two scrapes: the upper bound of
    the bucket it falls in (Prometheus' histogram_quantile without interpolation)."""
    bounds = sorted(
        float(dict(ls)["le"])
        for (n, ls), _ in after.samples.items()
        if n == f"{name}_bucket" and set(labels.items()) <= ls
    )
    counts = [
        after.total(f"{name}_bucket", le=_le(b), **labels)
        - before.total(f"{name}_bucket", le=_le(b), **labels)
        for b in bounds
    ]
    if not counts or counts[-1] <= 0:
        return float("nan")
    for bound, count in zip(bounds, counts, strict=True):
        if count >= q * counts[-1]:
            return bound
    return bounds[-1]


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def print_waits(before: Scrape, after: Scrape) -> None:
    """Where a request's time went inside the server during the load (from /metrics)."""
    lag = "pacs_event_loop_lag_seconds"
    n = after.total(f"{lag}_count") - before.total(f"{lag}_count")
    mean = (after.total(f"{lag}_sum") - before.total(f"{lag}_sum")) / n if n else 0.0
    print(
        f"  event-loop lag (0.1 s timer, {n:.0f} samples): mean {mean * 1000:.1f} ms, "
        f"p50 <= {bucket_quantile(before, after, lag, 0.5) * 1000:g} ms, "
        f"p99 <= {bucket_quantile(before, after, lag, 0.99) * 1000:g} ms"
    )
    pool = "pacs_db_pool_in_use"
    print(
        f"  database connections in use: p50 <= {bucket_quantile(before, after, pool, 0.5):g}, "
        f"p99 <= {bucket_quantile(before, after, pool, 0.99):g}, "
        f"max <= {bucket_quantile(before, after, pool, 1.0):g} (requests wait at pool_size + 10)"
    )
    for name, what in (
        ("pacs_admission_wait_seconds", "requests waiting for a slot"),
        ("pacs_db_pool_wait_seconds", "database waits for a pooled connection"),
        ("pacs_db_connection_held_seconds", "database connections held"),
    ):
        count = after.total(f"{name}_count") - before.total(f"{name}_count")
        if count:
            p50 = bucket_quantile(before, after, name, 0.5)
            p99 = bucket_quantile(before, after, name, 0.99)
            print(f"  {what:<39} {count:6.0f}: p50 <= {p50 * 1000:g} ms, p99 <= {p99 * 1000:g} ms")
    sql = "pacs_db_statement_duration_seconds"
    for verb in ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "other"):
        count = after.total(f"{sql}_count", statement=verb) - before.total(
            f"{sql}_count", statement=verb
        )
        if count:
            p50 = bucket_quantile(before, after, sql, 0.5, statement=verb)
            p99 = bucket_quantile(before, after, sql, 0.99, statement=verb)
            print(
                f"  database {verb:<21} {count:6.0f} statements: p50 <= {p50 * 1000:g} ms, "
                f"p99 <= {p99 * 1000:g} ms"
            )
    storage = "pacs_storage_operation_duration_seconds"
    ops = sorted({dict(ls)["operation"] for (nm, ls) in after.samples if nm == f"{storage}_count"})
    for op in ops:
        count = after.total(f"{storage}_count", operation=op) - before.total(
            f"{storage}_count", operation=op
        )
        if count:
            p50 = bucket_quantile(before, after, storage, 0.5, operation=op)
            p99 = bucket_quantile(before, after, storage, 0.99, operation=op)
            print(
                f"  storage {op:<22} {count:6.0f} calls: p50 <= {p50 * 1000:g} ms, "
                f"p99 <= {p99 * 1000:g} ms"
            )


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its children (the server's workers)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def pct(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def run_load(srv: ServerProcess, args: argparse.Namespace) -> Stats:
    stats = Stats()
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=32)) as http:
        before = await asyncio.to_thread(scrape, srv.url)
        assert srv.proc is not None
        cpu0 = cpu_seconds(srv.proc.pid)
        deadline = time.monotonic() + args.seconds
        started = time.monotonic()
        await asyncio.gather(
            *(client_loop(srv.url, n, deadline, args, stats) for n in range(args.clients))
        )
        elapsed = time.monotonic() - started
        after = await asyncio.to_thread(scrape, srv.url)
        cpu = cpu_seconds(srv.proc.pid) - cpu0
        print(
            f"database={args.database} storage={args.storage} clients={args.clients} "
            f"files/flow={args.files} size~{args.size} B workers={args.workers} "
            f"pool_size={args.pool_size or 'default'} "
            f"max_active={'default' if args.max_active is None else args.max_active}; "
            f"load average {os.getloadavg()[0]:.1f}"
        )
        print(
            f"  {stats.flows} flows in {elapsed:.1f} s = {stats.flows / elapsed:.1f} flows/s "
            f"({stats.flows * args.files / elapsed:.0f} files/s); server CPU {cpu:.1f} s "
            f"= {cpu / elapsed:.2f} cores of {os.cpu_count()}"
        )
        print(f"  {'endpoint':<20}{'count':>8}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
        for name, values in stats.latencies.items():
            print(
                f"  {name:<20}{len(values):>8}{pct(values, 50) * 1000:>10.1f}"
                f"{pct(values, 99) * 1000:>10.1f}{max(values) * 1000:>10.1f}"
            )
        print(f"  {'server (app;dur)':<20}{'count':>8}{'p50 ms':>10}{'p99 ms':>10}{'p99/p50':>10}")
        for label, table in (("", stats.server), (" (warm)", stats.server_warm)):
            for name, values in table.items():
                p50, p99 = pct(values, 50), pct(values, 99)
                print(
                    f"  {name + label:<20}{len(values):>8}{p50 * 1000:>10.1f}{p99 * 1000:>10.1f}"
                    f"{p99 / p50 if p50 else 0:>10.1f}"
                )
        print_waits(before, after)
        for name, count in sorted(stats.errors.items()):
            print(f"  error: {name}: {count}")
        t0 = time.monotonic()
        checked, bad = await verify_all(http, srv.url, stats)
        print(
            f"  verified {checked} masks of {len(stats.completed)} groups by download + MD5 "
            f"in {time.monotonic() - t0:.1f} s: {bad} bad"
        )
        stats.errors["verification"] += bad
        if not bad:
            del stats.errors["verification"]
    return stats


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--files", type=int, default=20)
    p.add_argument("--size", type=int, default=20_000, help="bytes per file (about)")
    p.add_argument("--put-concurrency", type=int, default=4, help="parallel PUTs per client")
    p.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    p.add_argument("--storage", choices=["local", "s3"], default="local")
    p.add_argument("--workers", type=int, default=1, help="server worker processes")
    p.add_argument(
        "--pool-size", type=int, default=None, help="database.pool_size (default: the server's)"
    )
    p.add_argument(
        "--max-active",
        type=int,
        default=None,
        help="server.max_active_requests (default: the server's; 0: no limit)",
    )
    args = p.parse_args()
    rgw = rgw_from_env() if args.storage == "s3" else None
    env = {"APP_SERVER__WORKERS": str(args.workers), "APP_LOGGING__LEVEL": "WARNING"}
    if args.pool_size:
        env["APP_DATABASE__POOL_SIZE"] = str(args.pool_size)
    if args.max_active is not None:
        env["APP_SERVER__MAX_ACTIVE_REQUESTS"] = str(args.max_active)
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        url = stack.enter_context(database(args.database, Path(tmp)))
        if rgw is not None:
            env.update(storage_env(rgw, stack.enter_context(rgw.bucket())))
        srv = ServerProcess(data_dir=Path(tmp), database_url=url, extra_env=env).start()
        try:
            stats = asyncio.run(run_load(srv, args))
            r = srv.run_cli("janitor", "--json", "--grace", "0", check=False)
        finally:
            srv.stop()
    report = json.loads(r.stdout) if r.returncode == 0 else {}
    if not report:
        print(f"  janitor failed: {r.stderr.strip()[-500:]}")
        sys.exit(1)
    print(
        "  janitor (dry run, grace 0): "
        f"orphans {report['orphan_objects']['found']}, "
        f"masks missing their object {report['missing_objects']['found']}, "
        f"unfinished deletions {report['pending_deletions']['found']}, "
        f"pending groups past expiry {report['expired_groups']['found']}, "
        f"stale multipart uploads {report['stale_multipart_uploads']['found']}"
    )
    # Any failed request counts: under load nothing may answer 5xx or drop a connection.
    failures = sum(stats.errors.values())
    ok = report["clean"] and not failures and stats.flows > 0
    print(
        "  RESULT:", "OK, nothing lost, no failed request" if ok else f"FAILED ({failures} errors)"
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
