"""metadata.json is written from committed state only (a metadata outbox), serialized per group,
and the janitor finishes unfinished writes and rewrites documents that differ from the database.

The crash cases hold the real server right after storage accepted metadata.json (pause points
of fixtures/paused_storage.py on PostgreSQL + RGW) and SIGKILL it there; the race holds a mask
DELETE at the same point while a PATCH of its group runs, observing PostgreSQL's lock waits
instead of timing. Before the fix, metadata.json was written before the commit: each case
left a document the database disagreed with.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from fixtures.databases import admin_dsn
from fixtures.factories import create_annotation, create_group, group_url, make_masks, put_all
from fixtures.faulty_storage import set_faults
from fixtures.objects import StoredObjects
from fixtures.paused_storage import arm, release, wait_paused
from fixtures.row_locks import claim_elsewhere, open_transactions_while_rows_free
from fixtures.server import ServerProcess
from pacs_ext.models import MetadataOutbox
from pacs_ext.objects.claimed_rows import LEASE_SECONDS

pg_rgw = [pytest.mark.postgres, pytest.mark.rgw]


def _complete_group(client: httpx.Client, files: int = 3) -> tuple[int, int]:
    a = create_annotation(client)["id"]
    masks = make_masks(files, size=400)
    group = create_group(client, a, masks, description="first")
    put_all(group["uploads"], masks)
    r = client.post(group_url(a, group["id"]) + "/complete")
    assert r.status_code == 200, r.text
    return int(a), int(group["id"])


def _document(objects: StoredObjects, a: int, g: int) -> dict[str, Any] | None:
    key = f"mask/{a}/{g}/metadata.json"
    return json.loads(objects.read(key)) if objects.exists(key) else None


def _agrees(srv: ServerProcess, a: int, g: int) -> None:
    """metadata.json says what the database holds: status, description, masks."""
    assert srv.objects is not None
    doc = _document(srv.objects, a, g)
    with srv.client("root", admin=True) as admin:
        group = admin.get(group_url(a, g)).json()
        masks = admin.get(group_url(a, g) + "/masks").json()["items"]
    if group["status"] != "complete":
        assert doc is None, "metadata.json of a group the database has pending"
        return
    assert doc is not None
    assert doc["group"]["description"] == group["description"]
    assert sorted(f["filename"] for f in doc["files"]) == sorted(m["filename"] for m in masks)


def _killed_after_put(srv: ServerProcess, call: Callable[[], object]) -> None:
    """The server is SIGKILLed right after storage accepted its next put_bytes (the
    metadata.json write of `call`), then started again."""
    arm(srv.data_dir, "put_bytes")
    pool = ThreadPoolExecutor(1)
    future = pool.submit(call)
    try:
        wait_paused(srv.data_dir)
        assert srv.proc is not None
        srv.proc.kill()
        srv.proc.wait()
    finally:
        release(srv.data_dir)
        pool.shutdown(wait=True)
    with pytest.raises(httpx.HTTPError):
        future.result()
    srv.start()


@pytest.mark.parametrize("step", ["patch", "mask_delete", "complete"])
@pytest.mark.postgres
@pytest.mark.rgw
def test_a_killed_request_leaves_metadata_json_agreeing(
    paused_server: ServerProcess, step: str
) -> None:
    srv = paused_server
    with srv.client("alice") as alice:
        if step == "complete":
            a = create_annotation(alice)["id"]
            masks = make_masks(3, size=400)
            group = create_group(alice, a, masks, description="first")
            put_all(group["uploads"], masks)
            g = group["id"]
            call: Callable[[], object] = lambda: alice.post(group_url(a, g) + "/complete")  # noqa: E731
        else:
            a, g = _complete_group(alice)
            if step == "patch":
                call = lambda: alice.patch(group_url(a, g), json={"description": "second"})  # noqa: E731
            else:
                victim = alice.get(group_url(a, g) + "/masks").json()["items"][0]
                call = lambda: alice.delete(group_url(a, g) + f"/masks/{victim['id']}")  # noqa: E731
        _killed_after_put(srv, call)
    _agrees(srv, a, g)
    # The janitor finds nothing to fix (the write finished before the kill).
    r = srv.run_cli("janitor", "--json", check=False)
    report = json.loads(r.stdout)
    assert report["metadata_mismatch"]["found"] == 0, report["metadata_mismatch"]


def _locks_free_during_the_write(database_url: str, group_id: int) -> list[str]:
    """Take the group's row and its outbox row with NOWAIT, and list the server's open
    transactions: PostgreSQL's view of what a held metadata.json write holds."""
    return open_transactions_while_rows_free(
        database_url,
        ("SELECT id FROM mask_groups WHERE id = $1 FOR UPDATE NOWAIT", group_id),
        ("SELECT group_id FROM metadata_outbox WHERE group_id = $1 FOR UPDATE NOWAIT", group_id),
    )


