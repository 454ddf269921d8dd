"""`complete` of large mask groups, and /health latency while it runs (issue 12, item 4).

    .venv/bin/python bench/complete_large.py                 # 10,000 and 100,000 files
    .venv/bin/python bench/complete_large.py --sizes 2000 20000

Starts a server (SQLite + local store, default limits: limits.max_files_per_group is
100,000), declares N files in batches of 10,000 (create, then upload-urls), writes the
objects straight into the local store's folder as its signed PUT would leave them (the
upload itself is what bench/upload.py measures), then calls `complete` while another thread
polls GET /health back to back. Prints the `complete` time and /health p50/p99/max.

    .venv/bin/python bench/complete_large.py --watch         # and the server's own view

--watch serves through bench/loop_watch_serve.py and also prints, for the time `complete`
ran, the event-loop stalls over 50 ms seen inside the server, each with the process's CPU
time during it (a stall with little CPU is the machine busy with other jobs, not the loop
held by work), and the full garbage collections with their duration.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fixtures.server import ServerProcess

BATCH = 10_000
MD5_XATTR = "user.pacs.md5"
TYPE_XATTR = "user.pacs.content_type"


def body_of(i: int) -> bytes:
    return b"\x89PNG mask %d" % i


def declare(c: httpx.Client, count: int) -> tuple[int, int, list[str]]:
    r = c.post("/api/annotations", json={"study_instance_uid": "1.2.3"})
    r.raise_for_status()
    aid = r.json()["id"]
    specs = []
    for i in range(count):
        body = body_of(i)
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
        specs.append({"filename": f"{i:06d}.png", "size": len(body), "md5": md5})
    r = c.post(f"/api/annotations/{aid}/mask-groups", json={"files": specs[:BATCH]})
    r.raise_for_status()
    gid = r.json()["id"]
    keys = [u["object_key"] for u in r.json()["uploads"]]
    for start in range(BATCH, count, BATCH):
        r = c.post(
            f"/api/annotations/{aid}/mask-groups/{gid}/upload-urls",
            json={"files": specs[start : start + BATCH]},
        )
        r.raise_for_status()
        keys += [u["object_key"] for u in r.json()["uploads"]]
    return aid, gid, keys


def store_objects(root: Path, keys: list[str]) -> None:
    for key in keys:
        i = int(key.rsplit("/", 1)[1].split(".")[0])
        body = body_of(i)
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        os.setxattr(path, MD5_XATTR, hashlib.md5(body).hexdigest().encode())
        os.setxattr(path, TYPE_XATTR, b"image/png")


def poll_health(url: str, stop: threading.Event, out: list[float]) -> None:
    with httpx.Client(base_url=url, timeout=30) as c:
        while not stop.is_set():
            t = time.perf_counter()
            c.get("/health").raise_for_status()
            out.append(time.perf_counter() - t)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def watched(path: Path | None, since: int) -> str:
    """The watchdog's lines written after byte `since`, summed up."""
    if path is None:
        return ""
    with path.open() as fh:
        fh.seek(since)
        records = [json.loads(line) for line in fh]
    stalls = [r for r in records if "stall_ms" in r]
    gcs = [r["gc2_ms"] for r in records if "gc2_ms" in r]
    out = f"\n         server loop: {len(stalls)} stalls > 50 ms"
    if stalls:
        worst = max(stalls, key=lambda r: r["stall_ms"])
        busy = max(stalls, key=lambda r: r["process_cpu_ms"])
        out += (
            f"; longest {worst['stall_ms']} ms ({worst['process_cpu_ms']} ms of process CPU); "
            f"most CPU {busy['process_cpu_ms']} ms (in a {busy['stall_ms']} ms stall)"
        )
    out += f" | full GCs: {len(gcs)}" + (f", longest {max(gcs)} ms" if gcs else "")
    return out


def run(server: ServerProcess, count: int, watch: Path | None = None) -> None:
    with server.client("bench") as c:
        t = time.perf_counter()
        aid, gid, keys = declare(c, count)
        declared = time.perf_counter() - t
        store_objects(server.data_dir / "objects", keys)
        latencies: list[float] = []
        stop = threading.Event()
        poller = threading.Thread(target=poll_health, args=(server.url, stop, latencies))
        poller.start()
        time.sleep(0.2)  # the poller is running before complete starts
        baseline = len(latencies)
        mark = watch.stat().st_size if watch else 0
        t = time.perf_counter()
        r = c.post(f"/api/annotations/{aid}/mask-groups/{gid}/complete", timeout=600)
        took = time.perf_counter() - t
        during = latencies[baseline:]
        stop.set()
        poller.join()
        r.raise_for_status()
        assert r.json()["mask_count"] == count, r.text
    print(
        f"{count:>7} files: complete {took:6.2f} s (declare {declared:5.1f} s) | /health during "
        f"complete: n={len(during)} p50 {pct(during, 0.5):5.1f} ms  p99 {pct(during, 0.99):5.1f} "
        f"ms  max {max(during) * 1000:6.1f} ms{watched(watch, mark)}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--watch", action="store_true", help="the server's own loop stalls")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-complete-") as tmp:
        folder = Path(tmp)
        server = ServerProcess(data_dir=folder, database_url="")
        server.extra_env["APP_LOGGING__LEVEL"] = "WARNING"
        watch = None
        if args.watch:
            watch = folder / "loop-watch.jsonl"
            watch.touch()
            server.extra_env["LOOP_WATCH_OUT"] = str(watch)
            server.launcher = [sys.executable, str(Path(__file__).with_name("loop_watch_serve.py"))]
        server.start()
        try:
            for count in args.sizes:
                run(server, count, watch)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
