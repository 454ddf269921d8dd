from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.databases import postgres_database
from fixtures.isolated import own_server
from fixtures.paused_storage import ARM_FILE, release
from fixtures.rgw import Rgw
from fixtures.rgw_outage import PAUSED_SERVE, SMALL_PARTS
from fixtures.server import ServerProcess, s3_server

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


@pytest.fixture(scope="session")
def outage_server(
    outage_rgw: Rgw, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """PostgreSQL + the RGW whose gateway tests kill (a bucket of its own), served with pause
    points (fixtures/paused_storage.py)."""
    folder = tmp_path_factory.mktemp("outage-server")
    with outage_rgw.bucket() as bucket, postgres_database() as url:
        srv = s3_server(folder, url, outage_rgw, bucket, **SMALL_PARTS)
        srv.launcher = [sys.executable, str(PAUSED_SERVE)]
        srv.start()
        try:
            yield srv
        finally:
            srv.stop()


@pytest.fixture
def paused_server(rgw: Rgw, tmp_path: Path) -> Iterator[ServerProcess]:
    """PostgreSQL + a bucket of its own on the shared RGW, served with pause points
    (fixtures/paused_storage.py); tests may kill and restart it."""
    with rgw.bucket() as bucket, postgres_database() as url:
        srv = s3_server(tmp_path, url, rgw, bucket)
        srv.launcher = [sys.executable, str(PAUSED_SERVE)]
        srv.start()
        try:
            yield srv
        finally:
            (srv.data_dir / ARM_FILE).unlink(missing_ok=True)
            release(srv.data_dir)
            srv.stop()