@pytest.mark.postgres
@pytest.mark.rgw
def test_no_lock_or_transaction_is_held_across_the_metadata_write(
    paused_server: ServerProcess,
) -> None:
    """Under load, a write holding the group's row lock and a pooled connection across the
    storage PUT made requests queue for the pool (issue 16 part 3): it holds neither."""
    srv = paused_server
    with srv.client("alice") as alice:
        a, g = _complete_group(alice)
        arm(srv.data_dir, "before_put_bytes")
        pool = ThreadPoolExecutor(1)
        try:
            patching = pool.submit(
                lambda: alice.patch(group_url(a, g), json={"description": "second"})
            )
            wait_paused(srv.data_dir)
            # NOWAIT raises LockNotAvailable if the writer held either row.
            assert _locks_free_during_the_write(srv.database_url, g) == []
            release(srv.data_dir)
            assert patching.result(timeout=60).status_code == 200
        finally:
            release(srv.data_dir)
            pool.shutdown(wait=True)
    _agrees(srv, a, g)


def _description(database_url: str, group_id: int) -> str | None:
    """The group's description as committed (PostgreSQL's view, not the server's)."""

    async def read() -> str | None:
        conn = await asyncpg.connect(admin_dsn(database_url))
        try:
            value = await conn.fetchval(
                "SELECT description FROM mask_groups WHERE id = $1", group_id
            )
            return None if value is None else str(value)
        finally:
            await conn.close()

    return asyncio.run(read())


@pytest.mark.postgres
@pytest.mark.rgw
def test_a_mask_delete_racing_a_patch_leaves_no_deleted_mask_listed(
    paused_server: ServerProcess,
) -> None:
    srv = paused_server
    with srv.client("alice") as alice, srv.client("alice") as other:
        a, g = _complete_group(alice)
        victim = alice.get(group_url(a, g) + "/masks").json()["items"][0]
        arm(srv.data_dir, "put_bytes")
        pool = ThreadPoolExecutor(2)
        try:
            deleting = pool.submit(lambda: alice.delete(group_url(a, g) + f"/masks/{victim['id']}"))
            wait_paused(srv.data_dir)  # the DELETE's metadata.json is in storage
            patching: Future[httpx.Response] = pool.submit(
                lambda: other.patch(group_url(a, g), json={"description": "second"})
            )
            # The PATCH either finishes, or commits and waits for the group's metadata writer
            # (the DELETE's, whose claim it sees: no lock is held across the write).
            deadline = time.monotonic() + 30
            while not patching.done() and _description(srv.database_url, g) != "second":
                assert time.monotonic() < deadline, "the PATCH never committed"
                time.sleep(0.05)
            release(srv.data_dir)
            assert deleting.result(timeout=60).status_code == 204
            assert patching.result(timeout=60).status_code == 200
        finally:
            release(srv.data_dir)
            pool.shutdown(wait=True)
    _agrees(srv, a, g)
    assert srv.objects is not None
    doc = _document(srv.objects, a, g)
    assert doc is not None
    assert victim["filename"] not in [f["filename"] for f in doc["files"]]
    assert doc["group"]["description"] == "second"


def _meta_path(srv: ServerProcess, a: int, g: int) -> Path:
    return srv.data_dir / "objects" / f"mask/{a}/{g}/metadata.json"


def _patched_while_storage_refuses(srv: ServerProcess, alice: httpx.Client) -> tuple[int, int]:
    """A completed group (description "first") PATCHed to "second" while storage refuses
    every document PUT: the PATCH answers 200, its metadata.json write stays requested."""
    a, g = _complete_group(alice)
    set_faults(srv.data_dir, put_bytes=True)
    try:
        r = alice.patch(group_url(a, g), json={"description": "second"})
    finally:
        set_faults(srv.data_dir)
    assert r.status_code == 200, r.text
    return a, g


def _janitor(srv: ServerProcess, *args: str) -> dict[str, Any]:
    r = srv.run_cli("janitor", "--json", *args, check=False)
    assert "Traceback" not in r.stderr, r.stderr
    return dict(json.loads(r.stdout))


