"""DICOM SEG export of a large mask group into Orthanc (issue 15), beside highdicom's floor.

    .venv/bin/python bench/export_seg.py                       # 350 x 512 x 512, 5 labels
    .venv/bin/python bench/export_seg.py --slices 64 --size 256 --storage local

A synthetic CT (pydicom, real geometry) is stored into Orthanc by STOW-RS (scripts/orthanc.sh
starts one unless ORTHANC_DICOMWEB_URL is set). For each storage (the local store, and Ceph
RGW from RGW_ENDPOINT/... or a throwaway scripts/rgw.sh one) a server process gets a group of
slices x labels PNG masks uploaded through the SDK, then exports it as a LABELMAP SEG with
`store` (STOW-RS into Orthanc) while another thread polls GET /health (every 10 ms by
default, as a load balancer's checks would, only more often; `--health-interval 0` polls
back to back, which keeps about a core of this 2-core machine busy and slows the export).

Printed per storage, for a first export (the source series read from Orthanc) and a second
one (its attributes cached): the whole export (POST to `succeeded`), its parts as the server
timed them (the worker process: read+decode, build, encode; then write and STOW side by
side), the peak RSS growth of the server and its worker processes during the export (VmHWM
after resetting it through /proc/PID/clear_refs), and /health p50/p99/max. The floors are
measured in this process on the same arrays: highdicom's own Segmentation() build + encode
of the same volume, uncompressed and RLE. On RGW the fetch peer is `rclone copy` of the same
PNGs to disk at the export's read concurrency, in the same run: what reading alone costs a
Go copier. The load average is printed with each figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
from pydicom.uid import generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from upload import ensure_rclone, rclone_env

from fixtures.dicom import Series, ct_series
from fixtures.rgw import Rgw, suite_rgw
from fixtures.server import ServerProcess, make_token, s3_server
from pacs_ext.client import PacsClient, upload_mask_group
from pacs_ext.dicomweb import DicomwebTarget
from pacs_ext.dicomweb.client import series_metadata, store
from pacs_ext.seg import labels
from pacs_ext.seg.build import Assembler, build, encode
from pacs_ext.seg.geometry import sort_along_normal
from pacs_ext.seg.jobs import SeriesInfo
from pacs_ext.seg.mapping import MaskRef, map_masks
from pacs_ext.seg.pixels import encode_mask
from pacs_ext.seg.warmup import warm_up

ROOT = Path(__file__).resolve().parent.parent
LABELS = ["liver", "spleen", "kidney", "pancreas", "tumor"]


def masks_of(slices: int, size: int, count: int) -> dict[tuple[int, str], np.ndarray]:
    """Non-overlapping discs and bands, different on every slice (PNG sizes like real masks)."""
    yy, xx = np.mgrid[0:size, 0:size]
    out = {}
    for s in range(slices):
        for k, label in enumerate(LABELS[:count]):
            cx = size * (k + 1) / (count + 1)
            r = size / (3 * (count + 1)) * (0.6 + 0.4 * np.sin(s / 20 + k))
            out[(s, label)] = (xx - cx) ** 2 + (yy - size / 2) ** 2 <= r * r
    return out


def write_pngs(folder: Path, masks: dict[tuple[int, str], np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for (s, label), mask in masks.items():
        (folder / f"{s:04d}_{label}.png").write_bytes(encode_mask(mask))


@contextlib.contextmanager
def orthanc(folder: Path) -> Iterator[DicomwebTarget]:
    url = os.environ.get("ORTHANC_DICOMWEB_URL")
    if url:
        yield DicomwebTarget(url=url)
        return
    script = ROOT / "scripts" / "orthanc.sh"
    subprocess.run([str(script), "start", str(folder)], check=True, capture_output=True)
    try:
        env = dict(
            line.removeprefix("export ").split("=", 1)
            for line in (folder / "env.sh").read_text().splitlines()
        )
        yield DicomwebTarget(url=env["ORTHANC_DICOMWEB_URL"])
    finally:
        subprocess.run([str(script), "destroy", str(folder)], check=False, capture_output=True)


def stow_series(target: DicomwebTarget, series: Series) -> float:
    t = time.perf_counter()
    for i in range(0, len(series.instances), 25):
        store(target, series.instances[i : i + 25])
    return time.perf_counter() - t


def floor(
    target: DicomwebTarget,
    series: Series,
    masks: dict[tuple[int, str], np.ndarray],
    compression: str,
) -> tuple[float, float]:
    """highdicom's own build + encode of the same volume (seconds each)."""
    sources = sort_along_normal(
        series_metadata(target, series.study_instance_uid, series.series_instance_uid)
    )
    refs = [MaskRef(f"{s}/{label}", f"{s:04d}_{label}.png", label, s, None) for (s, label) in masks]
    mapping = map_masks(refs, sources)
    assembler = Assembler(mapping, "LABELMAP")
    for ref in refs:
        assert ref.slice_index is not None
        assert ref.label_name is not None
        assembler.add(ref, masks[(ref.slice_index, ref.label_name)])
    styles = [labels.resolve(label, i) for i, label in enumerate(mapping.labels)]
    warm_up()  # the server warms up at start-up too (seg/warmup.py)
    t = time.perf_counter()
    seg = build(
        assembler,
        styles,
        None,
        SeriesInfo(generate_uid(), generate_uid(), "floor"),
        compression=compression,
    )
    built = time.perf_counter() - t
    t = time.perf_counter()
    encode(seg)
    return built, time.perf_counter() - t


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def family(pid: int) -> list[int]:
    """The server and its child processes (the export's worker process among them)."""
    out = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            out.extend(family(int(child)))
    return out


