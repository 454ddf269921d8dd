"""Copy 5,000 files of ~20 KB into Ceph RGW with `pacs-ext migrate`, `aws s3 sync` and
`rclone sync`; print files/s for each (first run, and a re-run that has nothing to copy).

Usage: python bench/migrate.py [--files 5000] [--size 20000] [--rounds 3]

Each tool copies into a fresh bucket of its own (the bucket index grows as objects arrive, so a
shared one would favour whoever runs first), and the order of the tools rotates each round; the
median per tool is printed. Wall time of the whole command, start-up included. pacs-ext runs
with its defaults (32 in flight, registration against a migrated SQLite database); aws s3 sync
and rclone with theirs (10 requests in flight; 4 transfers + 8 checkers), and rclone once more
with --transfers 32 --checkers 32.

RGW: the one named by RGW_ENDPOINT/RGW_ACCESS_KEY/RGW_SECRET_KEY (scripts/rgw.sh's env.sh),
else a throwaway one started with scripts/rgw.sh. awscli comes from PyPI into a temporary venv
(its exact botocore pin would fight aiobotocore's in the project's venv) unless `aws` is on
PATH; rclone is installed with apt-get when missing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fixtures.migration import make_tree
from fixtures.rgw import Rgw, suite_rgw

BIN = Path(sys.executable).parent


def aws_cli(tmp: Path) -> list[str]:
    found = shutil.which("aws")
    if found:
        return [found]
    venv = tmp / "awscli-venv"
    print("installing awscli into a temporary venv ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "awscli"], check=True, timeout=600
    )
    return [str(venv / "bin" / "aws")]


def rclone() -> str:
    found = shutil.which("rclone")
    if found:
        return found
    print("installing rclone (apt-get) ...", flush=True)
    apt = ["apt-get", "install", "-y", "--no-install-recommends", "rclone"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(apt, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=True)
        subprocess.run(apt, env=env, capture_output=True, check=True)
    return shutil.which("rclone") or "rclone"


def base_env() -> dict[str, str]:
    # An http:// endpoint with a CA bundle set makes rclone refuse to start; nothing here is TLS.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APP_", "AWS_"))}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    return env


def count(rgw: Rgw, bucket: str) -> int:
    pages = rgw.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sum(len(p.get("Contents", [])) for p in pages)


def timed(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if r.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({r.returncode}): {r.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="pacs-bench-migrate-") as t,
        suite_rgw(Path(t) / "rgw") as rgw,
    ):
        tmp = Path(t)
        src = tmp / "masks"
        per_group = 100
        groups = {(1 + g // 5, 100 + g): per_group for g in range(-(-args.files // per_group))}
        files = make_tree(src, groups, size=args.size)
        total = len(files)
        mb = sum(len(b) for b in files.values()) / 1e6
        print(f"{total} files, {mb:.1f} MB, into Ceph RGW at {rgw.endpoint}", flush=True)

        aws = aws_cli(tmp)
        rc = rclone()
        conf = tmp / "rclone.conf"
        conf.write_text(
            "[rgw]\ntype = s3\nprovider = Ceph\n"
            f"access_key_id = {rgw.access_key}\nsecret_access_key = {rgw.secret_key}\n"
            f"endpoint = {rgw.endpoint}\nregion = {rgw.region}\n"
        )
        env = base_env()
        aws_env = {
            **env,
            "AWS_ACCESS_KEY_ID": rgw.access_key,
            "AWS_SECRET_ACCESS_KEY": rgw.secret_key,
            "AWS_DEFAULT_REGION": rgw.region,
        }

        def pacs(bucket: str) -> list[str]:
            return [str(BIN / "pacs-ext"), "migrate", str(src)]

        def pacs_env(bucket: str) -> dict[str, str]:
            data = tmp / f"pacs-{bucket}"
            e = {
                **env,
                "APP_CONFIG_DIR": str(tmp / "no-config"),
                "APP_SERVER__DATA_DIR": str(data),
                "APP_OBJECT_STORAGE__PROVIDER": "s3",
                "APP_OBJECT_STORAGE__ENDPOINT": rgw.endpoint,
                "APP_OBJECT_STORAGE__REGION": rgw.region,
                "APP_OBJECT_STORAGE__BUCKET_NAME": bucket,
                "APP_OBJECT_STORAGE__ACCESS_KEY": rgw.access_key,
                "APP_OBJECT_STORAGE__SECRET_KEY": rgw.secret_key,
                "APP_OBJECT_STORAGE__KEY_PREFIX": "pacs/",
            }
            subprocess.run(
                [str(BIN / "pacs-ext"), "db", "upgrade"], env=e, check=True, capture_output=True
            )
            return e

        aws_cmd = [
            *aws,
            "--endpoint-url",
            rgw.endpoint,
            "s3",
            "sync",
            "--only-show-errors",
            str(src),
        ]
        tools: dict[str, tuple[Callable[[str], list[str]], Callable[[str], dict[str, str]]]] = {
            "pacs-ext migrate": (pacs, pacs_env),
            "aws s3 sync": (lambda b: [*aws_cmd, f"s3://{b}/aws/"], lambda b: aws_env),
            "rclone sync": (
                lambda b: [rc, "--config", str(conf), "sync", str(src), f"rgw:{b}/rclone/"],
                lambda b: env,
            ),
            "rclone sync --transfers 32": (
                lambda b: [
                    rc,
                    "--config",
                    str(conf),
                    "sync",
                    "--transfers",
                    "32",
                    "--checkers",
                    "32",
                    str(src),
                    f"rgw:{b}/rclone/",
                ],
                lambda b: env,
            ),
        }
        first: dict[str, list[float]] = {name: [] for name in tools}
        again: dict[str, list[float]] = {name: [] for name in tools}
        names = list(tools)
        for round_ in range(args.rounds):
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in order:
                command, environment = tools[name]
                with rgw.bucket() as bucket:
                    e = environment(bucket)
                    first[name].append(timed(command(bucket), e))
                    stored = count(rgw, bucket)
                    if stored != total:
                        raise SystemExit(f"{name}: {stored} objects stored, not {total}")
                    again[name].append(timed(command(bucket), e))
                print(
                    f"  round {round_ + 1}: {name:<28} {total / first[name][-1]:7.0f} files/s",
                    flush=True,
                )

        print(
            f"\n{'tool':<28} {'files/s':>8} {'seconds':>8} {'re-run s':>9}  (median of "
            f"{args.rounds})"
        )
        for name in names:
            secs = statistics.median(first[name])
            print(
                f"{name:<28} {total / secs:8.0f} {secs:8.2f} {statistics.median(again[name]):9.2f}"
            )


if __name__ == "__main__":
    main()
