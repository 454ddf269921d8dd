"""An installation on the embedded local store moves to Ceph RGW in the three phases
docs/migration.md describes: new uploads to S3 with old masks served from the old folder, the
folder migrated and verified, the folder removed."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from fixtures.databases import sqlite_database
from fixtures.factories import create_annotation, create_group, group_url, make_masks, put_all
from fixtures.migration import migrate_json
from fixtures.rgw import Rgw
from fixtures.server import ServerProcess, s3_server


def _download(client: httpx.Client, annotation_id: int, group_id: int) -> tuple[str, bytes]:
    """(signed URL of the group's first mask, its bytes via the content redirect)."""
    url = group_url(annotation_id, group_id)
    mask = client.get(url + "/masks").json()["items"][0]
    signed = client.get(f"{url}/masks/{mask['id']}/download-url").json()["url"]
    content = client.get(f"{url}/masks/{mask['id']}/content", follow_redirects=True)
    assert content.status_code == 200, content.text
    with httpx.Client() as http:
        direct = http.get(signed)
    assert direct.status_code == 200, direct.text
    assert direct.content == content.content
    return signed, content.content


@pytest.mark.rgw
def test_local_store_to_rgw_in_three_phases(rgw: Rgw, tmp_path: Path) -> None:
    site = tmp_path / "site"
    with sqlite_database(site) as url, rgw.bucket() as bucket:
        # Before: the embedded local store.
        old = ServerProcess(data_dir=site, database_url=url).start()
        groups = []
        try:
            with old.client("alice") as alice:
                annotation = create_annotation(alice)["id"]
                for n in range(2):
                    masks = make_masks(4, size=900 + n)
                    g = create_group(alice, annotation, masks)
                    put_all(g["uploads"], masks)
                    done = alice.post(group_url(annotation, g["id"]) + "/complete")
                    assert done.status_code == 200, done.text
                    groups.append((g["id"], {m.filename: m.body for m in masks}))
        finally:
            old.stop()

        # Phases 1 and 2: object storage for new uploads, the old folder for old masks.
        legacy = site / "objects" / "mask"
        new = s3_server(site, url, rgw, bucket, legacy_local_dir=str(legacy)).start()
        try:
            with new.client("alice") as alice:
                (g1, bodies1), (g2, bodies2) = groups
                signed, body = _download(alice, annotation, g1)
                assert signed.startswith(new.url + "/legacy-storage/mask/")
                assert body in bodies1.values()
                tampered = signed.replace("signature=", "signature=0")
                assert httpx.get(tampered).status_code == 403

                fresh = make_masks(2, size=700)
                g3 = create_group(alice, annotation, fresh)
                put_all(g3["uploads"], fresh)
                assert alice.post(group_url(annotation, g3["id"]) + "/complete").is_success
                signed, _ = _download(alice, annotation, g3["id"])
                assert signed.startswith(rgw.endpoint + "/")

                code, report = migrate_json(new, legacy, "--verify")
                assert (code, report["local_only"], report["in_storage"]) == (1, 8, 0)

                code, s = migrate_json(new, legacy)
                assert code == 0, s
                assert (s["copied"], s["failed"]) == (8, 0)
                # The groups were known: their masks exist; metadata.json goes to the bucket.
                assert s["registered"]["groups"] == 2
                assert s["registered"]["masks_added"] == 0
                assert s["registered"]["metadata_written"] == 2

                code, report = migrate_json(new, legacy, "--verify")
                assert (code, report["local_only"], report["in_storage"]) == (0, 0, 8)

                # A migrated group is read from object storage even while the folder exists.
                signed, body = _download(alice, annotation, g2)
                assert signed.startswith(rgw.endpoint + "/")
                assert body in bodies2.values()

                # Phase 3: the folder is gone; everything comes from object storage.
                shutil.move(legacy, tmp_path / "old-masks")
                signed, body = _download(alice, annotation, g1)
                assert signed.startswith(rgw.endpoint + "/")
                assert body in bodies1.values()
        finally:
            new.stop()
