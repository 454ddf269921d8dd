"""The bucket alone rebuilds everything (issue 19; issue 12 item 1): after the database is
dropped, `reindex` brings back every annotation (with and without groups), its sharing,
project, data and timestamps, every group and mask with its id, and the audit trail; what was
deleted stays deleted even when its objects were left behind; and no id handed out before the
loss (deleted annotations, never-completed groups, deleted masks included) is handed out again.
"""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from fixtures.databases import database
from fixtures.factories import create_annotation, create_group, group_url, make_masks, put_all
from fixtures.migration import json_of, put_object, run
from fixtures.recovery import api_snapshot
from fixtures.rgw import Rgw
from fixtures.server import ServerProcess, make_token, s3_server

KINDS = [
    pytest.param("sqlite", id="sqlite-local"),
    pytest.param("postgres-rgw", marks=(pytest.mark.postgres, pytest.mark.rgw), id="postgres-rgw"),
]
ROOT = Path(__file__).resolve().parents[2]
# Audit rows are exported once settled; 0 here so that one janitor run exports them all.
EXPORT_NOW = {"APP_JANITOR__AUDIT_EXPORT_SETTLE_SECONDS": "0", "APP_JANITOR__INTERVAL_SECONDS": "0"}


def _client(srv: ServerProcess, subject: str, **claims: Any) -> httpx.Client:
    token = make_token(subject, **claims)
    return httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def _complete(client: httpx.Client, annotation_id: int, count: int, **fields: Any) -> int:
    masks = make_masks(count, size=400 + count)
    group = create_group(client, annotation_id, masks, **fields)
    put_all(group["uploads"], masks)
    r = client.post(group_url(annotation_id, group["id"]) + "/complete")
    assert r.status_code == 200, r.text
    return int(group["id"])


class Issued:
    """Every id the original server handed out, deleted ones included."""

    def __init__(self) -> None:
        self.annotations: set[int] = set()
        self.groups: set[int] = set()
        self.masks: set[int] = set()


def _build(srv: ServerProcess) -> tuple[Issued, str]:
    """Returns the ids issued, and the key of a deleted group's metadata.json (kept aside)."""
    ids = Issued()
    with (
        _client(srv, "alice", projects=["trial-7"]) as alice,
        srv.client("bob") as bob,
    ):
        # With groups, shared, in a project, with data; one group is deleted later.
        a1 = create_annotation(
            alice,
            is_shared=True,
            project_id="trial-7",
            tool_name="TotalSegmentator",
            data={"labels": ["liver"]},
            measurement_values=[{"volume_ml": 1523.4}],
        )["id"]
        g1 = _complete(alice, a1, 4, model_name="unet", modality="CT")
        g2 = _complete(alice, a1, 2, group_name="to delete")
        # Measurement-only: no group, so no metadata.json ever names it.
        a2 = create_annotation(
            bob, viewer_software="OHIF", measurement_values=[{"length_mm": 12.5}]
        )["id"]
        r = bob.patch(f"/api/annotations/{a2}", json={"description": "reviewed"})
        assert r.status_code == 200
        # Pending, never uploaded: its id was handed out with URLs naming it.
        half = make_masks(2, size=300)
        pending_group = create_group(bob, a2, half)
        pending = pending_group["id"]
        put_all(pending_group["uploads"][:1], half[:1])  # one of two uploaded
        # Deleted annotation with a complete group: its id must never come back.
        a3 = create_annotation(bob)["id"]
        g3 = _complete(bob, a3, 1)
        for a, g in ((a1, g1), (a1, g2), (a3, g3)):
            items = (
                alice.get(group_url(a, g) + "/masks").json()["items"]
                if a == a1
                else (bob.get(group_url(a, g) + "/masks").json()["items"])
            )
            ids.masks.update(m["id"] for m in items)
        # A deleted mask (the highest id of g1's) and a download URL (audited).
        masks_g1 = sorted(
            alice.get(group_url(a1, g1) + "/masks").json()["items"], key=lambda m: m["id"]
        )
        r = alice.delete(group_url(a1, g1) + f"/masks/{masks_g1[-1]['id']}")
        assert r.status_code == 204
        r = alice.get(group_url(a1, g1) + f"/masks/{masks_g1[0]['id']}/download-url")
        assert r.status_code == 200
        # The deleted group's document, put back afterwards as a deletion storage never
        # finished would leave it: its tombstone must keep it from coming back.
        kept_key = f"mask/{a1}/{g2}/metadata.json"
        kept = srv.objects.read(kept_key) if srv.objects else b""
        assert alice.delete(group_url(a1, g2)).status_code == 204
        assert bob.delete(f"/api/annotations/{a3}").status_code == 204
        put_object(srv, kept_key, kept)
    ids.annotations.update({a1, a2, a3})
    ids.groups.update({g1, g2, g3, int(pending)})
    return ids, kept_key


