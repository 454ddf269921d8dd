"""Cluster benchmark: HAProxy (deploy/haproxy/haproxy.cfg) in front of `pacs-ext serve`
instances on one PostgreSQL database and one Ceph RGW bucket, SDK clients running the whole
upload flow (upload_mask_group: declare, PUT, complete) through the balancer.

Phase 1 runs the clients against 1 instance, phase 2 against 3; during phase 2 one instance
is killed with SIGKILL and started again, and another is restarted with SIGTERM (drain).
Then: every flow the clients reported complete must be in the database (listed by the API)
and in storage (ListObjectsV2: size and MD5 ETag) with the MD5 the client computed; the
janitor (dry run, grace 0) must find no orphan, no mask without its object and no unfinished
deletion; and the instances' periodic janitors (every 2 s) must never have run at the same
time. Prints flows/s, client-side p50/p99 per API endpoint, the retries the clients made, and
each process's CPU seconds per phase. Exit status 0 only when every check passed.

    .venv/bin/python bench/cluster.py                      # 16 clients, 30 s per phase
    .venv/bin/python bench/cluster.py --clients 4 --seconds 6 --files 4   # the e2e test's size

Needs Debian's haproxy (installed with apt-get when missing), PostgreSQL on 127.0.0.1:5432 and
an RGW (RGW_ENDPOINT... from scripts/rgw.sh's env.sh, else one started here). On a 2-core
machine the instances share the cores with RGW, PostgreSQL and the clients: 3 instances
cannot be 3x one; the CPU table shows where the time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from upload import TICKS, ceph_pids

from fixtures.databases import database
from fixtures.rgw import Rgw, suite_rgw
from fixtures.server import ServerProcess, free_port, make_token, s3_server
from pacs_ext.client import PacsClient, upload_mask_group
from pacs_ext.client.connections import pooled_transport
from pacs_ext.client.errors import ClientError
from pacs_ext.client.retry import RetryPolicy

HAPROXY_CFG = Path(__file__).resolve().parent.parent / "deploy" / "haproxy" / "haproxy.cfg"
RETRIES = [0]  # every backoff the SDK waited (API calls and PUTs), across clients


class CountingRetry(RetryPolicy):
    """The SDK's policy, counting each retry it waits for."""

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        RETRIES[0] += 1
        return super().delay(attempt, retry_after)


def endpoint(request: httpx.Request) -> str:
    path = request.url.path
    if request.method == "POST" and path.endswith("/complete"):
        return "POST complete"
    if request.method == "POST" and path.endswith("/upload-urls"):
        return "POST upload-urls"
    if request.method == "POST" and path.endswith("/mask-groups"):
        return "POST mask-groups"
    if request.method == "POST" and path == "/api/annotations":
        return "POST annotations"
    return f"{request.method} other"


