from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fixtures.databases import database
from fixtures.objects import StoredObjects
from fixtures.rgw import Rgw, started_rgw, suite_rgw
from fixtures.server import ServerProcess, s3_server

MiB = 1024 * 1024

# Database + object storage of the `server` fixture. A test (or module) picks some with
# @pytest.mark.server_kinds("sqlite", ...); by default it runs on all of them.
SERVER_KINDS = {
    "sqlite": (),
    "postgres": (pytest.mark.postgres,),
    "postgres-rgw": (pytest.mark.postgres, pytest.mark.rgw),
}
# Multipart above 8 MiB on the RGW server, so multipart tests can use 10 MiB files; the parts
# keep the default size (16 MiB), which the 70 MiB test exercises.
RGW_SERVER_SETTINGS = {"multipart_threshold": 8 * MiB}


BROWSER_TESTS = Path(__file__).parent / "browser"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # `-m "not postgres and not rgw and not browser"` (make test-fast) leaves out Chromium.
    for item in items:
        if BROWSER_TESTS in item.path.parents:
            item.add_marker(pytest.mark.browser)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "server" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("server_kinds")
    kinds = list(marker.args) if marker else list(SERVER_KINDS)
    unknown = set(kinds) - set(SERVER_KINDS)
    assert not unknown, f"unknown server kinds {unknown}"
    metafunc.parametrize(
        "server",
        [pytest.param(k, marks=SERVER_KINDS[k], id=k) for k in kinds],
        indirect=True,
        scope="session",
    )


@pytest.fixture(scope="session")
def rgw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rgw]:
    """The suite's Ceph RGW: the one scripts/test.sh started, else one started here."""
    with suite_rgw(tmp_path_factory.mktemp("rgw")) as r:
        yield r


@pytest.fixture(scope="session")
def outage_rgw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rgw]:
    """A Ceph RGW of its own for tests that stop and restart the gateway: the suite's RGW
    keeps serving every other test meanwhile."""
    with started_rgw(tmp_path_factory.mktemp("rgw-outage")) as r:
        yield r


@pytest.fixture(scope="session")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """The app over real HTTP on a free port: SQLite or PostgreSQL, local store or Ceph RGW
    (with a bucket of its own)."""
    kind: str = request.param
    db_kind, _, store = kind.partition("-")
    folder = tmp_path_factory.mktemp(f"server-{kind}")
    with database(db_kind, folder) as url:
        if store == "rgw":
            rgw: Rgw = request.getfixturevalue("rgw")
            with rgw.bucket() as bucket:
                srv = s3_server(folder, url, rgw, bucket, **RGW_SERVER_SETTINGS)
                # The bucket as `storage init` leaves it (CORS for the server's own origin,
                # where a viewer page lives), so every RGW test runs on a provisioned bucket.
                init = srv.run_cli("storage", "init", check=False)
                assert init.returncode == 0, init.stdout + init.stderr
                srv.start()
                try:
                    yield srv
                finally:
                    srv.stop()
        else:
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
def objects(server: ServerProcess) -> StoredObjects:
    """What the server's storage holds, whatever the backend."""
    assert server.objects is not None
    return server.objects


@pytest.fixture
def objects_root(server: ServerProcess) -> Path:
    """The local store's folder (tests marked server_kinds with local kinds only)."""
    assert server.storage == "local", "objects_root is only meaningful for the local store"
    return server.data_dir / "objects"
