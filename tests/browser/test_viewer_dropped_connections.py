"""The /viewer page loses no request to a connection closed under it (issue 17): a request
safe to repeat that got no answer at all (a network error) is sent once more.

Fault injection with Playwright's routing: group creation and `complete` reach the server,
which does the work, and the browser is then told the connection failed (the answer is
lost); the first PUT of each file fails before it leaves. Exactly one group must result.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from playwright.async_api import Page, Route, expect

from fixtures.browser import ViewerTarget
from fixtures.images import write_png_masks
from fixtures.viewer_page import create_annotation, sign_in

pytestmark = pytest.mark.server_kinds("sqlite")


async def test_requests_without_an_answer_are_sent_once_more(
    page: Page, viewer_target: ViewerTarget, tmp_path: Path
) -> None:
    paths = write_png_masks(tmp_path / "pngs", 2, ("liver",))
    await sign_in(page, viewer_target)
    annotation_id = await create_annotation(page, "1.2.840.10008.79", "dropped connections")
    groups_path = f"/api/annotations/{annotation_id}/mask-groups"
    seen: Counter[str] = Counter()
    keys: list[str | None] = []
    failed: set[str] = set()

    async def lose_first_answer(route: Route) -> None:
        request = route.request
        path = request.url.split(viewer_target.server.url, 1)[1].split("?")[0]
        kind = (
            "create"
            if request.method == "POST" and path == groups_path
            else "complete"
            if request.method == "POST" and path.endswith("/complete")
            else "put"
            if request.method == "PUT"
            else None
        )
        if kind is None:
            await route.continue_()
            return
        seen[kind] += 1
        if kind == "create":
            keys.append(await request.header_value("idempotency-key"))
        # The first request of its kind (of each file, for the PUTs) gets no answer.
        target = path if kind == "put" else kind
        first = target not in failed
        failed.add(target)
        if not first:
            await route.continue_()
        elif kind == "put":
            await route.abort("connectionreset")  # never left
        else:
            await route.fetch()  # the server does the work...
            await route.abort("connectionreset")  # ...and the answer is lost

    await page.route(f"{viewer_target.server.url}/**", lose_first_answer)
    await page.set_input_files("#file-input", [str(p) for p in paths])
    await expect(page.locator("#file-table tbody tr")).to_have_count(2)
    await page.click("#upload-button")
    await expect(page.locator(".message.info").first).to_contain_text("complete: 2 masks")

    assert seen == {"create": 2, "complete": 2, "put": 4}
    # The same key both times: the server answered the second with the group of the first.
    assert keys[0]
    assert keys == [keys[0], keys[0]]
    with viewer_target.server.client("alice") as api:
        groups = api.get(groups_path).json()["items"]
        assert [(g["status"], g["mask_count"]) for g in groups] == [("complete", 2)]
