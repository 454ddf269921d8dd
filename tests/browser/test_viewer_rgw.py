"""The /viewer page against Ceph RGW, whose bucket CORS was set by `storage init` for the
server's own URL: a page at another origin cannot PUT (a readable message says why), and a
URL that expired on the way is renewed (RGW's refusal carries no CORS headers, so the page
sees a network error and tells expiry apart by the clock).

The upload from the allowed origin, with its screenshot, is test_viewer_page.py's
test_upload_through_the_page[postgres-rgw].
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from playwright.async_api import Page, Request, Route, expect

from fixtures.browser import ViewerTarget
from fixtures.images import write_png_masks
from fixtures.objects import StoredObjects
from fixtures.server import ServerProcess
from fixtures.viewer_page import ALL_PREVIEWS_LOADED, create_annotation, sign_in
from pacs_ext.core.clock import FakeClock
from pacs_ext.storage.base import UploadSpec
from pacs_ext.storage.s3.client import S3Storage

pytestmark = pytest.mark.server_kinds("postgres-rgw")


async def test_a_disallowed_origin_fails_visibly(
    page: Page,
    viewer_target: ViewerTarget,
    tmp_path: Path,
    artifacts: Path,
    objects: StoredObjects,
) -> None:
    origin = viewer_target.disallowed_origin
    assert origin is not None
    paths = write_png_masks(tmp_path / "pngs", 2, ("liver",))
    failed: list[str] = []

    def on_failed(request: Request) -> None:
        if request.method == "PUT" and request.url.startswith(viewer_target.storage_origin):
            failed.append(request.failure or "")

    page.on("requestfailed", on_failed)
    # The same server's page, reached under another name: an origin the bucket does not allow.
    await sign_in(page, viewer_target, origin=origin)
    annotation_id = await create_annotation(page, "1.2.840.10008.79", "CORS refused")
    await page.set_input_files("#file-input", [str(p) for p in paths])
    await page.click("#upload-button")

    alert = page.locator(".message.error").first
    await expect(alert).to_contain_text("2 of 2 file(s) failed to upload")
    await expect(alert).to_contain_text(
        f"could not send the file to storage ({viewer_target.storage_origin})"
    )
    await expect(alert).to_contain_text(f"blocked by CORS — storage must allow PUT from {origin}")
    await expect(page.locator("#file-table tbody tr[data-status='failed']")).to_have_count(2)
    await page.screenshot(path=str(artifacts / "viewer-cors-refused-rgw.png"), full_page=True)

    # The browser itself refused them (no storage answer to read); a PUT with no answer is
    # sent once more before the file is marked failed, so each file's PUT failed twice.
    assert len(failed) == 4
    with viewer_target.server.client("alice") as api:
        (group,) = api.get(f"/api/annotations/{annotation_id}/mask-groups").json()["items"]
    assert group["status"] == "pending"
    assert objects.keys(f"mask/{annotation_id}/") == []


def signed_an_hour_ago(server: ServerProcess, request: Request) -> str:
    """The URL the server would have signed for this PUT an hour ago (same key, same signed
    headers, the server's signer and credentials): RGW refuses it as expired, on its own
    clock, as it would once the URL had waited that long."""
    env = server.extra_env
    store = S3Storage(
        bucket=env["APP_OBJECT_STORAGE__BUCKET_NAME"],
        region=env["APP_OBJECT_STORAGE__REGION"],
        endpoint=env["APP_OBJECT_STORAGE__ENDPOINT"],
        access_key=env["APP_OBJECT_STORAGE__ACCESS_KEY"],
        secret_key=env["APP_OBJECT_STORAGE__SECRET_KEY"],
        addressing_style="path",
        clock=FakeClock(datetime.now(UTC) - timedelta(hours=1)),
    )
    body = request.post_data_buffer or b""
    key = unquote(urlsplit(request.url).path).split("/", 2)[2]  # /bucket/key
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    spec = UploadSpec(key, request.headers["content-type"], len(body), md5)
    return store.sign_upload(spec, 60).url


async def test_an_expired_url_is_renewed_by_the_page(
    page: Page, viewer_target: ViewerTarget, tmp_path: Path
) -> None:
    paths = write_png_masks(tmp_path / "pngs", 2, ("spleen",))
    await sign_in(page, viewer_target)
    annotation_id = await create_annotation(page, "1.2.840.10008.80", "expired URL")
    await page.set_input_files("#file-input", [str(p) for p in paths])

    # Fault injection: the group is created with 2-second URLs (by the page's clock they are
    # past expiry, give or take its 5 s slack), and the first PUT reaches storage after its
    # URL has expired (a real RGW refusal, without waiting: see signed_an_hour_ago).
    async def short_ttl(route: Route) -> None:
        if route.request.method != "POST":
            await route.continue_()
            return
        body = json.loads(route.request.post_data or "{}")
        await route.continue_(post_data=json.dumps({**body, "ttl_seconds": 2}))

    held: list[str] = []
    renewals: list[str] = []

    async def late_first_put(route: Route) -> None:
        request = route.request
        if request.method == "PUT" and not held:
            held.append(request.url.split("?")[0])
            # It reaches storage an hour late: the same PUT signed an hour back.
            await route.continue_(url=signed_an_hour_ago(viewer_target.server, request))
            return
        await route.continue_()

    groups = f"{viewer_target.server.url}/api/annotations/{annotation_id}/mask-groups"
    await page.route(groups, short_ttl)
    await page.route(viewer_target.storage_glob, late_first_put)
    page.on(
        "request",
        lambda r: renewals.append(r.url) if r.url.endswith("/upload-urls") else None,
    )
    await page.click("#upload-button")

    await expect(page.locator(".message.info").first).to_contain_text("complete: 2 masks")
    await expect(page.locator("#file-table tbody tr[data-status='done']")).to_have_count(2)
    await page.wait_for_function(ALL_PREVIEWS_LOADED)
    assert len(held) == 1
    # The held file's URL was renewed (on a slow machine the other one may have been too).
    assert len(renewals) >= 1
