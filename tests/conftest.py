from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fixtures.databases import database
from fixtures.server import ServerProcess

DB_KINDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session", params=DB_KINDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """The app over real HTTP on a free port, on SQLite and on PostgreSQL, local object store."""
    folder = tmp_path_factory.mktemp(f"server-{request.param}")
    with database(request.param, folder) as url:
        srv = ServerProcess(data_dir=folder, database_url=url).start()
        try:
            yield srv
        finally:
            srv.stop()


@pytest.fixture
def alice(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client("alice") as c:
        yield c


@pytest.fixture
def bob(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client("bob") as c:
        yield c


@pytest.fixture
def admin(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client("root", admin=True) as c:
        yield c


@pytest.fixture
def objects_root(server: ServerProcess) -> Path:
    return server.data_dir / "objects"
