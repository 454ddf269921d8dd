"""Upload benchmark: N mask files of ~SIZE bytes through the SDK (upload_mask_group) into a
server this script starts, on the local store and on Ceph RGW in the same invocation, printing
files/s, MB/s and the CPU seconds of the server (and of RGW) during the upload. With RGW it
also runs `pacs-ext upload` (the CLI, a process of its own) and `rclone copy` (Debian's rclone,
installed with apt-get when missing) on the same files into the same RGW, at each
--concurrency, and prints pacs-ext's files/s against rclone's at the same concurrency and
against rclone's best.

    .venv/bin/python bench/upload.py                         # 2,000 x ~20 KB, local and rgw
    .venv/bin/python bench/upload.py --storage rgw --concurrency 16,32 --runs 3
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
import compileall
import contextlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import httpx

import pacs_ext
from fixtures.databases import database
from fixtures.rgw import Rgw, suite_rgw
from fixtures.server import BIN, ServerProcess, make_token, s3_server
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
    load: float = 0.0  # 1-minute load average when the run ended (other work on the machine)

    def __post_init__(self) -> None:
        self.load = self.load or os.getloadavg()[0]


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


def new_annotation(srv: ServerProcess, token: str) -> int:
    """An annotation to upload into, made before a run's window opens: the first request a
    fresh server answers also pays its warm-up (database connections, caches), which is no
    part of an upload's cost. Both paths (SDK and CLI) start their window after it."""
    with httpx_client(srv.url, token) as http:
        annotation = http.post("/api/annotations", json={"study_instance_uid": "1.2.9"})
        annotation.raise_for_status()
        return int(annotation.json()["id"])


async def upload(
    srv: ServerProcess, token: str, annotation_id: int, masks: Path, state: Path, concurrency: int
) -> tuple[int, int]:
    async with PacsClient(srv.url, token) as client:
        result = await upload_mask_group(
            client,
            annotation_id,
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
    args: argparse.Namespace, storage: str, masks: Path, rgw: Rgw | None, work: Path, n: str
) -> Run:
    folder = work / f"{storage}-{n}"
    folder.mkdir()
    with database(args.database, folder) as db_url, started(storage, folder, db_url, rgw) as srv:
        assert srv.proc is not None
        token = make_token("bench")
        annotation_id = new_annotation(srv, token)
        ceph = ceph_pids(rgw) if storage == "rgw" else []
        server_before = cpu_seconds(srv.proc.pid)
        storage_before = sum(map(cpu_seconds, ceph))
        client_before = time.process_time()
        started_at = time.perf_counter()
        files, nbytes = asyncio.run(
            upload(srv, token, annotation_id, masks, folder / "state.json", args.concurrency)
        )
        seconds = time.perf_counter() - started_at
        return Run(
            seconds=seconds,
            files=files,
            nbytes=nbytes,
            server_cpu=cpu_seconds(srv.proc.pid) - server_before,
            storage_cpu=sum(map(cpu_seconds, ceph)) - storage_before if ceph else None,
            client_cpu=time.process_time() - client_before,
        )


def children_cpu() -> float:
    """CPU of this process's waited-for children (the CLI, rclone)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def cli_run(masks: Path, rgw: Rgw, work: Path, n: str, concurrency: int, database_kind: str) -> Run:
    """`pacs-ext upload` as a user runs it: its own process, progress on (not drawn without a
    terminal), the interpreter's start-up included in its CPU."""
    folder = work / f"cli-{n}"
    folder.mkdir()
    with database(database_kind, folder) as db_url, started("rgw", folder, db_url, rgw) as srv:
        assert srv.proc is not None
        token = make_token("bench")
        annotation_id = new_annotation(srv, token)
        ceph = ceph_pids(rgw)
        server_before, storage_before = cpu_seconds(srv.proc.pid), sum(map(cpu_seconds, ceph))
        client_before = children_cpu()
        started_at = time.perf_counter()
        done = subprocess.run(
            [
                *(str(BIN), "upload", str(masks), "-a", str(annotation_id), "--new-group"),
                *("--concurrency", str(concurrency), "--server", srv.url, "--token", token),
            ],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "XDG_CACHE_HOME": str(folder / "cache")},
        )
        seconds = time.perf_counter() - started_at
        if done.returncode != 0:
            raise SystemExit(f"pacs-ext upload failed:\n{done.stdout}{done.stderr}")
        files = len(list(masks.iterdir()))
        return Run(
            seconds=seconds,
            files=files,
            nbytes=sum(p.stat().st_size for p in masks.iterdir()),
            server_cpu=cpu_seconds(srv.proc.pid) - server_before,
            storage_cpu=sum(map(cpu_seconds, ceph)) - storage_before if ceph else None,
            client_cpu=children_cpu() - client_before,
        )