class TimingTransport(httpx.AsyncBaseTransport):
    """Client-side latency of each API exchange, by endpoint (through the balancer)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, phase: Phase) -> None:
        self.inner = inner
        self.phase = phase

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        t0 = time.perf_counter()
        response = await self.inner.handle_async_request(request)
        await response.aread()
        name = endpoint(request)
        self.phase.latencies[name].append(time.perf_counter() - t0)
        if response.status_code >= 500:
            self.phase.statuses[f"{name} {response.status_code}"] += 1
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class Phase:
    name: str
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    aborted: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    # (annotation id, group id, {filename: hex md5})
    completed: list[tuple[int, int, dict[str, str]]] = field(default_factory=list)
    retries: int = 0
    resent: int = 0  # requests a dropped keep-alive connection made the SDK send again
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)


# ---- processes ---------------------------------------------------------------------------


def ensure_haproxy() -> str:
    found = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
    )
    if found:
        return found
    print("installing Debian's haproxy", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "haproxy"]
    if subprocess.run(cmd, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False)
        subprocess.run(cmd, env=env, capture_output=True, check=False)
    if not Path("/usr/sbin/haproxy").exists():
        raise SystemExit("haproxy is not installed and apt-get could not install it")
    return "/usr/sbin/haproxy"


class Balancer:
    """HAProxy run from deploy/haproxy/haproxy.cfg with this run's port and instances."""

    def __init__(self, binary: str, folder: Path) -> None:
        self.binary = binary
        self.folder = folder
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, instances: list[ServerProcess]) -> Balancer:
        lines = []
        for line in HAPROXY_CFG.read_text().splitlines():
            if line.rstrip().endswith("# instance"):
                if line.strip().startswith("bind"):
                    lines.append(f"    bind 127.0.0.1:{self.port}")
                continue
            lines.append(line)
            if line.startswith("backend "):
                lines.extend(
                    f"    server pacs{i + 1} 127.0.0.1:{s.port}" for i, s in enumerate(instances)
                )
        cfg = self.folder / "haproxy.cfg"
        cfg.write_text("\n".join(lines) + "\n")
        log = open(self.folder / "haproxy.log", "ab")  # noqa: SIM115 - closed by the process end
        self.proc = subprocess.Popen(
            [self.binary, "-W", "-db", "-f", str(cfg)], stdout=log, stderr=log
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/ready", timeout=2).status_code == 200:
                    return self
            time.sleep(0.1)
        raise SystemExit(
            f"haproxy did not come up: {(self.folder / 'haproxy.log').read_text()[-2000:]}"
        )

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)  # soft stop: finish what is in flight
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def all_cpu() -> dict[int, float]:
    """CPU seconds of every process and its direct children, from one pass over /proc."""
    own: dict[int, float] = {}
    parent: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                pid = int(proc.name)
                own[pid] = (int(fields[11]) + int(fields[12])) / TICKS
                parent[pid] = int(fields[1])
    total = dict(own)
    for pid, ppid in parent.items():
        if ppid in total:
            total[ppid] += own[pid]
    return total


class CpuBook:
    """CPU seconds per named process group, summed over every process a name ever had (a
    restarted instance is a new process): sampled each second and at the phase's end."""

    def __init__(self) -> None:
        self.last: dict[tuple[str, int], float] = {}

    def sample(self, named: dict[str, list[int]]) -> None:
        cpu = all_cpu()
        for name, pids in named.items():
            for pid in pids:
                if pid in cpu:
                    self.last[(name, pid)] = cpu[pid]

    def totals(self) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for (name, _), value in self.last.items():
            out[name] += value
        return dict(out)


def postgres_pids() -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if (proc / "comm").read_text().strip() in ("postgres", "postmaster"):
                    pids.append(int(proc.name))
    return pids


# ---- the clients -------------------------------------------------------------------------


def make_masks(folder: Path, client: int, count: int, size: int) -> dict[str, str]:
    folder.mkdir(parents=True)
    md5s = {}
    for i in range(count):
        body = b"\x89PNG\r\n\x1a\n" + os.urandom(size + client * 7 + i)
        name = f"{i + 1:04d}_label.png"
        (folder / name).write_bytes(body)
        md5s[name] = hashlib.md5(body).hexdigest()  # S3's ETag
    return md5s


async def client_loop(
    lb: str, n: int, folder: Path, md5s: dict[str, str], deadline: float, phase: Phase
) -> None:
    token = make_token(f"cluster-{n}", ttl=6 * 3600)
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16, keepalive_expiry=4.0)
    timing = TimingTransport(pooled_transport(limits), phase)
    retry = CountingRetry(attempts=6, base_delay=0.25, max_delay=4.0)
    async with PacsClient(lb, token, retry=retry, transport=timing, timeout=60) as client:
        annotation = None
        k = 0
        while time.monotonic() < deadline:
            k += 1
            try:
                if annotation is None:
                    annotation = (await client.create_annotation(f"1.2.826.0.2.{n}")).id
                result = await upload_mask_group(
                    client,
                    annotation,
                    folder,
                    group_name=f"c{n}-{k}",
                    concurrency=4,
                    resume=False,
                    state_file=folder.parent / f"state-{n}.json",
                )
            except ClientError as exc:
                phase.aborted[type(exc).__name__] += 1
                continue
            if result.group.status == "complete":
                phase.completed.append((annotation, result.group.id, md5s))
            else:
                phase.aborted[f"status {result.group.status}"] += 1
        phase.resent += client.lean.retried if client.lean else 0
        inner = timing.inner
        phase.resent += getattr(inner, "retried", 0)


