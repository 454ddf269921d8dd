"""Time-driven behaviour on an in-process app (SQLite + local store) with a FakeClock: signed
URLs expire and the janitor expires abandoned groups when the test moves the clock, without
sleeping. Signed PUTs and GETs go through the same in-process transport as the API calls."""

from __future__ import annotations

import httpx

from fixtures.factories import MaskFile, png_like
from fixtures.inprocess import AppFactory, InProcess
from pacs_ext.janitor.service import run as run_janitor

MASKS = [MaskFile(1, "liver", png_like(3000, 1)), MaskFile(2, "liver", png_like(3000, 2))]


async def _group(c: httpx.AsyncClient, ttl: int) -> tuple[int, dict]:
    r = await c.post("/api/annotations", json={"study_instance_uid": "1.2.3"})
    assert r.status_code == 201, r.text
    aid = int(r.json()["id"])
    body = {"group_name": "seg", "files": [m.spec() for m in MASKS], "ttl_seconds": ttl}
    r = await c.post(f"/api/annotations/{aid}/mask-groups", json=body)
    assert r.status_code == 201, r.text
    return aid, dict(r.json())


async def _put(c: httpx.AsyncClient, target: dict) -> httpx.Response:
    body = {m.filename: m.body for m in MASKS}[target["filename"]]
    return await c.put(target["url"], content=body, headers=target["headers"])


async def test_an_upload_url_is_refused_once_the_clock_passes_its_expiry(
    make_app: AppFactory,
) -> None:
    app: InProcess = await make_app()
    async with app.client() as c:
        _, group = await _group(c, ttl=60)
        first, second = group["uploads"]
        app.clock.advance(59)
        assert (await _put(c, first)).status_code == 200
        app.clock.advance(2)
        late = await _put(c, second)
        assert late.status_code == 403, late.text
        assert "expired" in late.json()["detail"]


async def test_a_download_url_expires_with_the_clock(make_app: AppFactory) -> None:
    app: InProcess = await make_app()
    async with app.client() as c:
        aid, group = await _group(c, ttl=600)
        for target in group["uploads"]:
            assert (await _put(c, target)).status_code == 200
        base = f"/api/annotations/{aid}/mask-groups/{group['id']}"
        assert (await c.post(f"{base}/complete")).status_code == 200
        mask_id = (await c.get(f"{base}/masks")).json()["items"][0]["id"]
        r = await c.get(f"{base}/masks/{mask_id}/download-url", params={"ttl_seconds": 30})
        url = r.json()["url"]
        assert (await c.get(url)).status_code == 200
        app.clock.advance(31)
        assert (await c.get(url)).status_code == 403


async def test_the_janitor_expires_an_abandoned_group_after_its_grace(
    make_app: AppFactory,
) -> None:
    app: InProcess = await make_app()
    grace = app.settings.janitor.grace_seconds
    async with app.client() as c:
        aid, group = await _group(c, ttl=60)
        assert (await _put(c, group["uploads"][0])).status_code == 200
        state = app.app.state

        async def janitor() -> int:
            report = await run_janitor(
                state.sessionmaker, state.storage, app.settings, apply=True, clock=app.clock
            )
            return report.expired_groups.acted

        app.clock.advance(61)  # URLs expired, still within the grace period
        assert await janitor() == 0
        app.clock.advance(grace)
        assert await janitor() == 1
        r = await c.get(f"/api/annotations/{aid}/mask-groups/{group['id']}")
        assert r.json()["status"] == "expired"
        assert (
            await c.post(f"/api/annotations/{aid}/mask-groups/{group['id']}/complete")
        ).status_code == 409
