from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fixtures.databases import database
from fixtures.inprocess import AppFactory, Apps, InProcess, migrate
from fixtures.moto import Moto, suite_moto
from fixtures.objects import StoredObjects
from fixtures.rgw import Rgw, started_rgw, suite_rgw
from fixtures.server import ServerProcess, s3_server

MiB = 1024 * 1024


def _share_httpx_default_tls_context() -> None:
    """One default TLS context per test process for httpx: httpx builds a new one, loading
    certifi's CA bundle, for every Client, and every module-level call (httpx.get) makes a
    Client: 15-25 ms of CPU each (measured here), thousands of times a run, for servers the
    tests mostly reach over plain http (the server fixture's start-up polling alone made one
    every 0.1 s). A context is reusable and thread-safe; the test's clients set no options
    on it. Only the default (verify=True, no client certificate) is shared."""
    from httpx._transports import default as transports

    create = getattr(transports, "create_ssl_context", None)
    if create is None:  # another httpx: no sharing, nothing else changes
        return
    shared: list[Any] = []

    def create_ssl_context(verify: Any = True, cert: Any = None, trust_env: bool = True) -> Any:
        if verify is not True or cert is not None:
            return create(verify=verify, cert=cert, trust_env=trust_env)
        if not shared:
            shared.append(create(verify=verify, cert=cert, trust_env=trust_env))
        return shared[0]

    transports.create_ssl_context = create_ssl_context  # type: ignore[assignment]


_share_httpx_default_tls_context()

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
# Connections a shared PostgreSQL server keeps open (it may open 10 more under load).
POOL_SERVER_DB_POOL = 3


TESTS = Path(__file__).parent
IN_PROCESS_FIXTURES = {"make_app", "inproc"}
# What makes a test an end-to-end one: a real server process (the `server` fixture or one of
# its own), the CLI in a subprocess, or Ceph RGW.
E2E_FIXTURES = {
    "server",
    "server_pool",
    "srv",
    "rgw",
    "outage_rgw",
    "idp",
    "target",
    "faulty_server",
}
E2E_FIXTURES |= {"outage_server", "moto"}
E2E_NAMES = {"own_server", "ServerProcess", "s3_server", "BIN", "subprocess", "started_rgw"}


def _is_e2e(item: pytest.Item) -> bool:
    if E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    module = getattr(item, "module", None)
    return module is not None and bool(E2E_NAMES & set(vars(module)))


# Session fixtures costly enough that every module using one runs on the same xdist worker
# (a second Ceph cluster per worker would cost ~1 GB and 10-20 s of CPU each): the modules are
# named here (the scheduler sees only node ids), and collection fails if a module using the
# fixture is missing.
SHARED_SESSION_FIXTURES = {"outage_rgw": "outage-rgw", "outage_server": "outage-rgw"}
SHARED_MODULE_GROUPS = {
    "tests/reliability/test_rgw_upload_outage.py": "outage-rgw",
    "tests/reliability/test_rgw_delete_outage.py": "outage-rgw",
    "tests/e2e/test_storage_failures.py": "outage-rgw",
}
# Folders whose tests all run on one worker: one Chromium (a session fixture) instead of one
# per worker, and never several browsers competing for the two cores.
FOLDER_GROUPS = {"tests/browser/": "browser"}

# The groups that run longest (measured with --durations), longest first.
LONG_GROUPS = [
    "tests/e2e/test_cluster.py",
    "tests/test_fuzz_api.py",
    "outage-rgw",
    "browser",
    "tests/e2e/test_pgbackrest_restore.py",
    "tests/cli/test_aws_commands.py",
]
# The `server` fixture's kinds as they open a test id's parameters, longest first.
_KINDS_IN_IDS = sorted(SERVER_KINDS, key=len, reverse=True)


def xdist_group(nodeid: str) -> str:
    """The group of a test: a whole group runs on one xdist worker (so its module fixtures
    start once). A module is a group, one per `server` kind when parametrized by it (each
    worker starts a kind's server once, whichever modules it runs); modules sharing a costly
    session fixture, and the browser tests, share one."""
    module = nodeid.split("::", 1)[0]
    if module in SHARED_MODULE_GROUPS:
        return SHARED_MODULE_GROUPS[module]
    for folder, group in FOLDER_GROUPS.items():
        if module.startswith(folder):
            return group
    name = nodeid.rsplit("::", 1)[-1]
    if "[" in name:
        params = name.split("[", 1)[1]
        for kind in _KINDS_IN_IDS:
            if params == kind + "]" or params.startswith(kind + "-"):
                return f"{module}[{kind}]"
    return module


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """pytest-xdist's `loadgroup` reads xdist_group markers into node ids by a private field
    that pytest 9.2 no longer reads (every test was scheduled alone, module fixtures started
    on every worker): this scheduler groups by `xdist_group(nodeid)` itself, and sends the
    groups in collection order (LONG_GROUPS first; see _sort_long_groups_first)."""
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_group(nodeid)

    return GroupScheduling(config, log)


def _check_shared_groups(items: list[pytest.Item]) -> None:
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        for fixture, group in SHARED_SESSION_FIXTURES.items():
            if fixture in getattr(item, "fixturenames", ()) and xdist_group(item.nodeid) != group:
                raise pytest.UsageError(
                    f"{module} uses {fixture}: add it to SHARED_MODULE_GROUPS in tests/conftest.py"
                )