def test_the_janitor_finishes_writes_and_rewrites_differing_documents(
    faulty_server: ServerProcess,
) -> None:
    srv = faulty_server
    set_faults(srv.data_dir)
    with srv.client("alice") as alice:
        # Storage refuses the document: the PATCH is committed all the same, metadata.json
        # stays as it was (behind, never ahead) and the write stays requested.
        a, g = _patched_while_storage_refuses(srv, alice)
        assert alice.get(group_url(a, g)).json()["description"] == "second"
        assert json.loads(_meta_path(srv, a, g).read_text())["group"]["description"] == "first"

        dry = _janitor(srv)
        assert dry["metadata_outbox"]["found"] == 1
        assert dry["metadata_outbox"]["acted"] == 0
        done = _janitor(srv, "--apply")
        assert done["metadata_outbox"]["acted"] == 1
        assert json.loads(_meta_path(srv, a, g).read_text())["group"]["description"] == "second"

        # A document changed behind the server's back is compared and rewritten.
        doc = json.loads(_meta_path(srv, a, g).read_text())
        doc["files"] = doc["files"][:1]
        doc["group"]["description"] = "forged"
        _meta_path(srv, a, g).write_text(json.dumps(doc))
        found = _janitor(srv)["metadata_mismatch"]
        assert (found["found"], found["acted"]) == (1, 0)
        assert found["samples"] == [{"annotation_id": a, "group_id": g}]
        fixed = _janitor(srv, "--apply")
        assert (fixed["metadata_mismatch"]["found"], fixed["metadata_mismatch"]["acted"]) == (1, 1)
        after = json.loads(_meta_path(srv, a, g).read_text())
        assert after["group"]["description"] == "second"
        assert len(after["files"]) == 3
        assert _janitor(srv)["metadata_mismatch"]["found"] == 0


def _claim_elsewhere(srv: ServerProcess, group_id: int, age_seconds: float) -> None:
    """Mark the group's outbox row as claimed by a writer of another process, that long ago."""
    where = MetadataOutbox.group_id == group_id
    claim_elsewhere(srv.database_url, MetadataOutbox, where, age_seconds=age_seconds)


def test_a_claim_of_another_process_is_left_to_it_until_its_lease_ends(
    faulty_server: ServerProcess,
) -> None:
    """Writers claim the outbox row instead of locking it across the PUT: another process's
    claim is left alone (it writes the newest state) until its lease ends (it died)."""
    srv = faulty_server
    set_faults(srv.data_dir)
    with srv.client("alice") as alice:
        a, g = _patched_while_storage_refuses(srv, alice)
    _claim_elsewhere(srv, g, age_seconds=0)
    held = _janitor(srv, "--apply")["metadata_outbox"]
    assert (held["found"], held["acted"], held["failed"]) == (1, 0, 1)
    assert json.loads(_meta_path(srv, a, g).read_text())["group"]["description"] == "first"

    _claim_elsewhere(srv, g, age_seconds=LEASE_SECONDS + 1)
    taken = _janitor(srv, "--apply")["metadata_outbox"]
    assert (taken["found"], taken["acted"], taken["failed"]) == (1, 1, 0)
    assert json.loads(_meta_path(srv, a, g).read_text())["group"]["description"] == "second"
    assert _janitor(srv)["metadata_outbox"]["found"] == 0


def test_an_annotation_patch_rewrites_its_groups_documents(faulty_server: ServerProcess) -> None:
    srv = faulty_server
    set_faults(srv.data_dir)
    with srv.client("alice") as alice:
        a, g = _complete_group(alice)
        r = alice.patch(f"/api/annotations/{a}", json={"series_instance_uid": "1.2.3.99"})
        assert r.status_code == 200, r.text
        assert r.json()["series_instance_uid"] == "1.2.3.99"
    doc = json.loads(_meta_path(srv, a, g).read_text())
    assert doc["annotation"]["series_instance_uid"] == "1.2.3.99"
    assert _janitor(srv)["metadata_mismatch"]["found"] == 0


@pytest.mark.postgres
@pytest.mark.rgw
def test_a_group_delete_racing_a_document_write_leaves_no_document(
    paused_server: ServerProcess,
) -> None:
    """A PATCH holds its metadata.json write just before storage; the group is deleted
    meanwhile. The document must not stay after the deletion listed the group's prefix."""
    srv = paused_server
    assert srv.objects is not None
    with srv.client("alice") as alice, srv.client("alice") as other:
        a, g = _complete_group(alice)
        arm(srv.data_dir, "before_put_bytes")
        pool = ThreadPoolExecutor(2)
        try:
            patching = pool.submit(
                lambda: alice.patch(group_url(a, g), json={"description": "second"})
            )
            wait_paused(srv.data_dir)
            deleting: Future[httpx.Response] = pool.submit(lambda: other.delete(group_url(a, g)))
            # No lock is held across the write: the DELETE does not wait for it.
            assert deleting.result(timeout=60).status_code == 204
            assert srv.objects.keys(f"mask/{a}/{g}/") == []
            release(srv.data_dir)
            # The write lands after the deletion listed the prefix: its writer removes it.
            assert patching.result(timeout=60).status_code == 200
        finally:
            release(srv.data_dir)
            pool.shutdown(wait=True)
        assert alice.get(group_url(a, g)).status_code == 404
    assert srv.objects.keys(f"mask/{a}/{g}/") == []
