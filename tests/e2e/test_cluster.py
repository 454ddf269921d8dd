"""bench/cluster.py at a small size: HAProxy in front of 3 instances on PostgreSQL and RGW,
one instance SIGKILLed and one SIGTERM-restarted under load; every flow reported complete is
in the database and in storage with its MD5, the janitor finds nothing left over, and no two
periodic janitor runs overlapped. The bench checks and prints; this test reads its verdict."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.rgw, pytest.mark.postgres]

BENCH = Path(__file__).resolve().parents[2] / "bench" / "cluster.py"


def test_three_instances_behind_haproxy_lose_nothing_when_one_dies() -> None:
    run = subprocess.run(
        [sys.executable, str(BENCH), "--clients", "4", "--seconds", "6", "--files", "4"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ},
        check=False,
    )
    out = run.stdout
    assert run.returncode == 0, out[-3000:] + run.stderr[-3000:]
    assert "RESULT: OK" in out
    assert re.search(r"instance 3 exited with status 0", out), out
    assert re.search(r"verified [1-9]\d* complete flows .*: 0 problems", out), out
    assert re.search(r"periodic janitor runs: [1-9]\d*, overlapping: 0", out), out
    assert "orphans 0, masks missing their object 0, unfinished deletions 0" in out
