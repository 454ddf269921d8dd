"""Files and folders the server writes under data_dir: its own user's only (0600 / 0700)."""

from __future__ import annotations

import contextlib
from pathlib import Path


def private_dirs(path: Path) -> None:
    """mkdir -p with mode 0700 for every folder it creates (Path.mkdir gives parents 0755)."""
    missing = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=0o700)
