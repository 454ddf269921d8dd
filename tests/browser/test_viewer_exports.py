"""The /viewer page lists a group's DICOM SEG exports with a working download link."""

from __future__ import annotations

import io
import time

import httpx
import pydicom
from playwright.async_api import Page, expect

from fixtures.browser import ViewerTarget
from fixtures.dicom import Series
from fixtures.orthanc import ct, orthanc, seg_server
from fixtures.seg_groups import complete_group
from fixtures.server import ServerProcess
from fixtures.viewer_page import sign_in

__all__ = ["ct", "orthanc", "seg_server"]


def _export(server: ServerProcess, annotation: int, group: int) -> dict[str, object]:
    path = f"/api/annotations/{annotation}/mask-groups/{group}/exports"
    with server.client("alice") as api:
        state = api.post(path, json={"segmentation_type": "BINARY"}).json()
        deadline = time.monotonic() + 60
        while state["status"] not in ("succeeded", "failed") and time.monotonic() < deadline:
            time.sleep(0.1)
            state = api.get(f"{path}/{state['id']}").json()
    assert state["status"] == "succeeded", state
    return state


async def test_viewer_lists_exports_with_a_download_link(
    page: Page, seg_server: ServerProcess, ct: Series
) -> None:
    annotation, group = complete_group(seg_server, ct, name="viewer organs")
    state = _export(seg_server, annotation, group)
    await sign_in(page, ViewerTarget.of(seg_server))
    await page.select_option("#annotation-select", str(annotation))
    row = page.locator(f"#groups-table tbody tr[data-group-id='{group}']")
    await row.locator("button").click()
    item = page.locator(f"#exports li[data-export-id='{state['id']}']")
    await expect(item).to_contain_text("DICOM SEG")
    await expect(item).to_contain_text("BINARY")
    link = item.locator("a")
    await expect(link).to_have_text("download .dcm")
    href = await link.get_attribute("href")
    assert href
    response = httpx.get(href, timeout=30)
    assert response.status_code == 200
    assert pydicom.dcmread(io.BytesIO(response.content)).Modality == "SEG"
