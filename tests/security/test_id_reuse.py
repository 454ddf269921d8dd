"""Ids are never handed out twice, so an old signed URL never reaches a new user's object
(issue 12 item 1): after Alice deletes her annotation, and after a restart, Bob's annotation
and group get new ids, her old GET URL does not return his bytes and her old PUT URL cannot
overwrite his mask."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from fixtures.factories import MaskFile, create_annotation, create_group, png_like, put_all
from fixtures.own_server import OWN_KINDS, own_server


@pytest.mark.parametrize("kind", OWN_KINDS)
def test_deleted_ids_are_not_reused_across_restart(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    alice_mask = MaskFile(1, "liver", png_like(300, 1))
    bob_mask = MaskFile(1, "liver", png_like(300, 2))
    with own_server(kind, tmp_path, request) as server:
        with server.client("alice") as alice:
            ann = create_annotation(alice)
            group = create_group(alice, ann["id"], [alice_mask], ttl_seconds=3600)
            put_url = group["uploads"][0]
            put_all(group["uploads"], [alice_mask])
            base = f"/api/annotations/{ann['id']}/mask-groups/{group['id']}"
            assert alice.post(f"{base}/complete").status_code == 200
            mask = alice.get(f"{base}/masks").json()["items"][0]
            get_url = alice.get(
                f"{base}/masks/{mask['id']}/download-url", params={"ttl_seconds": 3600}
            ).json()["url"]
            assert alice.delete(f"/api/annotations/{ann['id']}").status_code == 204

        server.stop()
        server.start()  # the same database file / database, a fresh process

        with server.client("bob") as bob:
            bob_ann = create_annotation(bob)
            bob_group = create_group(bob, bob_ann["id"], [bob_mask], ttl_seconds=3600)
            assert bob_ann["id"] != ann["id"]
            assert bob_group["id"] != group["id"]
            put_all(bob_group["uploads"], [bob_mask])
            bob_base = f"/api/annotations/{bob_ann['id']}/mask-groups/{bob_group['id']}"
            assert bob.post(f"{bob_base}/complete").status_code == 200
            bob_mask_row = bob.get(f"{bob_base}/masks").json()["items"][0]

            with httpx.Client(timeout=30) as http:
                old_get = http.get(get_url)
                assert not (old_get.status_code == 200 and old_get.content == bob_mask.body)
                http.put(put_url["url"], content=alice_mask.body, headers=put_url["headers"])

            url = bob.get(f"{bob_base}/masks/{bob_mask_row['id']}/download-url").json()["url"]
            with httpx.Client(timeout=30) as http:
                assert http.get(url).content == bob_mask.body


@pytest.mark.parametrize("kind", OWN_KINDS[:1])
def test_reindex_leaves_sqlite_sequence_past_every_restored_id(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """reindex inserts rows with their original ids; the high-water mark must follow them."""
    import sqlite3

    masks = [MaskFile(1, "liver", png_like(200, 3))]
    with own_server(kind, tmp_path, request) as server:
        with server.client("alice") as alice:
            for _ in range(3):
                ann = create_annotation(alice)
                group = create_group(alice, ann["id"], masks)
                put_all(group["uploads"], masks)
                base = f"/api/annotations/{ann['id']}/mask-groups/{group['id']}"
                assert alice.post(f"{base}/complete").status_code == 200
        server.stop()
        db = tmp_path / "test.db"
        with sqlite3.connect(db) as conn:
            for table in ("masks", "mask_group_files", "mask_groups", "annotations"):
                conn.execute(f"DELETE FROM {table}")
            conn.execute("DELETE FROM sqlite_sequence")
        result = server.run_cli("reindex", check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        with sqlite3.connect(db) as conn:
            seq = dict(conn.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
        assert seq.get("annotations", 0) >= ann["id"]
        assert seq.get("mask_groups", 0) >= group["id"]


def test_migration_keeps_rows_and_starts_past_audited_ids(tmp_path: Path) -> None:
    """An existing SQLite database (at 0003) is rebuilt with AUTOINCREMENT without losing a
    row (foreign keys would cascade a dropped parent), and its sequences start past every id
    the audit trail names, including ids whose rows were deleted before the upgrade."""
    import os
    import sqlite3
    import subprocess
    import sys

    bin_dir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
    env.update({"APP_SERVER__DATA_DIR": str(tmp_path), "APP_ENV": "development"})
    root = Path(__file__).resolve().parents[2]

    def alembic(*args: str) -> None:
        r = subprocess.run(
            [str(bin_dir / "alembic"), "-c", str(root / "alembic.ini"), *args],
            env=env,
            cwd=root,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr[-2000:]

    alembic("upgrade", "0003")
    db = tmp_path / "pacs_ext.db"
    when = "2026-01-01 00:00:00"
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO annotations (id, owner, study_instance_uid, data, measurement_values, "
            "is_shared, created_at, updated_at) VALUES (3, 'alice', '1.2', '{}', '[]', 0, ?, ?)",
            (when, when),
        )
        conn.execute(
            "INSERT INTO mask_groups (id, annotation_id, slice_count, mask_type, created_by, "
            "status, created_at, updated_at) VALUES (4, 3, 0, 's', 'alice', 'pending', ?, ?)",
            (when, when),
        )
        # Annotation 7 / group 27 existed once: only the audit trail remembers them.
        conn.execute(
            "INSERT INTO audit_events (subject, action, annotation_id, group_id, created_at) "
            "VALUES ('alice', 'annotation.delete', 7, 27, ?)",
            (when,),
        )
    alembic("upgrade", "head")
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT id FROM annotations").fetchall() == [(3,)]
        assert conn.execute("SELECT id, annotation_id FROM mask_groups").fetchall() == [(4, 3)]
        seq = dict(conn.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
        assert seq["annotations"] == 7
        assert seq["mask_groups"] == 27
        conn.execute("DELETE FROM annotations")  # cascades (foreign keys on) ...
        conn.execute(
            "INSERT INTO annotations (owner, study_instance_uid, data, measurement_values, "
            "is_shared, created_at, updated_at) VALUES ('bob', '1.2', '{}', '[]', 0, ?, ?)",
            (when, when),
        )
        assert conn.execute("SELECT id FROM annotations").fetchall() == [(8,)]
