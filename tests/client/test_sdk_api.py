"""PacsClient against the running app over real HTTP: every route, typed answers, errors."""

from __future__ import annotations

import pytest

from fixtures.factories import make_masks
from fixtures.server import ServerProcess, free_port, make_token
from pacs_ext.client import (
    ApiError,
    IncompleteUpload,
    PacsClient,
    RetryPolicy,
    ServerUnreachable,
)
from pacs_ext.masks.schemas import MaskGroupCreated


async def test_annotations_round_trip(server: ServerProcess) -> None:
    async with PacsClient(server.url, make_token("alice")) as c:
        assert (await c.health())["status"] == "ok"
        a = await c.create_annotation(
            "1.2.3.100", series_instance_uid="1.2.3.101", data={"k": 1}, viewer_software="sdk"
        )
        assert a.owner == "alice"
        assert (await c.get_annotation(a.id)).data == {"k": 1}
        page = await c.list_annotations(study_instance_uid="1.2.3.100", limit=5)
        assert [x.id for x in page.items] == [a.id]
        assert page.total == 1
        updated = await c.update_annotation(a.id, description="reviewed", is_shared=True)
        assert (updated.description, updated.is_shared) == ("reviewed", True)
        await c.delete_annotation(a.id)
        with pytest.raises(ApiError) as err:
            await c.get_annotation(a.id)
        assert err.value.status_code == 404
        assert err.value.error == "NotFound"


async def test_mask_group_routes(server: ServerProcess) -> None:
    masks = make_masks(5, size=1000)
    async with PacsClient(server.url, make_token("alice")) as c:
        a = await c.create_annotation("1.2.3.200")
        created = await c.create_group(
            a.id, [m.spec() for m in masks[:4]], group_name="g", modality="CT", ttl_seconds=120
        )
        assert isinstance(created, MaskGroupCreated)
        assert created.status == "pending"
        assert {u.filename for u in created.uploads} == {m.filename for m in masks[:4]}
        (extra,) = await c.upload_urls(a.id, created.id, [masks[4].spec()])
        assert extra.filename == masks[4].filename
        targets = [*created.uploads, extra]
        by_name = {m.filename: m for m in masks}

        for t in targets[:3]:
            assert t.url is not None
            r = await c.storage.put(t.url, content=by_name[t.filename].body, headers=t.headers)
            assert r.status_code == 200
        with pytest.raises(IncompleteUpload) as err:
            await c.complete(a.id, created.id)
        assert err.value.status_code == 409
        assert sorted(err.value.missing) == sorted(t.filename for t in targets[3:])
        for t in targets[3:]:
            assert t.url is not None
            await c.storage.put(t.url, content=by_name[t.filename].body, headers=t.headers)
        done = await c.complete(a.id, created.id)
        assert (done.status, done.mask_count) == ("complete", 5)
        assert (await c.complete(a.id, created.id)).status == "complete"  # idempotent

        groups = await c.list_groups(a.id)
        assert [g.id for g in groups.items] == [created.id]
        assert (await c.get_group(a.id, created.id)).total_bytes == sum(len(m.body) for m in masks)
        assert (await c.update_group(a.id, created.id, description="d")).description == "d"

        livers = await c.list_masks(a.id, created.id, label_name="liver")
        assert {m.label_name for m in livers.items} == {"liver"}
        every = [m async for m in c.iter_masks(a.id, created.id, page_size=2)]
        assert len(every) == 5
        one = await c.get_mask(a.id, created.id, every[0].id)
        assert one.md5 == by_name[one.filename].md5
        assert await c.read_mask(a.id, created.id, one.id) == by_name[one.filename].body
        signed = await c.download_url(a.id, created.id, one.id, ttl_seconds=30, attachment=True)
        got = await c.storage.get(signed.url)
        assert got.headers["content-disposition"].startswith("attachment")
        r = await c.http.get(c.content_url(a.id, created.id, one.id))
        assert r.status_code == 307

        await c.delete_mask(a.id, created.id, one.id)
        assert (await c.get_group(a.id, created.id)).mask_count == 4
        await c.delete_group(a.id, created.id)
        assert (await c.list_groups(a.id)).total == 0


async def test_errors_are_typed_and_readable(server: ServerProcess) -> None:
    async with PacsClient(server.url, "not-a-jwt") as c:
        with pytest.raises(ApiError) as err:
            await c.list_annotations()
        assert err.value.status_code == 401
        assert "invalid token" in str(err.value)
    async with PacsClient(server.url, make_token("alice")) as c:
        with pytest.raises(ApiError) as err:
            await c.create_annotation("not a uid")
        assert err.value.status_code == 422
        assert "study_instance_uid" in str(err.value.detail)
        a = await c.create_annotation("1.2.3.300")
        with pytest.raises(ApiError) as err:
            await c.get_group(a.id, 999_999)
        assert err.value.status_code == 404
    async with PacsClient(server.url, make_token("bob")) as c:
        with pytest.raises(ApiError) as err:
            await c.create_group(a.id, [])
        assert err.value.status_code in (403, 404)


async def test_unreachable_server_is_one_clear_error() -> None:
    policy = RetryPolicy(attempts=2, base_delay=0.01)
    async with PacsClient(f"http://127.0.0.1:{free_port()}", "t", retry=policy) as c:
        with pytest.raises(ServerUnreachable) as err:
            await c.health()
    assert "cannot reach the server" in str(err.value)


def test_client_refuses_a_url_without_scheme() -> None:
    with pytest.raises(ValueError, match="http"):
        PacsClient("127.0.0.1:8000", "t")