def reset_peaks(pids: list[int]) -> dict[int, int]:
    before = {}
    for pid in pids:
        # Reset the peak RSS so VmHWM measures this export only.
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        before[pid] = rss_kib(pid, "VmRSS")
    return before


def peak_growth_mib(before: dict[int, int]) -> float:
    """The sum over the server and its workers of each one's peak RSS above its start."""
    return sum(rss_kib(pid, "VmHWM") - rss for pid, rss in before.items()) / 1024


def poll_health(url: str, stop: threading.Event, out: list[float], interval: float) -> None:
    """GET /health every `interval` seconds (0: back to back, which keeps about a core busy
    between this thread and the server)."""
    with httpx.Client(base_url=url, timeout=30) as c:
        while not stop.is_set():
            t = time.perf_counter()
            c.get("/health").raise_for_status()
            out.append(time.perf_counter() - t)
            if interval:
                stop.wait(max(0.0, interval - (time.perf_counter() - t)))


def run_export(
    srv: ServerProcess, annotation: int, group: int, health_interval: float
) -> dict[str, object]:
    assert srv.proc is not None
    before = reset_peaks(family(srv.proc.pid))
    stop = threading.Event()
    latencies: list[float] = []
    poller = threading.Thread(target=poll_health, args=(srv.url, stop, latencies, health_interval))
    path = f"/api/annotations/{annotation}/mask-groups/{group}/exports"
    with srv.client("bench") as api:
        poller.start()
        t = time.perf_counter()
        r = api.post(path, json={"segmentation_type": "LABELMAP", "store": True})
        r.raise_for_status()
        post = time.perf_counter() - t
        state = r.json()
        while state["status"] not in ("succeeded", "failed"):
            time.sleep(0.05)
            state = api.get(f"{path}/{state['id']}").json()
        total = time.perf_counter() - t
        stop.set()
        poller.join()
    if state["status"] != "succeeded":
        raise RuntimeError(f"export failed: {state['error']}")
    latencies.sort()
    return {
        "total": total,
        "post": post,
        "timings": state["timings"],
        "rss_growth_mib": peak_growth_mib(before),
        "processes": len(before),
        "health": (
            statistics.median(latencies) * 1000,
            latencies[int(len(latencies) * 0.99)] * 1000,
            latencies[-1] * 1000,
            len(latencies),
        ),
        "size": state["file_size"],
        "frames": state["frames"],
    }


async def upload(srv: ServerProcess, series: Series, folder: Path) -> tuple[int, int, float]:
    async with PacsClient(srv.url, make_token("bench")) as client:
        annotation = await client.create_annotation(
            series.study_instance_uid, series_instance_uid=series.series_instance_uid
        )
        t = time.perf_counter()
        result = await upload_mask_group(
            client, annotation.id, folder, group_name="bench organs", concurrency=32
        )
        return annotation.id, result.group.id, time.perf_counter() - t


