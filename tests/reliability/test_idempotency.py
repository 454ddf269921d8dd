"""complete twice or concurrently: one result, one set of masks. Idempotency-Key on create."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
import pytest

from fixtures.factories import create_annotation, create_group, group_url, make_masks, put_all
from fixtures.server import ServerProcess

CONCURRENCY = 8


def test_concurrent_completes_give_one_result_and_one_set_of_masks(
    server: ServerProcess, alice: httpx.Client
) -> None:
    masks = make_masks(40)
    annotation = create_annotation(alice)
    group = create_group(alice, annotation["id"], masks)
    put_all(group["uploads"], masks)
    base = group_url(annotation["id"], group["id"])

    def complete(_: int) -> httpx.Response:
        with server.client("alice") as c:
            return c.post(f"{base}/complete")

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        responses = list(pool.map(complete, range(CONCURRENCY)))
    assert [r.status_code for r in responses] == [200] * CONCURRENCY, [r.text for r in responses]
    bodies = [r.json() for r in responses]
    assert all(b == bodies[0] for b in bodies)
    assert bodies[0]["status"] == "complete"
    assert bodies[0]["mask_count"] == 40
    listed = alice.get(f"{base}/masks", params={"limit": 1000}).json()
    assert listed["total"] == 40
    assert len({m["object_key"] for m in listed["items"]}) == 40


def _create(client: httpx.Client, annotation_id: int, body: dict, key: str) -> httpx.Response:
    return client.post(
        f"/api/annotations/{annotation_id}/mask-groups",
        json=body,
        headers={"Idempotency-Key": key},
    )


def test_idempotency_key_replays_the_same_group_with_fresh_urls(alice: httpx.Client) -> None:
    masks = make_masks(3)
    annotation = create_annotation(alice)
    body = {"group_name": "retry-me", "files": [m.spec() for m in masks], "ttl_seconds": 1}
    first = _create(alice, annotation["id"], body, "create-1")
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    again = _create(alice, annotation["id"], {**body, "ttl_seconds": 1}, "create-1")
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert [u["object_key"] for u in again.json()["uploads"]] == [
        u["object_key"] for u in first.json()["uploads"]
    ]
    assert alice.get(f"/api/annotations/{annotation['id']}/mask-groups").json()["total"] == 1

    # A retry after the first URLs expired gets URLs that work (ttl_seconds may differ).
    expired = datetime.fromisoformat(first.json()["uploads"][0]["expires_at"])
    while datetime.now(UTC) <= expired:
        time.sleep(0.1)
    late = _create(alice, annotation["id"], {**body, "ttl_seconds": 600}, "create-1")
    assert late.json()["id"] == first.json()["id"]
    for u in late.json()["uploads"]:
        assert datetime.fromisoformat(u["expires_at"]) > datetime.now(UTC)
    put_all(late.json()["uploads"], masks)
    base = group_url(annotation["id"], first.json()["id"])
    assert alice.post(f"{base}/complete").status_code == 200

    # Once complete, a replay returns the group with nothing left to upload.
    done = _create(alice, annotation["id"], body, "create-1")
    assert done.status_code == 201
    assert done.json()["status"] == "complete"
    assert done.json()["uploads"] == []


def test_same_key_with_another_request_is_422(alice: httpx.Client, bob: httpx.Client) -> None:
    masks = make_masks(2)
    annotation = create_annotation(alice)
    other = create_annotation(alice)
    body = {"files": [m.spec() for m in masks]}
    assert _create(alice, annotation["id"], body, "key-x").status_code == 201
    for a_id, changed in [
        (annotation["id"], {"files": [masks[0].spec()]}),
        (annotation["id"], {**body, "group_name": "renamed"}),
        (other["id"], body),
    ]:
        r = _create(alice, a_id, changed, "key-x")
        assert r.status_code == 422, r.text
        assert r.json()["error"] == "IdempotencyKeyMismatch"
    # Keys belong to their caller: bob's "key-x" is a different key.
    shared = create_annotation(bob)
    assert _create(bob, shared["id"], body, "key-x").status_code == 201


@pytest.mark.parametrize("key", ["", "a" * 256, "spaces are not allowed"])
def test_malformed_idempotency_keys_are_422(alice: httpx.Client, key: str) -> None:
    annotation = create_annotation(alice)
    r = _create(alice, annotation["id"], {"files": []}, key)
    assert r.status_code == 422, r.text


def test_concurrent_creates_with_one_key_make_one_group(
    server: ServerProcess, alice: httpx.Client
) -> None:
    masks = make_masks(20)
    annotation = create_annotation(alice)
    body = {"files": [m.spec() for m in masks]}

    def create(_: int) -> httpx.Response:
        with server.client("alice") as c:
            return _create(c, annotation["id"], body, "burst-key")

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        responses = list(pool.map(create, range(CONCURRENCY)))
    assert [r.status_code for r in responses] == [201] * CONCURRENCY, [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == CONCURRENCY - 1
    assert alice.get(f"/api/annotations/{annotation['id']}/mask-groups").json()["total"] == 1