def _sort_long_groups_first(items: list[pytest.Item]) -> None:
    """The longest groups are sent to workers first (with `--no-loadscope-reorder` the
    scheduler keeps collection order), so none of them starts last."""
    order = {group: n for n, group in enumerate(LONG_GROUPS)}
    items.sort(key=lambda item: order.get(xdist_group(item.nodeid), len(order)))  # stable


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    _check_shared_groups(items)
    _sort_long_groups_first(items)
    for item in items:
        # `make test-fast` is -m "not postgres and not rgw and not browser and not e2e".
        if TESTS / "browser" in item.path.parents:
            item.add_marker(pytest.mark.browser)
        if _is_e2e(item):
            item.add_marker(pytest.mark.e2e)
        if "moto" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.moto)
        if TESTS / "security" in item.path.parents or IN_PROCESS_FIXTURES & set(
            getattr(item, "fixturenames", ())
        ):
            # The app runs inside the test process, under filterwarnings=error: SQLAlchemy
            # 2.1's deprecation of Result.tuples() (masks/repository.py) would turn into a
            # 500, and the garbage collector's warnings land on whichever test runs.
            item.add_marker(
                pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SADeprecationWarning")
            )
        # Now and then an aiosqlite connection of an in-process app already shut down is
        # collected unclosed during a LATER test, whichever it is (seen once in ~150 tests;
        # cause not found yet): so the filter is on every test, and only for that warning.
        item.add_marker(
            pytest.mark.filterwarnings(
                "ignore:Exception ignored in. <function Connection.__del__"
                ":pytest.PytestUnraisableExceptionWarning"
            )
        )


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
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    """moto's server (the one scripts/test.sh started, else one started here)."""
    with suite_moto(tmp_path_factory.mktemp("moto")) as m:
        yield m


@pytest.fixture(scope="session")
def outage_rgw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rgw]:
    """A Ceph RGW of its own for tests that stop and restart the gateway: the suite's RGW
    keeps serving every other test meanwhile."""
    with started_rgw(tmp_path_factory.mktemp("rgw-outage")) as r:
        yield r


class ServerPool:
    """The `server` fixture's servers: one per kind and test process, started when a test first
    asks for its kind and stopped at the end of the session. Under xdist a worker runs groups of
    several kinds one after the other; a parametrized session fixture would stop a kind's server
    at each switch and start it again for the next group of that kind."""

    def __init__(
        self, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
    ) -> None:
        self.request = request
        self.tmp_path_factory = tmp_path_factory
        self.servers: dict[str, ServerProcess] = {}
        self.stack = contextlib.ExitStack()

    def get(self, kind: str) -> ServerProcess:
        if kind not in self.servers:
            self.servers[kind] = self._start(kind)
        return self.servers[kind]

    def _start(self, kind: str) -> ServerProcess:
        db_kind, _, store = kind.partition("-")
        folder = self.tmp_path_factory.mktemp(f"server-{kind}")
        url = self.stack.enter_context(database(db_kind, folder))
        if store == "rgw":
            rgw: Rgw = self.request.getfixturevalue("rgw")
            bucket = self.stack.enter_context(rgw.bucket())
            srv = s3_server(folder, url, rgw, bucket, **RGW_SERVER_SETTINGS)
            # The bucket as `storage init` leaves it (CORS for the server's own origin, where a
            # viewer page lives), so every RGW test runs on a provisioned bucket.
            init = srv.run_cli("storage", "init", check=False)
            assert init.returncode == 0, init.stdout + init.stderr
        else:
            srv = ServerProcess(data_dir=folder, database_url=url)
        if db_kind == "postgres":
            # These servers live to the end of the run, two per worker, beside the servers of
            # tests of their own: at the default pool (10 kept open) they held most of the
            # machine's 100 PostgreSQL connections ("too many clients" for other tests).
            srv.extra_env["APP_DATABASE__POOL_SIZE"] = str(POOL_SERVER_DB_POOL)
        srv.start()
        self.stack.callback(srv.stop)
        return srv

    def close(self) -> None:
        # All stop at once (each stop() then waits for its own): at the end of a worker,
        # whose teardown the whole run waits for when it is the last.
        for srv in self.servers.values():
            if srv.proc is not None and srv.proc.poll() is None:
                srv.proc.terminate()
        self.stack.close()


@pytest.fixture(scope="session")
def server_pool(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerPool]:
    pool = ServerPool(request, tmp_path_factory)
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture(scope="session")
def server(request: pytest.FixtureRequest, server_pool: ServerPool) -> ServerProcess:
    """The app over real HTTP on a free port: SQLite or PostgreSQL, local store or Ceph RGW
    (with a bucket of its own). Shared by every test of that kind in the test process."""
    return server_pool.get(request.param)


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


# ---- in-process apps (httpx over ASGITransport on SQLite + the local store, a FakeClock) ----


@pytest.fixture(scope="session")
def migrated_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder with the database migrated once; in-process apps start on copies."""
    folder = tmp_path_factory.mktemp("migrated")
    migrate(folder)
    return folder


@pytest.fixture
async def make_app(tmp_path: Path, migrated_data_dir: Path) -> AsyncIterator[AppFactory]:
    """make_app(clock=None, **sections) → a started in-process app with those settings
    overridden; its `clock` is a FakeClock the test advances."""
    apps = Apps(tmp_path, migrated_data_dir)
    yield apps.start
    await apps.stop()


@pytest.fixture(scope="module")
async def inproc(
    tmp_path_factory: pytest.TempPathFactory, migrated_data_dir: Path
) -> AsyncIterator[InProcess]:
    """An in-process app with the default settings, shared by a module's tests."""
    apps = Apps(tmp_path_factory.mktemp("inproc"), migrated_data_dir)
    yield await apps.start()
    await apps.stop()


@pytest.fixture
async def alice_client(inproc: InProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with inproc.client("alice") as c:
        yield c


@pytest.fixture
async def bob_client(inproc: InProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with inproc.client("bob") as c:
        yield c


@pytest.fixture
async def admin_client(inproc: InProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with inproc.client("root", admin=True) as c:
        yield c
