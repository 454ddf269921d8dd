"""Tombstone retention on the app's clock: a DELETE retried after its answer was lost answers
204 while the tombstone lasts (`janitor.tombstone_retention_seconds`), and 404 once the clock
passes it, even before the janitor has removed the tombstone."""

from __future__ import annotations

from fixtures.factories import make_masks
from fixtures.inprocess import AppFactory

RETENTION = 3600


async def test_a_retried_delete_is_204_within_the_retention_and_404_after(
    make_app: AppFactory,
) -> None:
    app = await make_app(janitor={"tombstone_retention_seconds": RETENTION})
    async with app.client() as c:
        r = await c.post("/api/annotations", json={"study_instance_uid": "1.2.3"})
        aid = r.json()["id"]
        body = {"files": [m.spec() for m in make_masks(1)]}
        gid = (await c.post(f"/api/annotations/{aid}/mask-groups", json=body)).json()["id"]
        group = f"/api/annotations/{aid}/mask-groups/{gid}"
        annotation = f"/api/annotations/{aid}"

        assert (await c.delete(group)).status_code == 204
        app.clock.advance(RETENTION - 1)
        assert (await c.delete(group)).status_code == 204
        assert (await c.delete(annotation)).status_code == 204
        app.clock.advance(2)  # the group's tombstone is past retention, the annotation's not
        assert (await c.delete(group)).status_code == 404
        assert (await c.delete(annotation)).status_code == 204
        app.clock.advance(RETENTION)
        assert (await c.delete(annotation)).status_code == 404
