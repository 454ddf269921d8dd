"""`complete` lists storage without holding the group's lock or a database connection
(docs/scaling.md, "Latency under load"). A request that changes the group in that window —
a re-declaration with other bytes, a delete, another complete — must leave the group in a
state its storage agrees with. The window is held open by a pause after the listing (the
storage's `list_prefix`, wrapped by the test), never by sleeping."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from fixtures.factories import MaskFile, make_masks
from fixtures.inprocess import AppFactory, InProcess
from pacs_ext.storage.base import ObjectInfo


class ListingPause:
    """Holds the next listing of the app's storage after its last object until released."""

    def __init__(self, app: InProcess) -> None:
        self.storage = app.app.state.storage
        self.listed = asyncio.Event()
        self.go_on = asyncio.Event()
        real = self.storage.list_prefix

        async def paused(prefix: str) -> AsyncIterator[ObjectInfo]:
            async for info in real(prefix):
                yield info
            if not self.listed.is_set():
                self.listed.set()
                await self.go_on.wait()

        self.storage.list_prefix = paused


async def _put(c: httpx.AsyncClient, target: dict[str, Any], body: bytes) -> None:
    r = await c.put(target["url"], content=body, headers=target["headers"])
    assert r.status_code == 200, r.text


async def _uploaded_group(c: httpx.AsyncClient, masks: list[MaskFile]) -> str:
    r = await c.post("/api/annotations", json={"study_instance_uid": "1.2.3"})
    aid = r.json()["id"]
    r = await c.post(
        f"/api/annotations/{aid}/mask-groups", json={"files": [m.spec() for m in masks]}
    )
    assert r.status_code == 201, r.text
    for target, mask in zip(r.json()["uploads"], masks, strict=True):
        await _put(c, target, mask.body)
    return f"/api/annotations/{aid}/mask-groups/{r.json()['id']}"


async def _in_window(
    pause: ListingPause, c: httpx.AsyncClient, base: str, other: Any
) -> tuple[httpx.Response, httpx.Response]:
    """Complete, held after its listing while `other` runs to its end; both answers."""
    completing = asyncio.create_task(c.post(f"{base}/complete"))
    await pause.listed.wait()
    # Neither a lock nor a connection is held by the complete: the other request finishes.
    second: httpx.Response = await other
    pause.go_on.set()
    return await completing, second


async def test_a_redeclaration_while_complete_lists_storage_is_not_recorded(
    make_app: AppFactory,
) -> None:
    app = await make_app()
    pause = ListingPause(app)
    masks = make_masks(2)
    async with app.client() as c:
        base = await _uploaded_group(c, masks)
        # The second file declared again with other bytes: its verified object goes.
        changed = MaskFile(masks[1].slice_index, masks[1].label_name, b"\x89PNG other bytes")
        done, declared = await _in_window(
            pause, c, base, c.post(f"{base}/upload-urls", json={"files": [changed.spec()]})
        )
        assert declared.status_code == 200, declared.text
        # The complete's listing verified the old bytes; it must not record them.
        assert done.status_code == 409, done.text
        assert [p["filename"] for p in done.json()["missing"]] == [masks[1].filename]
        group = (await c.get(base)).json()
        assert (group["status"], group["mask_count"]) == ("pending", 0)

        await _put(c, declared.json()["uploads"][0], changed.body)
        done = await c.post(f"{base}/complete")
        assert done.status_code == 200, done.text
        listed = (await c.get(f"{base}/masks")).json()["items"]
        assert sorted((m["filename"], m["md5"]) for m in listed) == sorted(
            (m.filename, m.md5) for m in (masks[0], changed)
        )


async def test_a_delete_while_complete_lists_storage_wins(make_app: AppFactory) -> None:
    app = await make_app()
    pause = ListingPause(app)
    async with app.client() as c:
        base = await _uploaded_group(c, make_masks(2))
        aid, gid = base.split("/")[3], base.split("/")[5]
        prefix = app.settings.server.data_dir / "objects" / "mask" / aid / gid
        assert len([p for p in prefix.rglob("*") if p.is_file()]) == 2
        done, deleted = await _in_window(pause, c, base, c.delete(base))
        assert deleted.status_code == 204, deleted.text
        assert done.status_code == 404, done.text
        assert (await c.get(base)).status_code == 404
        assert [p for p in prefix.rglob("*") if p.is_file()] == []  # metadata.json neither


@pytest.mark.parametrize("declared_more", [False, True])
async def test_a_second_complete_in_the_window(make_app: AppFactory, declared_more: bool) -> None:
    app = await make_app()
    pause = ListingPause(app)
    masks = make_masks(3)
    async with app.client() as c:
        base = await _uploaded_group(c, masks[:2])
        if declared_more:  # a file declared but not uploaded: both completes refuse
            r = await c.post(f"{base}/upload-urls", json={"files": [masks[2].spec()]})
            assert r.status_code == 200, r.text
        first, second = await _in_window(pause, c, base, c.post(f"{base}/complete"))
        group = (await c.get(base)).json()
        if declared_more:
            assert (first.status_code, second.status_code) == (409, 409)
            assert (group["status"], group["mask_count"]) == ("pending", 0)
        else:
            assert (first.status_code, second.status_code) == (200, 200)
            assert (group["status"], group["mask_count"]) == ("complete", 2)
