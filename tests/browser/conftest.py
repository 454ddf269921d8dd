"""Headless Chromium (Debian's /usr/bin/chromium, driven by Playwright; no browser download)
and the storage backends the viewer page is tested against.

The target follows the `server` kind: "sqlite" and "postgres" are the embedded local store
(same origin as the page, so no CORS); "postgres-rgw" is Ceph RGW on a bucket provisioned by
`storage init`, whose CORS allows the page's origin only (see ViewerTarget).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, Playwright, async_playwright

from fixtures.browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, ViewerTarget
from fixtures.server import ServerProcess


@pytest.fixture
def viewer_target(server: ServerProcess) -> ViewerTarget:
    return ViewerTarget.of(server)


# The async API on the suite's session event loop: the sync API would keep a loop running in
# the main thread, which breaks asyncio.run() in other fixtures and the async tests.
@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def playwright_driver() -> AsyncIterator[Playwright]:
    async with async_playwright() as p:
        yield p


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser(playwright_driver: Playwright) -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: scripts/test.sh installs Debian's chromium")
    b = await playwright_driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield b
    await b.close()


@pytest_asyncio.fixture(loop_scope="session")
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 1000})
    pg = await context.new_page()
    pg.set_default_timeout(20_000)
    yield pg
    await context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