def _two_servers(
    stack: ExitStack, kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> tuple[ServerProcess, ServerProcess]:
    """An original server and one to restore into: one data folder and store, two databases
    (the second empty, as after losing the first). Stopped when the stack closes."""
    db_kind, _, store = kind.partition("-")
    folder = tmp_path / "srv"
    url0 = stack.enter_context(database(db_kind, tmp_path / "db0"))
    url1 = stack.enter_context(database(db_kind, tmp_path / "db1"))
    if store == "rgw":
        rgw: Rgw = request.getfixturevalue("rgw")
        bucket = stack.enter_context(rgw.bucket())
        original = s3_server(folder, url0, rgw, bucket)
        restored = s3_server(folder, url1, rgw, bucket)
    else:
        original = ServerProcess(data_dir=folder, database_url=url0)
        restored = ServerProcess(data_dir=folder, database_url=url1)
    stack.callback(original.stop)
    stack.callback(restored.stop)
    return original, restored


@pytest.mark.parametrize("kind", KINDS)
def test_reindex_restores_everything_and_reuses_no_id(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    with ExitStack() as stack:
        original, restored = _two_servers(stack, kind, tmp_path, request)
        original.extra_env.update(EXPORT_NOW)
        restored.extra_env.update(EXPORT_NOW)
        original.start()
        ids, kept_key = _build(original)
        expected = api_snapshot(original)
        assert len(expected["annotations"]) == 2
        assert len(expected["audit"]) > 10
        original.stop()
        # The audit trail reaches the bucket through the janitor (periodic in a server).
        janitor = run(original, "janitor", "--apply", "--json")
        assert janitor.returncode == 0, janitor.stdout + janitor.stderr
        assert json_of(janitor)["audit_export"]["acted"] == len(expected["audit"])

        # The database is gone: a new, empty one, rebuilt from the bucket alone.
        restored.migrate_database()
        r = run(restored, "reindex", "--json")
        assert r.returncode == 0, r.stdout + r.stderr
        report = json_of(r)
        assert report["problems"] == []
        assert report["deleted_skipped"] == 1  # the deleted group's document put back
        assert report["restored"]["annotations"] == 2
        # The pending group's one upload and the deleted group's document: told, and left
        # to the janitor.
        assert report["unrestored_objects"] == 2
        assert report["restored"]["audit_events"] == len(expected["audit"])

        dry = json_of(run(restored, "janitor", "--json"))
        assert dry["young_unclaimed"] == 2
        restored.start()
        assert api_snapshot(restored) == expected
        with restored.client("root", admin=True) as admin:
            assert admin.get(group_url(*map(int, kept_key.split("/")[1:3]))).status_code == 404
        # A user of the project still reads the shared annotation; Bob's is Bob's.
        with _client(restored, "carol", projects=["trial-7"]) as carol:
            a1 = min(ids.annotations)
            assert carol.get(f"/api/annotations/{a1}").status_code == 200

        # No id is ever handed out twice: not a deleted annotation's, not a pending
        # group's, not a deleted mask's.
        with restored.client("dave") as dave:
            for _ in range(2):
                a = create_annotation(dave)["id"]
                assert a > max(ids.annotations)
                g = _complete(dave, a, 2)
                assert g > max(ids.groups)
                new_masks = dave.get(group_url(a, g) + "/masks").json()["items"]
                assert min(m["id"] for m in new_masks) > max(ids.masks)
                ids.annotations.add(a)
                ids.groups.add(g)
                ids.masks.update(m["id"] for m in new_masks)
        with restored.client("root", admin=True) as admin:
            audit = admin.get("/api/audit", params={"limit": 1000}).json()["items"]
        old = {e["id"] for e in expected["audit"]}
        assert all(e["id"] > max(old) for e in audit if e["id"] not in old)
        restored.stop()


def test_upgrade_writes_documents_of_what_existed_before(tmp_path: Path) -> None:
    """A database from before the recovery documents: its annotations and its remembered
    deletions get their documents, and the bucket a mark past every id, on the janitor's
    next run."""
    import sqlite3

    srv = ServerProcess(data_dir=tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path}/x.db")
    alembic = [str(Path(sys.executable).parent / "alembic"), "-c", str(ROOT / "alembic.ini")]
    up = subprocess.run(
        [*alembic, "upgrade", "0006_metadata_outbox"],
        env=srv.env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert up.returncode == 0, up.stderr[-2000:]
    when = "2026-01-01 00:00:00"
    with sqlite3.connect(tmp_path / "x.db") as conn:
        conn.execute(
            "INSERT INTO annotations (id, owner, study_instance_uid, data, measurement_values, "
            "is_shared, created_at, updated_at) VALUES (5, 'alice', '1.2', '{}', '[]', 1, ?, ?)",
            (when, when),
        )
        conn.execute(
            "INSERT INTO tombstones (kind, object_id, owner, deleted_by, deleted_at) "
            "VALUES ('annotation', 9, 'alice', 'alice', ?)",
            (when,),
        )
        conn.execute("UPDATE sqlite_sequence SET seq = 9 WHERE name = 'annotations'")
    assert run(srv, "db", "upgrade").returncode == 0
    janitor = run(srv, "janitor", "--apply", "--json")
    assert janitor.returncode == 0, janitor.stderr
    assert json_of(janitor)["recovery_outbox"]["acted"] == 2
    docs = tmp_path / "objects" / "mask" / "_recovery"
    annotation = json.loads((docs / "annotations" / "5.json").read_bytes())
    assert annotation["annotation"]["is_shared"] is True
    tomb = json.loads((docs / "annotations" / "9.json").read_bytes())
    assert tomb["tombstone"]["id"] == 9
    mark = json.loads((docs / "ids" / "annotations.json").read_bytes())
    assert mark["reserved"] >= 9


def _audit_ids(srv: ServerProcess) -> set[int]:
    with srv.client("root", admin=True) as admin:
        return {e["id"] for e in admin.get("/api/audit", params={"limit": 1000}).json()["items"]}


@pytest.mark.parametrize("kind", KINDS)
def test_audit_ids_not_exported_before_the_loss_are_never_handed_out_again(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The newest audit rows are lost with the database (the janitor had not exported them):
    their ids are still under the bucket's high-water mark, so the rebuilt database hands
    out none of them again."""
    with ExitStack() as stack:
        original, restored = _two_servers(stack, kind, tmp_path, request)
        for srv in (original, restored):
            srv.extra_env.update(EXPORT_NOW)
        original.start()
        with original.client("alice") as alice:
            a = create_annotation(alice)["id"]
            assert alice.patch(f"/api/annotations/{a}", json={"description": "x"}).is_success
        janitor = run(original, "janitor", "--apply", "--json")
        assert janitor.returncode == 0, janitor.stdout + janitor.stderr
        exported = _audit_ids(original)
        assert json_of(janitor)["audit_export"]["acted"] == len(exported) == 2
        # Newer rows the janitor never exported: lost with the database below.
        with original.client("alice") as alice:
            for i in range(3):
                r = alice.patch(f"/api/annotations/{a}", json={"description": f"v{i}"})
                assert r.is_success
        issued = _audit_ids(original)
        assert len(issued) == 5
        original.stop()

        restored.migrate_database()
        r = run(restored, "reindex", "--json")
        assert r.returncode == 0, r.stdout + r.stderr
        assert json_of(r)["restored"]["audit_events"] == len(exported)
        restored.start()
        assert _audit_ids(restored) == exported
        with restored.client("alice") as alice:
            assert alice.patch(f"/api/annotations/{a}", json={"description": "after"}).is_success
            create_annotation(alice)
        new = _audit_ids(restored) - exported
        assert len(new) == 2
        assert min(new) > max(issued)
        restored.stop()
