"""Headless Chromium (Debian's /usr/bin/chromium, driven by Playwright; no browser download)
and the storage backends the viewer page is tested against.

Backends: "local" (the embedded store: same origin as the page, so no CORS). To add Ceph RGW
once the S3 backend lands, append "rgw" to BACKENDS and build its ViewerTarget below from a
server started with provider=s3 against scripts/rgw.sh's gateway; `cross_origin` then tells
tests that PUTs leave the page's origin, and `disallowed_origin` names an origin that
`storage init` did not allow, for the CORS-refusal test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, Playwright, async_playwright

from fixtures.browser import ARTIFACTS, BACKENDS, CHROMIUM, CHROMIUM_ARGS, ViewerTarget
from fixtures.server import ServerProcess


@pytest.fixture(params=BACKENDS)
def viewer_target(request: pytest.FixtureRequest, server: ServerProcess) -> ViewerTarget:
    """`server` (local store, SQLite and PostgreSQL) is the local target; an RGW target
    would start its own server with provider=s3, on the same database kind."""
    if request.param == "local":
        return ViewerTarget("local", server)
    raise NotImplementedError(f"no viewer target for backend {request.param!r} yet")


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
