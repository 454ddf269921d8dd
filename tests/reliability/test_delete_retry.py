"""A DELETE retried after its answer was lost answers 204 again, as docs/operations.md promises
(issue 18, item 10): deletions leave tombstones that the janitor forgets after
`janitor.tombstone_retention_seconds`."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import asyncpg
import httpx
import pytest

from fixtures.factories import create_annotation, create_group, group_url, make_masks, put_all
from fixtures.server import ServerProcess

pytestmark = pytest.mark.server_kinds("sqlite", "postgres")


def _sql(srv: ServerProcess, statement: str) -> None:
    url = srv.database_url
    if url.startswith("sqlite"):
        with sqlite3.connect(url.split("///", 1)[1]) as conn:
            conn.execute(statement)
        return

    async def run() -> None:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def _complete_group(client: httpx.Client) -> tuple[int, str, list[dict]]:
    annotation = create_annotation(client)
    masks = make_masks(2)
    group = create_group(client, annotation["id"], masks)
    put_all(group["uploads"], masks)
    base = group_url(annotation["id"], group["id"])
    assert client.post(f"{base}/complete").status_code == 200
    return annotation["id"], base, client.get(f"{base}/masks").json()["items"]


def test_retried_deletes_answer_204(
    alice: httpx.Client, bob: httpx.Client, admin: httpx.Client
) -> None:
    annotation_id, base, masks = _complete_group(alice)

    mask_url = f"{base}/masks/{masks[0]['id']}"
    assert alice.delete(mask_url).status_code == 204
    assert alice.delete(mask_url).status_code == 204  # the retry
    assert alice.get(mask_url).status_code == 404

    assert alice.delete(base).status_code == 204
    assert alice.delete(base).status_code == 204
    assert alice.get(base).status_code == 404

    annotation_url = f"/api/annotations/{annotation_id}"
    assert alice.delete(annotation_url).status_code == 204
    assert alice.delete(annotation_url).status_code == 204
    assert admin.delete(annotation_url).status_code == 204
    # Someone else learns nothing: the same 404 as for an id that never existed.
    assert bob.delete(annotation_url).status_code == 404
    assert alice.get(annotation_url).status_code == 404


def test_a_tombstone_is_bound_to_its_parent_and_ids_never_deleted_are_404(
    alice: httpx.Client,
) -> None:
    annotation_id, base, _ = _complete_group(alice)
    other = create_annotation(alice)
    group_id = int(base.rsplit("/", 1)[1])
    assert alice.delete(base).status_code == 204
    # The same group id under another annotation was never there.
    assert alice.delete(group_url(other["id"], group_id)).status_code == 404
    assert alice.delete(group_url(annotation_id, group_id + 1000)).status_code == 404
    assert alice.delete(f"/api/annotations/{other['id'] + 1000}").status_code == 404


def test_the_janitor_forgets_tombstones_past_retention(
    alice: httpx.Client, server: ServerProcess
) -> None:
    annotation_id, _, _ = _complete_group(alice)
    annotation_url = f"/api/annotations/{annotation_id}"
    assert alice.delete(annotation_url).status_code == 204
    _sql(
        server,
        "UPDATE tombstones SET deleted_at = deleted_at - INTERVAL '2 days'"
        if server.database_url.startswith("postgresql")
        else "UPDATE tombstones SET deleted_at = datetime(deleted_at, '-2 days')",
    )
    r = server.run_cli("janitor", "--json", "--apply", check=False)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["tombstones"]["acted"] >= 1
    assert alice.delete(annotation_url).status_code == 404