@contextlib.contextmanager
def server(
    kind: str,
    folder: Path,
    target: DicomwebTarget,
    rgw: Rgw | None,
    compression: str,
    fetch_concurrency: int | None,
) -> Iterator[tuple[ServerProcess, str]]:
    """A server of `kind`, and its bucket on RGW ("" on the local store)."""
    env = {
        "APP_DICOMWEB__URL": target.url,
        "APP_LOGGING__LEVEL": "WARNING",
        "APP_DICOM_SEG__COMPRESSION": compression,
    }
    if fetch_concurrency:
        env["APP_DICOM_SEG__FETCH_CONCURRENCY"] = str(fetch_concurrency)
    db = f"sqlite+aiosqlite:///{folder / 'pacs.db'}"
    if kind == "local":
        srv = ServerProcess(data_dir=folder, database_url=db, extra_env=env)
        try:
            srv.start()
            yield srv, ""
        finally:
            srv.stop()
        return
    assert rgw is not None
    with rgw.bucket() as bucket:
        srv = s3_server(folder, db, rgw, bucket)
        srv.extra_env.update(env)
        try:
            srv.start()
            yield srv, bucket
        finally:
            srv.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=350)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--labels", type=int, default=5, choices=range(1, len(LABELS) + 1))
    default = "both" if os.environ.get("RGW_ENDPOINT") else "local"
    parser.add_argument("--storage", choices=["local", "rgw", "both"], default=default)
    parser.add_argument("--compression", choices=["none", "rle"], default="rle")
    parser.add_argument("--runs", type=int, default=2, help="exports per storage")
    parser.add_argument(
        "--fetch-concurrency",
        type=int,
        default=None,
        help="the server's dicom_seg.fetch_concurrency (default: its own default)",
    )
    parser.add_argument(
        "--health-interval",
        type=float,
        default=0.01,
        help="seconds between GET /health during an export (0: back to back)",
    )
    args = parser.parse_args()
    kinds = ["local", "rgw"] if args.storage == "both" else [args.storage]
    with tempfile.TemporaryDirectory(prefix="bench-seg-") as tmp:
        root = Path(tmp)
        with orthanc(root / "orthanc") as target, contextlib.ExitStack() as stack:
            rgw = stack.enter_context(suite_rgw(root / "rgw")) if "rgw" in kinds else None
            series = ct_series(args.slices, args.size, args.size)
            print(
                f"source: {args.slices} CT slices of {args.size}x{args.size}, STOW-RS into "
                f"Orthanc in {stow_series(target, series):.1f} s"
            )
            masks = masks_of(args.slices, args.size, args.labels)
            write_pngs(root / "pngs", masks)
            png_bytes = sum(p.stat().st_size for p in (root / "pngs").iterdir())
            print(f"masks: {len(masks):,} PNGs, {png_bytes / 1e6:.1f} MB, {args.labels} labels")
            print(f"load average: {load()} (2 cores; other jobs share them)")
            floors = {}
            for compression in ("none", "rle"):
                build_s, encode_s = floor(target, series, masks, compression)
                floors[compression] = build_s + encode_s
                print(
                    f"floor, compression {compression} (highdicom build + encode, same arrays, "
                    f"this process): {build_s + encode_s:.2f} s (build {build_s:.2f}, "
                    f"encode {encode_s:.2f})"
                )
            del masks
            for kind in kinds:
                with server(
                    kind,
                    root / f"srv-{kind}",
                    target,
                    rgw,
                    args.compression,
                    args.fetch_concurrency,
                ) as (srv, bucket):
                    annotation, group, up = asyncio.run(upload(srv, series, root / "pngs"))
                    print(f"\n[{kind}] upload {up:.1f} s")
                    if rgw is not None and bucket:
                        fetch_peer(rgw, bucket, root / "fetched", args.fetch_concurrency or 64)
                    for run in range(args.runs):
                        # The first export reads the source series from Orthanc; later ones
                        # find it in the server's cache (dicom_seg.series_cache_seconds).
                        report(
                            "cold series cache" if run == 0 else "series cached",
                            run_export(srv, annotation, group, args.health_interval),
                            floors,
                            args.compression,
                        )
            print(f"\nload average at the end: {load()}")


def fetch_peer(rgw: Rgw, bucket: str, into: Path, transfers: int) -> None:
    """The fetch floor on RGW: `rclone copy` of the group's PNGs to local disk at the same
    concurrency as the export's reads (Go, no decoding), in the same run."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        **rclone_env(rgw),
    }
    cmd = [ensure_rclone(), "copy", f"bench:{bucket}", str(into), "--include", "*.png"]
    cmd += ["--transfers", str(transfers), "--checkers", str(transfers)]
    t = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"rclone failed:\n{done.stderr[-2000:]}")
    files = sum(1 for _ in into.rglob("*.png"))
    print(
        f"  fetch peer: rclone copy of the {files:,} PNGs from RGW to disk, {transfers} "
        f"transfers: {seconds:.2f} s  [load {load()}]"
    )


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def report(title: str, r: dict[str, object], floors: dict[str, float], compression: str) -> None:
    t = r["timings"]
    assert isinstance(t, dict)
    health = r["health"]
    assert isinstance(health, tuple)
    p50, p99, worst, n = health
    total, post = float(r["total"]), float(r["post"])  # type: ignore[arg-type]
    size = int(r["size"]) / 1e6  # type: ignore[call-overload]
    print(
        f"  export, {title} (POST to succeeded, LABELMAP, {r['frames']} frames, "
        f"{size:.1f} MB): {total:.2f} s  [load {load()}]"
    )
    print(
        f"    parts: POST (source series, mapping) {post:.2f} s; runner {t.get('total')} s = "
        f"URLs {t.get('locations')} s, worker process {t.get('build_process')} s "
        f"(read+decode {t.get('fetch_decode')}, "
        f"build {t.get('build')}, encode {t.get('encode')}, rest: start and transfer), "
        f"then write {t.get('write')} s | STOW {t.get('stow')} s (side by side)"
    )
    print(
        f"    vs floor: {total / floors[compression]:.1f}x the floor with the same compression "
        f"({compression}), {total / floors['none']:.1f}x the uncompressed one; "
        f"peak RSS growth {r['rss_growth_mib']:.0f} MiB "
        f"(server and its {int(r['processes']) - 1} worker processes)"  # type: ignore[call-overload]
    )
    print(
        f"    /health during export: p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
        f"max {worst:.1f} ms ({n} requests)"
    )


if __name__ == "__main__":
    main()
