"""The /viewer page in real headless Chromium: a person's upload from start to preview, the
browser's MD5, and failures shown as readable messages on the page."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page, Route, expect

from fixtures.browser import ViewerTarget
from fixtures.images import write_png_masks
from fixtures.server import make_token
from fixtures.viewer_page import ALL_PREVIEWS_LOADED, create_annotation, sign_in


async def test_upload_through_the_page(
    page: Page, viewer_target: ViewerTarget, tmp_path: Path, artifacts: Path
) -> None:
    paths = write_png_masks(tmp_path / "pngs", 6, ("liver", "spleen"))
    await sign_in(page, viewer_target)
    annotation_id = await create_annotation(page, "1.2.840.10008.77", "liver CT (browser)")
    await page.fill("#group-name", "browser-upload")
    await page.fill("#model-name", "TotalSegmentator")
    await page.set_input_files("#file-input", [str(p) for p in paths])
    rows = page.locator("#file-table tbody tr")
    await expect(rows).to_have_count(12)
    first = page.locator("#file-table tbody tr[data-name='0001_liver.png'] td")
    await expect(first.nth(1)).to_have_text("1")
    await expect(first.nth(2)).to_have_text("liver")

    put_origins: set[str] = set()
    page.on(
        "requestfinished",
        lambda r: put_origins.add(r.url.split("/", 3)[2]) if r.method == "PUT" else None,
    )
    await page.click("#upload-button")
    await expect(page.locator(".message.info").first).to_contain_text("complete: 12 masks")
    # Straight to storage (on RGW: another origin, which its CORS lets this page reach).
    assert put_origins == {viewer_target.storage_origin.split("/", 3)[2]}
    await expect(page.locator("#file-table tbody tr[data-status='done']")).to_have_count(12)
    await expect(page.locator("#overall-text")).to_contain_text("12/12 files")
    group_row = page.locator("#groups-table tbody tr").first
    await expect(group_row).to_contain_text("browser-upload")
    await expect(group_row).to_contain_text("complete")
    await page.wait_for_function(ALL_PREVIEWS_LOADED)
    await expect(page.locator("#preview figure")).to_have_count(12)
    await expect(page.locator("#preview figure.broken")).to_have_count(0)
    await expect(page.locator("#preview figcaption").first).to_have_text("slice 1 · liver")
    await page.screenshot(
        path=str(artifacts / f"viewer-upload-{viewer_target.name}.png"), full_page=True
    )

    # What the page stored is exactly what was on disk.
    group_id = int(await group_row.get_attribute("data-group-id") or 0)
    with viewer_target.server.client("alice") as api:
        base = f"/api/annotations/{annotation_id}/mask-groups/{group_id}"
        group = api.get(base).json()
        assert (group["status"], group["mask_count"], group["model_name"]) == (
            "complete",
            12,
            "TotalSegmentator",
        )
        masks = api.get(f"{base}/masks", params={"limit": 100}).json()["items"]
        by_name = {p.name: p.read_bytes() for p in paths}
        for m in masks:
            url = api.get(f"{base}/masks/{m['id']}/download-url").json()["url"]
            assert httpx.get(url).content == by_name[m["filename"]]
            slice_index, label = int(m["filename"][:4]), m["filename"][5:-4]
            assert (m["slice_index"], m["label_name"]) == (slice_index, label)


# The browser's arithmetic does not depend on the storage or the database.
@pytest.mark.server_kinds("sqlite")
async def test_md5_in_the_browser_matches_hashlib(page: Page, viewer_target: ViewerTarget) -> None:
    await page.goto(viewer_target.page_url)
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")
    for size in (0, 1, 55, 56, 63, 64, 65, 1000, 65_537, 3 * 1024 * 1024 + 5):
        data = os.urandom(size)
        got = await page.evaluate(
            """async ([b64, step]) => {
                const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
                const h = await hashwasm.createMD5();
                h.init();
                for (let i = 0; i < bytes.length; i += step) h.update(bytes.subarray(i, i + step));
                return btoa(String.fromCharCode(...h.digest("binary")));
            }""",
            [base64.b64encode(data).decode(), 1 + size % 97],
        )
        assert got == base64.b64encode(hashlib.md5(data).digest()).decode(), size


# What the upload sends as Content-MD5: the page's own md5Base64 of a File, read in 4 MiB
# slices (HASH_CHUNK in viewer-common.js), under the page's CSP (WebAssembly allowed).
@pytest.mark.server_kinds("sqlite")
async def test_the_pages_md5_of_a_file_is_hashlibs(page: Page, viewer_target: ViewerTarget) -> None:
    await page.goto(viewer_target.page_url)
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")
    hash_chunk = 4 * 1024 * 1024
    files = {
        "empty": b"",
        "small": os.urandom(20 * 1024),  # a PNG mask's size
        "multi-chunk": os.urandom(2 * hash_chunk + 12_345),  # three slices
    }
    for name, data in files.items():
        got = await page.evaluate(
            """async ([b64, name]) => {
                const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
                const file = new File([bytes], name + ".png", { type: "image/png" });
                return window.PacsViewer.md5Base64(file);
            }""",
            [base64.b64encode(data).decode(), name],
        )
        assert got == base64.b64encode(hashlib.md5(data).digest()).decode(), name


# On RGW too: there the PUTs leave the page's origin.
@pytest.mark.server_kinds("sqlite", "postgres-rgw")
async def test_a_failed_put_is_shown_and_can_be_retried(
    page: Page, viewer_target: ViewerTarget, tmp_path: Path, artifacts: Path
) -> None:
    paths = write_png_masks(tmp_path / "pngs", 2, ("liver",))
    await sign_in(page, viewer_target)
    annotation_id = await create_annotation(page, "1.2.840.10008.78", "failing PUT")

    # Drop the files onto the page, as a person would.
    await page.evaluate(
        """(files) => {
            const dt = new DataTransfer();
            for (const [name, b64] of files) {
                const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
                dt.items.add(new File([bytes], name, { type: "image/png" }));
            }
            document.querySelector('#dropzone').dispatchEvent(
                new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
        }""",
        [[p.name, base64.b64encode(p.read_bytes()).decode()] for p in paths],
    )
    await expect(page.locator("#file-table tbody tr")).to_have_count(2)

    # Fault injection: the browser loses every PUT to storage, as when CORS blocks it.
    async def block_puts(route: Route) -> None:
        if route.request.method == "PUT":
            await route.abort("failed")
        else:
            await route.continue_()

    await page.route(viewer_target.storage_glob, block_puts)
    await page.click("#upload-button")
    alert = page.locator(".message.error").first
    await expect(alert).to_contain_text("2 of 2 file(s) failed to upload")
    await expect(alert).to_contain_text("blocked by CORS")
    await expect(alert).to_contain_text(f"storage must allow PUT from {viewer_target.server.url}")
    await expect(page.locator("#file-table tbody tr[data-status='failed']")).to_have_count(2)
    await expect(page.locator("#upload-button")).to_have_text("Retry failed files")
    shot = artifacts / f"viewer-put-failed-{viewer_target.name}.png"
    await page.screenshot(path=str(shot), full_page=True)
    with viewer_target.server.client("alice") as api:
        groups = api.get(f"/api/annotations/{annotation_id}/mask-groups").json()["items"]
        assert [g["status"] for g in groups] == ["pending"]

    await page.unroute(viewer_target.storage_glob)
    await page.click("#upload-button")
    await expect(page.locator(".message.info").first).to_contain_text("complete: 2 masks")
    await page.wait_for_function(ALL_PREVIEWS_LOADED)
    with viewer_target.server.client("alice") as api:
        groups = api.get(f"/api/annotations/{annotation_id}/mask-groups").json()["items"]
        assert [g["status"] for g in groups] == ["complete"]  # the same group, completed


@pytest.mark.server_kinds("sqlite")
async def test_a_bad_token_is_a_readable_message(page: Page, viewer_target: ViewerTarget) -> None:
    await page.goto(viewer_target.page_url)
    await page.fill("#token", "a.b.c")
    await page.click("#save-token")
    await expect(page.locator(".message.error").first).to_contain_text("does not look like a JWT")
    await page.fill("#token", make_token("alice")[:-4] + "AAAA")
    await page.click("#save-token")
    await expect(page.locator(".message.error").first).to_contain_text("401 Unauthorized")
    assert await page.locator("#whoami").inner_text() == "not signed in"


@pytest.mark.server_kinds("sqlite")
async def test_the_page_is_served_with_protective_headers(viewer_target: ViewerTarget) -> None:
    r = httpx.get(viewer_target.page_url)
    assert r.status_code == 200
    csp = dict(d.strip().split(" ", 1) for d in r.headers["content-security-policy"].split(";"))
    # Only the page's own scripts; WebAssembly (the MD5) may compile, JS eval may not.
    assert csp["script-src"].split() == ["'self'", "'wasm-unsafe-eval'"]
    assert r.headers["referrer-policy"] == "no-referrer"
    js = httpx.get(f"{viewer_target.server.url}/viewer/assets/viewer.js")
    assert js.status_code == 200
    assert "javascript" in js.headers["content-type"]
