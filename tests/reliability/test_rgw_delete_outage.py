"""Deletes on Ceph RGW whose gateway dies midway: 503, the deletion stays recorded, a
repeated DELETE or the janitor finishes it once the gateway is back, and nothing is left over
(objects or multipart uploads, seen by listing the bucket)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import httpx
import pytest

from fixtures.factories import create_annotation, create_group, group_url, make_masks, put_all
from fixtures.objects import StoredObjects
from fixtures.rgw import Rgw
from fixtures.rgw_outage import MiB, big_spec, janitor, killed_at, put_part, under
from fixtures.server import ServerProcess

pytestmark = [pytest.mark.rgw, pytest.mark.postgres]


@pytest.fixture
def alice(outage_server: ServerProcess) -> Iterator[httpx.Client]:
    with outage_server.client("alice") as c:
        yield c


@pytest.fixture
def objects(outage_server: ServerProcess) -> StoredObjects:
    assert outage_server.objects is not None
    return outage_server.objects


def _complete_group(alice: httpx.Client, annotation_id: int, files: int) -> dict:
    masks = make_masks(files)
    group = create_group(alice, annotation_id, masks)
    put_all(group["uploads"], masks)
    r = alice.post(f"{group_url(annotation_id, group['id'])}/complete")
    assert r.status_code == 200, r.text
    return group


def _nothing_left(srv: ServerProcess, prefix: str, resource: str) -> None:
    """The janitor (dry run, no grace) finds nothing of this resource left over."""
    report = janitor(srv, "--grace", "0")
    for finding in ("orphan_objects", "stale_multipart_uploads", "missing_objects"):
        assert under(report, finding, prefix) == [], finding
    assert not [
        d for d in report["pending_deletions"]["samples"] if d["resource"].startswith(resource)
    ]


def test_group_delete_killed_midway_is_503_and_a_retry_finishes(
    outage_server: ServerProcess, outage_rgw: Rgw, alice: httpx.Client, objects: StoredObjects
) -> None:
    # A group mid-upload: four small files stored, a multipart upload with one part stored.
    masks = make_masks(4)
    volume = os.urandom(6 * MiB)
    annotation = create_annotation(alice)
    r = alice.post(
        f"/api/annotations/{annotation['id']}/mask-groups",
        json={"files": [m.spec() for m in masks] + [big_spec("volume.nii", volume)]},
    )
    group = r.json()
    base = group_url(annotation["id"], group["id"])
    prefix = f"mask/{annotation['id']}/{group['id']}/"
    resource = f"annotations/{annotation['id']}/mask-groups/{group['id']}"
    put_all([u for u in group["uploads"] if u["upload_id"] is None], masks)
    (big,) = [u for u in group["uploads"] if u["upload_id"]]
    put_part(big, volume, 1)
    assert len(objects.keys(prefix)) == 4
    assert objects.uploads(prefix) == [big["object_key"]]

    # radosgw dies after DeleteObjects, before the multipart upload is aborted.
    with killed_at(outage_server, outage_rgw, "delete_many", lambda: alice.delete(base)) as r:
        assert r.status_code == 503, r.text
        body = r.json()
        assert body["error"] == "ServiceUnavailable"
        assert "repeat this DELETE" in body["detail"]
        assert f"cannot reach {outage_rgw.endpoint}" in body["detail"]
        (deletion_id,) = body["pending_deletions"]
        assert alice.get(base).status_code == 404  # gone from the API at once
        again = alice.delete(base)  # storage still down: still 503, still on record
        assert again.status_code == 503
        assert again.json()["pending_deletions"] == [deletion_id]

    # Midway indeed: the objects went, the upload and its stored part did not.
    assert objects.keys(prefix) == []
    assert objects.uploads(prefix) == [big["object_key"]]
    (recorded,) = [
        d
        for d in janitor(outage_server)["pending_deletions"]["samples"]
        if d["resource"] == resource
    ]
    assert (recorded["id"], recorded["attempts"]) == (deletion_id, 2)

    assert alice.delete(base).status_code == 204
    assert objects.keys(prefix) == []
    assert objects.uploads(prefix) == []
    # Retried once more (as after a lost response): the tombstone answers 204, not 404.
    assert alice.delete(base).status_code == 204
    _nothing_left(outage_server, prefix, resource)


def test_annotation_delete_killed_midway_is_finished_by_the_janitor(
    outage_server: ServerProcess, outage_rgw: Rgw, alice: httpx.Client, objects: StoredObjects
) -> None:
    annotation = create_annotation(alice)
    a = annotation["id"]
    for files in (3, 4):
        _complete_group(alice, a, files)
    other = create_annotation(alice)
    _complete_group(alice, other["id"], 2)
    prefix, other_prefix = f"mask/{a}/", f"mask/{other['id']}/"
    assert len(objects.keys(prefix)) == 9  # 7 masks + 2 metadata.json
    resource = f"annotations/{a}"

    # radosgw dies after the listing, before DeleteObjects.
    with killed_at(
        outage_server, outage_rgw, "list_prefix", lambda: alice.delete(f"/api/annotations/{a}")
    ) as r:
        assert r.status_code == 503, r.text
        assert r.json()["pending_deletions"]
        assert alice.get(f"/api/annotations/{a}").status_code == 404
        # The janitor cannot finish it either while storage is down: reported, kept.
        down = janitor(outage_server, "--apply", exit_code=1)
        assert down["pending_deletions"]["failed"] >= 1
        assert down["errors"]

    assert len(objects.keys(prefix)) == 9  # nothing was deleted
    dry = janitor(outage_server)
    (recorded,) = [d for d in dry["pending_deletions"]["samples"] if d["resource"] == resource]
    assert recorded["attempts"] == 2  # the API's try and the janitor's
    assert len(objects.keys(prefix)) == 9  # a dry run changes nothing

    done = janitor(outage_server, "--apply")
    assert done["pending_deletions"]["acted"] >= 1
    assert not done["errors"]
    assert objects.keys(prefix) == []
    assert len(objects.keys(other_prefix)) == 3  # the other annotation untouched
    # A retry of the DELETE whose answer was lost: the tombstone answers 204, not 404.
    assert alice.delete(f"/api/annotations/{a}").status_code == 204
    _nothing_left(outage_server, prefix, resource)


def test_mask_delete_killed_midway_keeps_metadata_consistent(
    outage_server: ServerProcess, outage_rgw: Rgw, alice: httpx.Client, objects: StoredObjects
) -> None:
    annotation = create_annotation(alice)
    group = _complete_group(alice, annotation["id"], 3)
    base = group_url(annotation["id"], group["id"])
    prefix = f"mask/{annotation['id']}/{group['id']}/"
    victim = alice.get(f"{base}/masks").json()["items"][0]

    # metadata.json is rewritten without the mask, then radosgw dies before DeleteObjects.
    with killed_at(
        outage_server,
        outage_rgw,
        "put_bytes",
        lambda: alice.delete(f"{base}/masks/{victim['id']}"),
    ) as r:
        assert r.status_code == 503, r.text
        assert alice.get(f"{base}/masks/{victim['id']}").status_code == 404

    meta = json.loads(objects.read(prefix + "metadata.json"))
    assert victim["filename"] not in [f["filename"] for f in meta["files"]]
    assert objects.exists(victim["object_key"])  # on record, not yet deleted
    assert alice.delete(f"{base}/masks/{victim['id']}").status_code == 204
    assert not objects.exists(victim["object_key"])
    assert alice.get(f"{base}/masks").json()["total"] == 2
    assert alice.get(base).json()["status"] == "complete"
    _nothing_left(outage_server, prefix, f"annotations/{annotation['id']}/")
