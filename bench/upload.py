"""Upload benchmark: N mask files of ~SIZE bytes through the SDK (upload_mask_group) into a
server this script starts, printing files/s, MB/s and the server's CPU seconds meanwhile.

    .venv/bin/python bench/upload.py                        # 2,000 x ~20 KB, local store
    .venv/bin/python bench/upload.py --files 500 --size 200000
    .venv/bin/python bench/upload.py --storage s3           # S3/RGW from APP_OBJECT_STORAGE__*

With `--storage local` the server is also the object store, so its CPU grows with the bytes;
with an S3-compatible store (Ceph RGW) it only signs URLs and verifies by listing, so it
should not. `--storage s3` passes the caller's APP_OBJECT_STORAGE__* variables (provider,
endpoint, keys, bucket) to the server, e.g. those of the RGW that scripts/rgw.sh starts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import jwt

from pacs_ext.client import PacsClient, upload_mask_group

BIN = Path(sys.executable).parent / "pacs-ext"
TICKS = os.sysconf("SC_CLK_TCK")
PG_DSN = os.environ.get("PACS_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, from /proc/<pid>/stat (fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_files(folder: Path, count: int, size: int) -> int:
    folder.mkdir(parents=True)
    labels = ("liver", "spleen", "kidney_left", "kidney_right")
    total = 0
    for i in range(count):
        body = b"\x89PNG\r\n\x1a\n" + os.urandom(size - 8 + (i % 17) * 64)
        (folder / f"{i // len(labels) + 1:04d}_{labels[i % len(labels)]}.png").write_bytes(body)
        total += len(body)
    return total


def server_env(args: argparse.Namespace, data: Path, port: int, secret: str) -> dict[str, str]:
    keep_storage = args.storage == "s3"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("APP_") or (keep_storage and k.startswith("APP_OBJECT_STORAGE__"))
    }
    env.update(
        APP_CONFIG_DIR=str(data / "no-config"),
        APP_ENV="test",
        APP_SERVER__HOST="127.0.0.1",
        APP_SERVER__PORT=str(port),
        APP_SERVER__DATA_DIR=str(data),
        APP_AUTH__JWT_SECRET=secret,
        APP_LOGGING__LEVEL=args.log_level,
    )
    if args.database_url:
        env["APP_DATABASE__URL"] = args.database_url
    if args.storage == "local":
        env["APP_OBJECT_STORAGE__PROVIDER"] = "local"
    elif env.get("APP_OBJECT_STORAGE__PROVIDER", "local") == "local":
        raise SystemExit("--storage s3 needs APP_OBJECT_STORAGE__PROVIDER=s3 (and endpoint, keys)")
    return env


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def start_server(env: dict[str, str], url: str, log: Path) -> subprocess.Popen[bytes]:
    upgrade = subprocess.run([str(BIN), "db", "upgrade"], env=env, capture_output=True, text=True)
    if upgrade.returncode != 0:
        raise SystemExit(f"pacs-ext db upgrade failed:\n{upgrade.stderr[-2000:]}")
    with open(log, "ab") as fh:
        proc = subprocess.Popen([str(BIN), "serve"], env=env, stdout=fh, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/ready", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"server did not become ready:\n{log.read_text()[-2000:]}")


async def run_upload(
    url: str, token: str, folder: Path, concurrency: int
) -> tuple[float, float, int, int]:
    async with PacsClient(url, token) as client:
        annotation = await client.create_annotation("1.2.840.10008.999", description="bench")
        started = time.perf_counter()
        result = await upload_mask_group(
            client, annotation.id, folder, group_name="bench", concurrency=concurrency
        )
        wall = time.perf_counter() - started
        if result.group.status != "complete":
            raise SystemExit(f"upload did not complete: {result.group.status}")
        return wall, result.seconds, result.files_uploaded, result.bytes_uploaded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--size", type=int, default=20_000, help="approximate bytes per file")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--storage", choices=("local", "s3"), default="local")
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="postgres: a throwaway database on PACS_BENCH_PG_DSN (default 127.0.0.1:5432)",
    )
    parser.add_argument("--log-level", default="INFO", choices=("INFO", "WARNING"))
    args = parser.parse_args()
    args.database_url = ""
    pg_name = ""
    if args.database == "postgres":
        pg_name = f"pacs_bench_{secrets.token_hex(6)}"
        asyncio.run(_pg_admin(f'CREATE DATABASE "{pg_name}"'))
        host = PG_DSN.split("://", 1)[1].rsplit("/", 1)[0]
        args.database_url = f"postgresql+asyncpg://{host}/{pg_name}"

    work = Path(tempfile.mkdtemp(prefix="pacs-bench-upload-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    secret = secrets.token_urlsafe(48)
    proc: subprocess.Popen[bytes] | None = None
    try:
        total = make_files(work / "masks", args.files, args.size)
        proc = start_server(server_env(args, work / "data", port, secret), url, work / "srv.log")
        token = jwt.encode(
            {"sub": "bench", "exp": int(time.time()) + 3600}, secret, algorithm="HS256"
        )
        cpu_before = cpu_seconds(proc.pid)
        client_cpu_before = time.process_time()
        wall, _, files, nbytes = asyncio.run(
            run_upload(url, token, work / "masks", args.concurrency)
        )
        server_cpu = cpu_seconds(proc.pid) - cpu_before
        client_cpu = time.process_time() - client_cpu_before
        if (files, nbytes) != (args.files, total):
            raise SystemExit(f"uploaded {files} files / {nbytes} bytes, expected {total}")
        mb = nbytes / 1e6
        print(
            f"storage={args.storage} database={args.database} "
            f"files={files} bytes={nbytes} ({mb:.1f} MB) concurrency={args.concurrency}"
        )
        print(
            f"upload (scan+hash+declare+PUT+complete): {wall:.2f} s  "
            f"{files / wall:,.0f} files/s  {mb / wall:.2f} MB/s"
        )
        print(
            f"server CPU during upload: {server_cpu:.2f} s "
            f"({server_cpu / files * 1000:.2f} ms/file)  client CPU: {client_cpu:.2f} s"
        )
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(work, ignore_errors=True)
        if pg_name:
            asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
