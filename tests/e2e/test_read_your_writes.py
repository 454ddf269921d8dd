"""A client that gets 201 must be able to read what it created with its very next request:
the request's transaction commits before the response is sent, not after."""

from __future__ import annotations

import httpx

from fixtures.factories import create_annotation


def test_created_rows_are_visible_to_the_next_request(alice: httpx.Client) -> None:
    for i in range(25):
        a = create_annotation(alice, description=f"ryw-{i}")
        r = alice.get(f"/api/annotations/{a['id']}")
        assert r.status_code == 200, (i, r.text)
        g = alice.post(f"/api/annotations/{a['id']}/mask-groups", json={"group_name": "g"})
        assert g.status_code == 201
        assert (
            alice.get(f"/api/annotations/{a['id']}/mask-groups/{g.json()['id']}").status_code == 200
        )