def relaunch(srv: ServerProcess) -> None:
    """Start an instance again: its database is migrated already, so only `serve`."""
    with open(srv.log_path, "ab") as log:
        srv.proc = subprocess.Popen(srv.launcher, env=srv.env(), stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(srv.url + "/health", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"instance did not start again: {srv.log_path.read_text()[-2000:]}")


async def chaos(instances: list[ServerProcess], seconds: float, phase: Phase) -> None:
    """At 1/4: SIGKILL instance 2, start it again. At 1/2: SIGTERM instance 3 (it drains and
    exits 0), start it again."""
    t0 = time.monotonic()
    await asyncio.sleep(seconds / 4)
    victim = instances[1]
    assert victim.proc is not None
    victim.proc.kill()
    await asyncio.to_thread(victim.proc.wait)
    phase.events.append(f"{time.monotonic() - t0:5.1f} s: SIGKILL instance 2")
    await asyncio.sleep(0.5)
    await asyncio.to_thread(relaunch, victim)
    phase.events.append(f"{time.monotonic() - t0:5.1f} s: instance 2 started again")
    await asyncio.sleep(max(0.0, t0 + seconds / 2 - time.monotonic()))
    drained = instances[2]
    assert drained.proc is not None
    drained.proc.send_signal(signal.SIGTERM)
    phase.events.append(f"{time.monotonic() - t0:5.1f} s: SIGTERM instance 3")
    code = await asyncio.to_thread(drained.proc.wait, 60)
    phase.events.append(f"{time.monotonic() - t0:5.1f} s: instance 3 exited with status {code}")
    if code != 0:
        phase.aborted[f"instance 3 exit status {code}"] += 1
    await asyncio.to_thread(relaunch, drained)
    phase.events.append(f"{time.monotonic() - t0:5.1f} s: instance 3 started again")


async def run_phase(
    phase: Phase,
    lb: Balancer,
    instances: list[ServerProcess],
    masks: list[tuple[Path, dict[str, str]]],
    args: argparse.Namespace,
    with_chaos: bool,
    named: dict[str, Any],
) -> None:
    book = CpuBook()
    self_before = resource.getrusage(resource.RUSAGE_SELF)

    def pids() -> dict[str, list[int]]:
        out = {f"instance {i + 1}": [s.proc.pid] for i, s in enumerate(instances) if s.proc}
        return {**out, **{k: v() for k, v in named.items()}}

    before = CpuBook()
    before.sample(pids())
    stop = asyncio.Event()

    async def sampler() -> None:
        while not stop.is_set():
            book.sample(pids())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    sampling = asyncio.create_task(sampler())
    retries0 = RETRIES[0]
    started = time.monotonic()
    deadline = started + args.seconds

    async def clients() -> None:
        await asyncio.gather(
            *(
                client_loop(lb.url, n, folder, md5s, deadline, phase)
                for n, (folder, md5s) in enumerate(masks)
            )
        )
        phase.seconds = time.monotonic() - started  # flows/s over the clients' time

    await asyncio.gather(
        clients(), *([chaos(instances, args.seconds, phase)] if with_chaos else [])
    )
    stop.set()
    await sampling
    book.sample(pids())
    first = before.totals()
    phase.cpu = {k: v - first.get(k, 0.0) for k, v in book.totals().items()}
    for i in range(len(instances)):
        phase.cpu.setdefault(f"instance {i + 1}", 0.0)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    phase.cpu["clients (this process)"] = (usage.ru_utime - self_before.ru_utime) + (
        usage.ru_stime - self_before.ru_stime
    )
    phase.retries = RETRIES[0] - retries0


# ---- checks ------------------------------------------------------------------------------


async def verify(lb: str, rgw: Rgw, bucket: str, phases: list[Phase]) -> list[str]:
    """Every completed flow: in the database (the API lists its masks with the MD5s) and in
    storage (each object's size and ETag). Returns the problems found."""
    problems: list[str] = []
    s3 = rgw.client()
    stored: dict[str, str] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="mask/"):
        for o in page.get("Contents", []):
            stored[o["Key"]] = o["ETag"].strip('"')
    token = make_token("cluster-admin", admin=True, ttl=3600)
    async with PacsClient(lb, token) as client:
        for phase in phases:
            for annotation, group, md5s in phase.completed:
                masks = [m async for m in client.iter_masks(annotation, group)]
                got = {m.filename: base64.b64decode(m.md5 or "").hex() for m in masks}
                if got != md5s:
                    problems.append(f"group {group}: the database lists {sorted(got)} / other MD5s")
                for m in masks:
                    if stored.get(m.object_key) != md5s.get(m.filename):
                        problems.append(f"group {group}: {m.filename} missing or wrong in storage")
    return problems


