"""The SDK never loses a request to a connection closed under it (issue 17).

A TCP proxy between the SDK and the real server lets the request through and cuts the
connection when the answer comes back: the server did the work, the SDK saw nothing. A request
that is safe to repeat is sent again at once, exactly once, on a new connection; one that is
not (creating an annotation) is reported, never silently sent twice. The retry policy is off
(one attempt), so what is seen is the connection-level retry alone.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fixtures.factories import make_masks
from fixtures.server import ServerProcess, make_token
from fixtures.tcp_proxy import TcpProxy
from pacs_ext.client import PacsClient, RetryPolicy, ServerUnreachable

pytestmark = pytest.mark.server_kinds("sqlite")


@pytest.fixture
def proxy(server: ServerProcess) -> Iterator[TcpProxy]:
    p = TcpProxy(("127.0.0.1", server.port)).start()
    try:
        yield p
    finally:
        p.stop()


def _client(proxy: TcpProxy, subject: str) -> PacsClient:
    # Idle connections kept long enough that only the drops open new ones, however slow the
    # machine: the tests count connections.
    return PacsClient(
        f"http://127.0.0.1:{proxy.port}",
        make_token(subject),
        retry=RetryPolicy(attempts=1),
        keepalive_expiry=60,
    )


async def test_group_creation_whose_answer_is_lost_is_sent_once_more_and_creates_one_group(
    proxy: TcpProxy,
) -> None:
    masks = make_masks(3)
    async with _client(proxy, "retry-group") as c:
        annotation = await c.create_annotation("1.2.3.17.1")  # opens the connection
        assert proxy.accepted == 1
        proxy.drop_next_answer()
        created = await c.create_group(annotation.id, [m.spec() for m in masks])
        # One new connection for the one retry; the Idempotency-Key made the server answer
        # with the group the lost attempt had created.
        assert proxy.accepted == 2
        groups = await c.list_groups(annotation.id)
        assert [g.id for g in groups.items] == [created.id]
        assert {u.filename for u in created.uploads} == {m.filename for m in masks}


async def test_complete_and_get_whose_answer_is_lost_are_sent_once_more(
    proxy: TcpProxy,
) -> None:
    masks = make_masks(2)
    async with _client(proxy, "retry-complete") as c:
        annotation = await c.create_annotation("1.2.3.17.2")
        created = await c.create_group(annotation.id, [m.spec() for m in masks])
        by_name = {m.filename: m.body for m in masks}
        for t in created.uploads:
            assert t.url is not None
            r = await c.storage.put(t.url, content=by_name[t.filename], headers=t.headers)
            assert r.status_code == 200
        before = proxy.accepted
        proxy.drop_next_answer()
        done = await c.complete(annotation.id, created.id)
        assert done.status == "complete"
        assert proxy.accepted == before + 1
        proxy.drop_next_answer()
        assert (await c.get_group(annotation.id, created.id)).mask_count == 2
        assert proxy.accepted == before + 2


async def test_a_request_not_safe_to_repeat_is_reported_not_sent_twice(proxy: TcpProxy) -> None:
    async with _client(proxy, "retry-unsafe") as c:
        await c.create_annotation("1.2.3.17.3")
        proxy.drop_next_answer()
        with pytest.raises(ServerUnreachable):
            await c.create_annotation("1.2.3.17.3")
        assert proxy.accepted == 1
        # The lost attempt did create it, and only once.
        assert (await c.list_annotations(study_instance_uid="1.2.3.17.3")).total == 2


async def test_storage_put_and_get_on_a_dropped_connection_are_sent_once_more(
    proxy: TcpProxy,
) -> None:
    # The embedded store's signed URLs name the server; these go through the proxy instead
    # (the host is not part of their signature).
    (mask,) = make_masks(1)
    via_proxy = f"http://127.0.0.1:{proxy.port}"
    async with _client(proxy, "retry-storage") as c:
        annotation = await c.create_annotation("1.2.3.17.4")
        created = await c.create_group(annotation.id, [mask.spec()])
        (target,) = created.uploads
        assert target.url is not None
        put_url = via_proxy + "/storage/" + target.url.split("/storage/", 1)[1]
        assert (await c.storage.get(f"{via_proxy}/health")).is_success  # a pooled connection
        before = proxy.accepted
        proxy.drop_next_request()  # the PUT never reaches the store
        r = await c.storage.put(put_url, content=mask.body, headers=target.headers)
        assert r.status_code == 200, r.text
        assert proxy.accepted == before + 1

        done = await c.complete(annotation.id, created.id)
        (stored,) = (await c.list_masks(annotation.id, created.id)).items
        signed = await c.download_url(annotation.id, created.id, stored.id)
        get_url = via_proxy + "/storage/" + signed.url.split("/storage/", 1)[1]
        proxy.drop_next_answer()  # the GET is served, its answer lost
        r = await c.storage.get(get_url)
        assert r.status_code == 200
        assert r.content == mask.body
        assert proxy.accepted == before + 2
        assert done.mask_count == 1
