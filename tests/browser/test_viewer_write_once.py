"""The /viewer page treats a 412 on a (retried) PUT as "already stored": storage is write-once
(issue 12 item 3), and `complete` verifies what is stored."""

from __future__ import annotations

import base64
import hashlib

import pytest
from playwright.async_api import Page

from fixtures.browser import ViewerTarget
from fixtures.factories import group_url
from fixtures.viewer_page import sign_in

pytestmark = pytest.mark.server_kinds("sqlite", "postgres-rgw")

PUT_AGAIN = """async ([target, bytes]) => {
  const blob = new Blob([new Uint8Array(bytes)], {type: target.headers["Content-Type"]});
  try { await PacsViewer.put(blob, target, () => {}); return "stored"; }
  catch (e) { return String(e.message); }
}"""


async def test_a_retried_put_answered_412_counts_as_stored(
    page: Page, viewer_target: ViewerTarget
) -> None:
    body = b"\x89PNG\r\n\x1a\n" + b"w" * 200
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    with viewer_target.server.client("alice") as api:
        annotation = api.post("/api/annotations", json={"study_instance_uid": "1.2.3"}).json()
        r = api.post(
            f"/api/annotations/{annotation['id']}/mask-groups",
            json={"files": [{"filename": "0001_liver.png", "size": len(body), "md5": md5}]},
        )
        assert r.status_code == 201, r.text
        group = r.json()
        (target,) = group["uploads"]
    await sign_in(page, viewer_target)
    # The first PUT stored the file but its answer was lost; the page sends it again.
    assert await page.evaluate(PUT_AGAIN, [target, list(body)]) == "stored"
    assert await page.evaluate(PUT_AGAIN, [target, list(body)]) == "stored"
    with viewer_target.server.client("alice") as api:
        done = api.post(f"{group_url(annotation['id'], group['id'])}/complete")
        assert done.status_code == 200, done.text