def janitor_overlaps(instances: list[ServerProcess]) -> tuple[int, list[str]]:
    """The periodic janitor runs of every instance, from their logs: (runs, overlaps)."""
    runs: list[tuple[datetime, datetime, int]] = []
    for i, s in enumerate(instances):
        begun: datetime | None = None
        for line in s.log_path.read_text().splitlines():
            if not line.startswith("{"):
                continue
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                at = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
                if event.get("event") == "janitor.started":
                    begun = at  # a run cut short by SIGKILL has no end: the next start replaces it
                elif event.get("event") == "janitor.finished" and begun is not None:
                    runs.append((begun, at, i + 1))
                    begun = None
    runs.sort()
    overlaps = [
        f"instance {b[2]} started {b[0].time()} before instance {a[2]} finished {a[1].time()}"
        for a, b in itertools.pairwise(runs)
        if b[0] < a[1]
    ]
    return len(runs), overlaps


def pct(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def report(phase: Phase, args: argparse.Namespace) -> None:
    flows = len(phase.completed)
    print(
        f"\n{phase.name}: {flows} flows complete in {phase.seconds:.1f} s = "
        f"{flows / phase.seconds:.2f} flows/s ({flows * args.files / phase.seconds:.0f} files/s); "
        f"SDK retries {phase.retries}, resent on dropped connections {phase.resent}"
    )
    for event in phase.events:
        print(f"  {event}")
    print(f"  {'endpoint (client side)':<24}{'count':>7}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for name in sorted(phase.latencies):
        v = phase.latencies[name]
        print(
            f"  {name:<24}{len(v):>7}{pct(v, 50) * 1e3:>9.1f}{pct(v, 99) * 1e3:>9.1f}"
            f"{max(v) * 1e3:>9.1f}"
        )
    for name, count in sorted(phase.statuses.items()):
        print(f"  answered 5xx (retried by the SDK): {name}: {count}")
    for name, count in sorted(phase.aborted.items()):
        print(f"  flow not completed: {name}: {count}")
    cpu = "  ".join(f"{k} {v:.1f}" for k, v in sorted(phase.cpu.items()))
    print(f"  CPU seconds: {cpu}")


# ---- main --------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--seconds", type=float, default=30, help="per phase")
    p.add_argument("--files", type=int, default=20, help="files per flow")
    p.add_argument("--size", type=int, default=20_000, help="bytes per file (about)")
    args = p.parse_args()
    haproxy = ensure_haproxy()
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pacs-cluster-")))
        rgw = stack.enter_context(suite_rgw(work / "rgw"))
        bucket = stack.enter_context(rgw.bucket())
        db_url = stack.enter_context(database("postgres", work))
        env = {
            "APP_LOGGING__LEVEL": "INFO",
            "APP_JANITOR__INTERVAL_SECONDS": "2",
            "APP_SERVER__DRAIN_SECONDS": "2.5",
            "APP_SERVER__SHUTDOWN_TIMEOUT_SECONDS": "20",
        }
        instances = []
        for i in range(3):
            srv = s3_server(work / f"instance-{i + 1}", db_url, rgw, bucket)
            srv.extra_env.update(env)
            stack.callback(srv.stop)
            instances.append(srv)
        init = instances[0].run_cli("storage", "init", check=False)
        if init.returncode != 0:
            raise SystemExit(f"pacs-ext storage init failed:\n{init.stdout}{init.stderr}")
        masks = [
            make_masks(work / "masks" / f"c{n}", n, args.files, args.size)
            for n in range(args.clients)
        ]
        folders = [(work / "masks" / f"c{n}", m) for n, m in enumerate(masks)]
        named = {
            "haproxy": lambda: [lb.proc.pid] if lb.proc else [],
            "Ceph (rgw, osd, mon)": lambda: ceph_pids(rgw),
        }
        named["PostgreSQL (whole machine)"] = postgres_pids
        print(
            f"{args.clients} SDK clients (4 PUTs in flight each), {args.files} files of "
            f"~{args.size} B per flow, {args.seconds:g} s per phase; "
            f"load average {os.getloadavg()[0]:.1f} on "
            f"{os.cpu_count()} cores (a shared machine: figures are noisy)"
        )
        phases = []
        instances[0].start()
        lb = Balancer(haproxy, work)
        stack.callback(lambda: lb.stop())
        lb.start(instances[:1])
        one = Phase("1 instance")
        asyncio.run(run_phase(one, lb, instances[:1], folders, args, False, named))
        phases.append(one)
        lb.stop()
        starting = [threading.Thread(target=srv.start) for srv in instances[1:]]
        for t in starting:
            t.start()
        for t in starting:
            t.join()
        lb = Balancer(haproxy, work)
        lb.start(instances)
        three = Phase("3 instances (one SIGKILLed and restarted, one SIGTERM-restarted)")
        asyncio.run(run_phase(three, lb, instances, folders, args, True, named))
        phases.append(three)
        for phase in phases:
            report(phase, args)
        problems = asyncio.run(verify(lb.url, rgw, bucket, phases))
        total = sum(len(ph.completed) for ph in phases)
        print(
            f"\nverified {total} complete flows in the database and in storage: "
            f"{len(problems)} problems"
        )
        for line in problems[:10]:
            print(f"  {line}")
        # The instances' own janitors run every 2 s: stop them (the drain exits 0), then the
        # logs are complete and the final janitor run has the lock to itself.
        lb.stop()
        for srv in instances:
            srv.stop()
        runs, overlaps = janitor_overlaps(instances)
        print(f"periodic janitor runs: {runs}, overlapping: {len(overlaps)}")
        for line in overlaps[:5]:
            print(f"  {line}")
        jr = instances[0].run_cli("janitor", "--json", "--grace", "0", check=False)
    janitor = json.loads(jr.stdout) if jr.returncode == 0 else None
    if janitor is None:
        print(f"janitor failed: {jr.stderr[-1000:]}")
        sys.exit(1)
    found = {
        k: janitor[k]["found"] for k in ("orphan_objects", "missing_objects", "pending_deletions")
    }
    print(
        f"janitor (dry run, grace 0): orphans {found['orphan_objects']}, masks missing their "
        f"object {found['missing_objects']}, unfinished deletions {found['pending_deletions']}, "
        f"pending groups {janitor['expired_groups']['found']} (flows cut short: not errors)"
    )
    flows_ok = all(ph.completed for ph in phases)
    exits_ok = not any(k.startswith("instance") for ph in phases for k in ph.aborted)
    ok = (
        flows_ok
        and exits_ok
        and not problems
        and not overlaps
        and runs > 0
        and not any(found.values())
    )
    print("RESULT:", "OK" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
