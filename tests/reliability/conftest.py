from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from fixtures.databases import database
from fixtures.server import ServerProcess

FAULTY_SERVE = Path(__file__).resolve().parent.parent / "fixtures" / "faulty_serve.py"
DB_KINDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@contextmanager
def own_server(kind: str, folder: Path, **kwargs: Any) -> Iterator[ServerProcess]:
    """A server with a database of its own, for tests that count what is in storage."""
    with database(kind, folder) as url:
        srv = ServerProcess(data_dir=folder, database_url=url, **kwargs).start()
        try:
            yield srv
        finally:
            srv.stop()


@pytest.fixture(scope="module", params=DB_KINDS)
def faulty_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """The real server whose local store fails on demand (fixtures/faults.py)."""
    folder = tmp_path_factory.mktemp(f"faulty-{request.param}")
    launcher = [sys.executable, str(FAULTY_SERVE)]
    with own_server(request.param, folder, launcher=launcher) as srv:
        yield srv
