from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.isolated import own_server
from fixtures.server import ServerProcess

FAULTY_SERVE = Path(__file__).resolve().parent.parent / "fixtures" / "faulty_serve.py"
DB_KINDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="module", params=DB_KINDS)
def faulty_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """The real server whose local store fails on demand (fixtures/faulty_storage.py)."""
    folder = tmp_path_factory.mktemp(f"faulty-{request.param}")
    launcher = [sys.executable, str(FAULTY_SERVE)]
    with own_server(request.param, folder, launcher=launcher) as srv:
        yield srv
