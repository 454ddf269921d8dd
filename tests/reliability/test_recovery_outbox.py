"""An annotation's recovery document (objects/recovery_outbox.py) is written holding no lock
and no connection: its writer claims the outbox row, reads committed state, commits, then
PUTs. Before, the annotation's row stayed locked (FOR UPDATE) across the PUT, and every group
create of that annotation (its foreign key check takes a share lock on that row) waited for
storage to answer."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from fixtures.factories import create_annotation, make_masks
from fixtures.faulty_storage import set_faults
from fixtures.paused_storage import arm, release, wait_paused
from fixtures.rgw_outage import janitor
from fixtures.row_locks import claim_elsewhere, open_transactions_while_rows_free
from fixtures.server import ServerProcess
from pacs_ext.models import RecoveryOutbox
from pacs_ext.models.recovery import ANNOTATION_DOC
from pacs_ext.objects.claimed_rows import LEASE_SECONDS


def _document(srv: ServerProcess, annotation_id: int) -> dict[str, Any]:
    assert srv.objects is not None
    [key] = [k for k in srv.objects.keys("") if k.endswith(f"annotations/{annotation_id}.json")]
    return dict(json.loads(srv.objects.read(key)))


def _locks_free_during_the_write(database_url: str, annotation_id: int) -> list[str]:
    """Take the annotation's row and its outbox row with NOWAIT, and list the server's open
    transactions: PostgreSQL's view of what a held document write holds."""
    return open_transactions_while_rows_free(
        database_url,
        ("SELECT id FROM annotations WHERE id = $1 FOR UPDATE NOWAIT", annotation_id),
        (
            "SELECT object_id FROM recovery_outbox WHERE kind = $1 AND object_id = $2 "
            "FOR UPDATE NOWAIT",
            ANNOTATION_DOC,
            annotation_id,
        ),
    )


@pytest.mark.postgres
@pytest.mark.rgw
def test_a_document_write_holds_no_lock_and_stops_no_group_create(
    paused_server: ServerProcess,
) -> None:
    srv = paused_server
    with srv.client("alice") as alice, srv.client("alice") as other:
        a = create_annotation(alice)["id"]
        arm(srv.data_dir, "before_put_bytes")
        pool = ThreadPoolExecutor(1)
        try:
            patching = pool.submit(
                lambda: alice.patch(f"/api/annotations/{a}", json={"description": "reviewed"})
            )
            wait_paused(srv.data_dir)  # the PATCH's document is on its way to storage
            # NOWAIT raises LockNotAvailable if the writer held either row.
            assert _locks_free_during_the_write(srv.database_url, a) == []
            # Before, this waited for the held PUT (the annotation's row lock): 120 s.
            spec = [m.spec() for m in make_masks(1)]
            made = other.post(f"/api/annotations/{a}/mask-groups", json={"files": spec}, timeout=20)
            assert made.status_code == 201, made.text
            release(srv.data_dir)
            assert patching.result(timeout=60).status_code == 200
        finally:
            release(srv.data_dir)
            pool.shutdown(wait=True)
    assert _document(srv, a)["annotation"]["description"] == "reviewed"


def _claim_elsewhere(srv: ServerProcess, annotation_id: int, age_seconds: float) -> None:
    """Mark the annotation's outbox row as claimed by another process's writer, that long ago."""
    where = (RecoveryOutbox.kind == ANNOTATION_DOC, RecoveryOutbox.object_id == annotation_id)
    claim_elsewhere(srv.database_url, RecoveryOutbox, *where, age_seconds=age_seconds)


def test_a_claim_of_another_process_is_left_to_it_until_its_lease_ends(
    faulty_server: ServerProcess,
) -> None:
    srv = faulty_server
    with srv.client("alice") as alice:
        a = create_annotation(alice, description="first")["id"]
        set_faults(srv.data_dir, put_bytes=True)  # the PATCH's document stays requested
        try:
            r = alice.patch(f"/api/annotations/{a}", json={"description": "second"})
        finally:
            set_faults(srv.data_dir)
        assert r.status_code == 200, r.text
    _claim_elsewhere(srv, a, age_seconds=0)
    held = janitor(srv, "--apply", exit_code=1)["recovery_outbox"]
    assert (held["found"], held["acted"], held["failed"]) == (1, 0, 1)
    assert _document(srv, a)["annotation"]["description"] == "first"

    _claim_elsewhere(srv, a, age_seconds=LEASE_SECONDS + 1)
    taken = janitor(srv, "--apply")["recovery_outbox"]
    assert (taken["found"], taken["acted"], taken["failed"]) == (1, 1, 0)
    assert _document(srv, a)["annotation"]["description"] == "second"
    assert janitor(srv)["recovery_outbox"]["found"] == 0
