"""Prometheus multiprocess mode for several uvicorn workers: one folder of value files.

Kept apart from metrics.py: importing that module creates this process's value files, which
the clearing below must not remove.
"""

from __future__ import annotations

import os
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def prepare_multiprocess_dir(path: Path) -> Path:
    """Point prometheus-client at path for the workers about to start, emptied of old values.

    Files left by an earlier run would be summed into this one's counters, so they go.
    An operator-set PROMETHEUS_MULTIPROC_DIR wins over path (one folder per server).
    """
    folder = Path(os.environ.get(MULTIPROC_ENV) or path)
    folder.mkdir(parents=True, exist_ok=True)
    own = f"_{os.getpid()}.db"  # this process may have recorded already: those are current
    for stale in folder.glob("*.db"):
        if not stale.name.endswith(own):
            stale.unlink(missing_ok=True)
    os.environ[MULTIPROC_ENV] = str(folder)
    return folder
