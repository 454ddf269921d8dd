"""Upload benchmark: N mask files of ~SIZE bytes through the SDK (upload_mask_group) into a
server this script starts, on the local store and on Ceph RGW in the same invocation, printing
files/s, MB/s and the CPU seconds of the server (and of RGW) during the upload.

    .venv/bin/python bench/upload.py                         # 2,000 x ~20 KB, local and rgw
    .venv/bin/python bench/upload.py --storage rgw --runs 3
    .venv/bin/python bench/upload.py --files 500 --size 200000 --database postgres

With the local store the server is also the object store, so its CPU grows with the bytes;
with RGW (direct upload) it only signs URLs and verifies by listing, so it should not: the
bytes' CPU shows up in Ceph instead (radosgw + OSD + monitor, when this script can see
their PIDs: an rgw.sh cluster).

rgw: the RGW named by RGW_ENDPOINT/RGW_ACCESS_KEY/RGW_SECRET_KEY (scripts/rgw.sh's env.sh),
else a throwaway one started with scripts/rgw.sh (root, Debian packages). Each run gets a
fresh bucket provisioned by `pacs-ext storage init`, as in the test suite.
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
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fixtures.databases import database
from fixtures.rgw import Rgw, suite_rgw
from fixtures.server import ServerProcess, make_token, s3_server
from pacs_ext.client import PacsClient, upload_mask_group

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (uvicorn workers), from /proc."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(proc.name) == pid or int(fields[1]) == pid:  # fields[1]: the parent's pid
            total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def make_files(folder: Path, count: int, size: int) -> int:
    folder.mkdir(parents=True)
    labels = ("liver", "spleen", "kidney_left", "kidney_right")
    total = 0
    for i in range(count):
        body = b"\x89PNG\r\n\x1a\n" + os.urandom(size - 8 + (i % 17) * 64)
        (folder / f"{i // len(labels) + 1:04d}_{labels[i % len(labels)]}.png").write_bytes(body)
        total += len(body)
    return total


@dataclass
class Run:
    seconds: float
    files: int
    nbytes: int
    server_cpu: float
    storage_cpu: float | None
    client_cpu: float


@contextlib.contextmanager
def started(storage: str, folder: Path, db_url: str, rgw: Rgw | None) -> Iterator[ServerProcess]:
    quiet = {"APP_LOGGING__LEVEL": "WARNING"}
    with contextlib.ExitStack() as stack:
        if storage == "local":
            srv = ServerProcess(data_dir=folder, database_url=db_url, extra_env=quiet)
        else:
            assert rgw is not None
            srv = s3_server(folder, db_url, rgw, stack.enter_context(rgw.bucket()))
            srv.extra_env.update(quiet)
            init = srv.run_cli("storage", "init", check=False)
            if init.returncode != 0:
                raise SystemExit(f"pacs-ext storage init failed:\n{init.stdout}{init.stderr}")
        stack.callback(srv.stop)
        yield srv.start()


def ceph_pids(rgw: Rgw | None) -> list[int]:
    """radosgw, the OSD and the monitor of an rgw.sh cluster (they hold the bytes' CPU)."""
    if rgw is None or rgw.dir is None:
        return []
    pids = []
    for pidfile in sorted((rgw.dir / "run").glob("*.pid")):
        with contextlib.suppress(OSError, ValueError, IndexError):
            pids.append(int(pidfile.read_text().split()[0]))
    return pids


async def upload(srv: ServerProcess, masks: Path, state: Path, concurrency: int) -> tuple[int, int]:
    async with PacsClient(srv.url, make_token("bench")) as client:
        annotation = await client.create_annotation("1.2.840.10008.999", description="bench")
        result = await upload_mask_group(
            client,
            annotation.id,
            masks,
            group_name="bench",
            concurrency=concurrency,
            resume=False,
            state_file=state,
        )
    if result.group.status != "complete":
        raise SystemExit(f"upload did not complete: {result.group.status}")
    return result.files_uploaded, result.bytes_uploaded


def one_run(
    args: argparse.Namespace, storage: str, masks: Path, rgw: Rgw | None, work: Path, n: int
) -> Run:
    folder = work / f"{storage}-{n}"
    folder.mkdir()
    with database(args.database, folder) as db_url, started(storage, folder, db_url, rgw) as srv:
        assert srv.proc is not None
        ceph = ceph_pids(rgw) if storage == "rgw" else []
        server_before = cpu_seconds(srv.proc.pid)
        storage_before = sum(map(cpu_seconds, ceph))
        client_before = time.process_time()
        started_at = time.perf_counter()
        files, nbytes = asyncio.run(upload(srv, masks, folder / "state.json", args.concurrency))
        seconds = time.perf_counter() - started_at
        return Run(
            seconds=seconds,
            files=files,
            nbytes=nbytes,
            server_cpu=cpu_seconds(srv.proc.pid) - server_before,
            storage_cpu=sum(map(cpu_seconds, ceph)) - storage_before if ceph else None,
            client_cpu=time.process_time() - client_before,
        )


def median_run(runs: list[Run]) -> Run:
    """Each figure's median over the runs."""
    storage = [r.storage_cpu for r in runs if r.storage_cpu is not None]
    return Run(
        seconds=statistics.median(r.seconds for r in runs),
        files=runs[0].files,
        nbytes=runs[0].nbytes,
        server_cpu=statistics.median(r.server_cpu for r in runs),
        storage_cpu=statistics.median(storage) if storage else None,
        client_cpu=statistics.median(r.client_cpu for r in runs),
    )


def report(storage: str, r: Run) -> str:
    mb = r.nbytes / 1e6
    storage_cpu = "" if r.storage_cpu is None else f"  Ceph CPU {r.storage_cpu:5.2f} s"
    return (
        f"{storage:>5}: {r.seconds:6.2f} s  {r.files / r.seconds:6,.0f} files/s  "
        f"{mb / r.seconds:5.2f} MB/s  server CPU {r.server_cpu:5.2f} s "
        f"({r.server_cpu / r.files * 1000:.2f} ms/file){storage_cpu}  "
        f"client CPU {r.client_cpu:5.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--size", type=int, default=20_000, help="approximate bytes per file")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--runs", type=int, default=1, help="runs per store (median printed)")
    parser.add_argument(
        "--storage", default="local,rgw", help="comma-separated: local, rgw (default both)"
    )
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args()
    stores = [s.strip() for s in args.storage.split(",") if s.strip()]
    if not stores or set(stores) - {"local", "rgw"}:
        raise SystemExit("--storage takes local, rgw or both (comma-separated)")

    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pacs-bench-up-")))
        rgw = stack.enter_context(suite_rgw(work / "rgw")) if "rgw" in stores else None
        total = make_files(work / "masks", args.files, args.size)
        print(
            f"{args.files} files, {total / 1e6:.1f} MB (~{args.size / 1000:.0f} KB each), "
            f"concurrency {args.concurrency}, database {args.database}; one line per run"
        )
        results: dict[str, list[Run]] = {}
        for storage in stores:
            for n in range(args.runs):
                r = one_run(args, storage, work / "masks", rgw, work, n)
                if (r.files, r.nbytes) != (args.files, total):
                    raise SystemExit(f"uploaded {r.files} files / {r.nbytes} B, expected {total}")
                results.setdefault(storage, []).append(r)
                print(report(storage, r), flush=True)
        if args.runs > 1:
            print("medians:")
            for storage, runs in results.items():
                print(report(storage, median_run(runs)))


if __name__ == "__main__":
    main()