@contextlib.contextmanager
def httpx_client(url: str, token: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as c:
        yield c


def compile_package() -> None:
    """Bytecode for pacs_ext, as installing a wheel writes it. An editable install run with
    PYTHONDONTWRITEBYTECODE (as here) would otherwise compile ~30 modules from source at
    every start of the CLI: ~40 ms of its CPU that no installed pacs-ext pays."""
    compileall.compile_dir(Path(pacs_ext.__file__).parent, quiet=1)


def ensure_rclone() -> str:
    found = shutil.which("rclone")
    if found:
        return found
    print("installing Debian's rclone for the comparison", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    quiet = {"env": env, "capture_output": True, "check": False}
    cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "rclone"]
    if subprocess.run(cmd, **quiet).returncode != 0:  # type: ignore[call-overload]
        subprocess.run(["apt-get", "update", "-qq"], **quiet)  # type: ignore[call-overload]
        subprocess.run(cmd, **quiet)  # type: ignore[call-overload]
    found = shutil.which("rclone")
    if not found:
        raise SystemExit("rclone is not installed and apt-get could not install it")
    return found


def rclone_env(rgw: Rgw) -> dict[str, str]:
    """rclone's remote `bench:` on this RGW, from the environment (no config file)."""
    return {
        "RCLONE_CONFIG": os.devnull,
        "RCLONE_CONFIG_BENCH_TYPE": "s3",
        "RCLONE_CONFIG_BENCH_PROVIDER": "Ceph",
        "RCLONE_CONFIG_BENCH_ENDPOINT": rgw.endpoint,
        "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": rgw.access_key,
        "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": rgw.secret_key,
        "RCLONE_CONFIG_BENCH_REGION": rgw.region,
    }


def rclone_run(rclone: str, masks: Path, rgw: Rgw, concurrency: int) -> Run:
    """`rclone copy` of the same files into a fresh bucket of the same RGW."""
    # rclone 1.60 refuses AWS_CA_BUNDLE with its own transport; the RGW here is plain HTTP.
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        **rclone_env(rgw),
    }
    with rgw.bucket() as bucket:
        ceph = ceph_pids(rgw)
        storage_before, client_before = sum(map(cpu_seconds, ceph)), children_cpu()
        started_at = time.perf_counter()
        done = subprocess.run(
            [
                *(rclone, "copy", str(masks), f"bench:{bucket}/mask/1/1"),
                *("--transfers", str(concurrency), "--checkers", str(concurrency)),
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - started_at
        if done.returncode != 0:
            raise SystemExit(f"rclone failed:\n{done.stderr[-2000:]}")
        files = list(masks.iterdir())
        return Run(
            seconds=seconds,
            files=len(files),
            nbytes=sum(p.stat().st_size for p in files),
            server_cpu=0.0,
            storage_cpu=sum(map(cpu_seconds, ceph)) - storage_before if ceph else None,
            client_cpu=children_cpu() - client_before,
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
        load=statistics.median(r.load for r in runs),
    )


def report(storage: str, r: Run) -> str:
    mb = r.nbytes / 1e6
    storage_cpu = "" if r.storage_cpu is None else f"  Ceph CPU {r.storage_cpu:5.2f} s"
    return (
        f"{storage:>18}: {r.seconds:6.2f} s  {r.files / r.seconds:6,.0f} files/s  "
        f"{mb / r.seconds:5.2f} MB/s  server CPU {r.server_cpu:5.2f} s "
        f"({r.server_cpu / r.files * 1000:.2f} ms/file){storage_cpu}  "
        f"client CPU {r.client_cpu:5.2f} s ({r.client_cpu / r.files * 1000:.2f} ms/file)  "
        f"load {r.load:4.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--size", type=int, default=20_000, help="approximate bytes per file")
    parser.add_argument(
        "--concurrency", default="16,32", help="comma-separated PUTs in flight (default 16,32)"
    )
    parser.add_argument("--no-rclone", action="store_true", help="skip the CLI and rclone runs")
    parser.add_argument("--runs", type=int, default=1, help="runs per store (median printed)")
    parser.add_argument(
        "--storage", default="local,rgw", help="comma-separated: local, rgw (default both)"
    )
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args()
    stores = [s.strip() for s in args.storage.split(",") if s.strip()]
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    if not stores or set(stores) - {"local", "rgw"}:
        raise SystemExit("--storage takes local, rgw or both (comma-separated)")

    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pacs-bench-up-")))
        rgw = stack.enter_context(suite_rgw(work / "rgw")) if "rgw" in stores else None
        total = make_files(work / "masks", args.files, args.size)
        print(
            f"{args.files} files, {total / 1e6:.1f} MB (~{args.size / 1000:.0f} KB each), "
            f"concurrency {levels}, database {args.database}; one line per run; "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        )
        results: dict[str, list[Run]] = {}
        rclone = ensure_rclone() if "rgw" in stores and not args.no_rclone else None
        if rclone is not None:
            compile_package()
        for n in range(args.runs):
            for concurrency in levels:
                for storage in stores:
                    args.concurrency = concurrency
                    r = one_run(args, storage, work / "masks", rgw, work, f"{n}-{concurrency}")
                    if (r.files, r.nbytes) != (args.files, total):
                        raise SystemExit(f"uploaded {r.files} files / {r.nbytes} B, not {total}")
                    name = f"{storage} SDK c={concurrency}"
                    results.setdefault(name, []).append(r)
                    print(report(name, r), flush=True)
                if rclone is None or rgw is None:
                    continue
                name = f"rgw CLI c={concurrency}"
                r = cli_run(
                    work / "masks", rgw, work, f"{n}-{concurrency}", concurrency, args.database
                )
                results.setdefault(name, []).append(r)
                print(report(name, r), flush=True)
                name = f"rclone c={concurrency}"
                r = rclone_run(rclone, work / "masks", rgw, concurrency)
                results.setdefault(name, []).append(r)
                print(report(name, r), flush=True)
        medians = {name: median_run(runs) for name, runs in results.items()}
        if args.runs > 1:
            print("medians:")
            for name, r in medians.items():
                print(report(name, r))
        if rclone is not None and "rgw" in stores:
            compare(medians, levels)


def compare(medians: dict[str, Run], levels: list[int]) -> None:
    """pacs-ext (SDK and CLI) against rclone, same files, same RGW, same invocation: files/s
    and client CPU per file side by side, the ratios, and the goals of issue 16 (>= 0.95x
    rclone at the same concurrency, >= 0.9x rclone's best, <= 0.5 ms of client CPU/file)."""
    rate = {name: r.files / r.seconds for name, r in medians.items()}
    cpu = {name: r.client_cpu / r.files * 1000 for name, r in medians.items()}
    best_name = max((f"rclone c={c}" for c in levels), key=rate.__getitem__)
    best = rate[best_name]
    loads = [r.load for r in medians.values()]
    print(
        f"against rclone (best: {best_name}, {best:,.0f} files/s; "
        f"load average {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores):"
    )
    for c in levels:
        peer = f"rclone c={c}"
        print(f"  {peer:>18}: {rate[peer]:6,.0f} files/s  client CPU {cpu[peer]:.2f} ms/file")
        for kind in ("SDK", "CLI"):
            name = f"rgw {kind} c={c}"
            same, of_best = rate[name] / rate[peer], rate[name] / best
            met = same >= 0.95 and of_best >= 0.9 and cpu[name] <= 0.5
            print(
                f"  {'pacs-ext ' + kind + ' c=' + str(c):>18}: {rate[name]:6,.0f} files/s  "
                f"client CPU {cpu[name]:.2f} ms/file  {same:4.2f}x {peer}, "
                f"{of_best:4.2f}x rclone's best  {'goals met' if met else 'goals NOT met'}"
            )


if __name__ == "__main__":
    main()
