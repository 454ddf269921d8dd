"""Fixtures of the security tests: in-process apps where no real socket is needed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest

from fixtures.inprocess import AppFactory, InProcess, make_settings, migrate
from pacs_ext.app import create_app


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The app runs inside the test process here, under filterwarnings=error: SQLAlchemy 2.1's
    # deprecation of Result.tuples() (masks/repository.py) would turn into a 500, and the
    # garbage collector's warnings land on whichever test runs.
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(
                pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SADeprecationWarning")
            )
            # Now and then an aiosqlite connection of an app already shut down is collected
            # unclosed during a later test (seen once in ~150 tests; cause not found yet).
            item.add_marker(
                pytest.mark.filterwarnings(
                    "ignore:Exception ignored in. <function Connection.__del__"
                    ":pytest.PytestUnraisableExceptionWarning"
                )
            )


class _Apps:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0
        self.started: list[AbstractAsyncContextManager[Any]] = []

    async def start(self, **sections: dict[str, Any]) -> InProcess:
        self.count += 1
        data_dir = self.root / f"app{self.count}"
        data_dir.mkdir()
        migrate(data_dir)
        settings = make_settings(data_dir, **sections)
        app = create_app(settings)
        ctx = app.router.lifespan_context(app)
        await ctx.__aenter__()
        self.started.append(ctx)
        return InProcess(app, settings)

    async def stop(self) -> None:
        for ctx in reversed(self.started):
            await ctx.__aexit__(None, None, None)


@pytest.fixture
async def make_app(tmp_path: Path) -> AsyncIterator[AppFactory]:
    """make_app(**sections) → a started in-process app with those settings overridden."""
    apps = _Apps(tmp_path)
    yield apps.start
    await apps.stop()


@pytest.fixture(scope="module")
async def inproc(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[InProcess]:
    """An in-process app with the default limits, shared by a module's tests."""
    apps = _Apps(tmp_path_factory.mktemp("inproc"))
    yield await apps.start()
    await apps.stop()


@pytest.fixture
async def alice_client(inproc: InProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with inproc.client("alice") as c:
        yield c
