"""/metrics behind an optional bearer token and on an optional listener of its own
(issue 12, item 7)."""

from __future__ import annotations

import httpx

from fixtures.inprocess import AppFactory
from fixtures.server import free_port

TOKEN = "scrape-" + "t" * 40


async def test_metrics_token_is_required_when_set(make_app: AppFactory) -> None:
    app = await make_app(metrics={"token": TOKEN})
    async with app.anonymous() as c:
        r = await c.get("/metrics")
        assert r.status_code == 401, r.text
        assert r.json()["error"] == "Unauthorized"
        r = await c.get("/metrics", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401
        r = await c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200
        assert "pacs_http_requests_total" in r.text
        assert (await c.get("/health")).status_code == 200  # nothing else needs it


async def test_metrics_without_a_token_stay_open(make_app: AppFactory) -> None:
    app = await make_app()
    async with app.anonymous() as c:
        assert (await c.get("/metrics")).status_code == 200


async def test_metrics_on_a_listener_of_their_own(make_app: AppFactory) -> None:
    port = free_port()
    app = await make_app(metrics={"host": "127.0.0.1", "port": port, "token": TOKEN})
    async with app.anonymous() as c:
        r = await c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 404, r.text  # not on the API's listener
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
        assert (await c.get("/metrics")).status_code == 401
        r = await c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200, r.text
        assert "pacs_build_info" in r.text
        assert (await c.get("/api/annotations")).status_code == 404  # metrics only
