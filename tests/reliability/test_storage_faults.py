"""Storage failing midway: 503, nothing half-committed, nothing orphaned, retries finish."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from fixtures.factories import create_annotation, create_group, group_url, make_masks, put_all
from fixtures.faulty_storage import set_faults
from fixtures.server import ServerProcess


@pytest.fixture
def alice(faulty_server: ServerProcess) -> Iterator[httpx.Client]:
    set_faults(faulty_server.data_dir)
    with faulty_server.client("alice") as c:
        yield c
    set_faults(faulty_server.data_dir)


def _objects(srv: ServerProcess, prefix: str) -> list[str]:
    base = srv.data_dir / "objects" / prefix
    if not base.exists():
        return []
    return sorted(
        p.relative_to(srv.data_dir / "objects").as_posix() for p in base.rglob("*") if p.is_file()
    )


def _complete_group(alice: httpx.Client, files: int = 6) -> tuple[dict, dict]:
    masks = make_masks(files)
    annotation = create_annotation(alice)
    group = create_group(alice, annotation["id"], masks)
    put_all(group["uploads"], masks)
    r = alice.post(f"{group_url(annotation['id'], group['id'])}/complete")
    assert r.status_code == 200, r.text
    return annotation, group


def _janitor(srv: ServerProcess, *args: str) -> dict:
    r = srv.run_cli("janitor", "--json", *args, check=False)
    assert r.returncode == 0, r.stderr
    return dict(json.loads(r.stdout))


def test_group_delete_failing_midway_is_503_and_a_retry_finishes(
    faulty_server: ServerProcess, alice: httpx.Client
) -> None:
    annotation, group = _complete_group(alice)
    base = group_url(annotation["id"], group["id"])
    prefix = f"mask/{annotation['id']}/{group['id']}"
    assert len(_objects(faulty_server, prefix)) == 7  # 6 masks + metadata.json

    set_faults(faulty_server.data_dir, delete_after=2)
    r = alice.delete(base)
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["error"] == "ServiceUnavailable"
    assert "repeat this DELETE" in body["detail"]
    assert body["pending_deletions"]
    # The group is gone from the API at once; its remaining objects are on record.
    assert alice.get(base).status_code == 404
    assert len(_objects(faulty_server, prefix)) == 5
    assert alice.delete(base).status_code == 503  # storage still down: still on record

    set_faults(faulty_server.data_dir)
    assert alice.delete(base).status_code == 204
    assert _objects(faulty_server, prefix) == []
    # Once more, as a client whose answer was lost would: the tombstone answers 204.
    assert alice.delete(base).status_code == 204
    assert _janitor(faulty_server)["pending_deletions"]["found"] == 0


def test_annotation_delete_failing_is_finished_by_the_janitor(
    faulty_server: ServerProcess, alice: httpx.Client
) -> None:
    annotation, _ = _complete_group(alice, files=4)
    other, _ = _complete_group(alice, files=2)
    set_faults(faulty_server.data_dir, delete_after=1)
    assert alice.delete(f"/api/annotations/{annotation['id']}").status_code == 503
    assert alice.get(f"/api/annotations/{annotation['id']}").status_code == 404
    set_faults(faulty_server.data_dir)

    # Someone else retrying the DELETE learns nothing about it.
    with faulty_server.client("bob") as bob:
        assert bob.delete(f"/api/annotations/{annotation['id']}").status_code == 404

    dry = _janitor(faulty_server)
    assert dry["pending_deletions"]["found"] == 1
    assert dry["pending_deletions"]["samples"][0]["resource"] == f"annotations/{annotation['id']}"
    assert len(_objects(faulty_server, f"mask/{annotation['id']}")) == 4  # dry run: untouched

    done = _janitor(faulty_server, "--apply")
    assert done["pending_deletions"]["acted"] == 1
    assert _objects(faulty_server, f"mask/{annotation['id']}") == []
    assert len(_objects(faulty_server, f"mask/{other['id']}")) == 3  # the other one untouched
    # Once more, as a client whose answer was lost would: the tombstone answers 204.
    assert alice.delete(f"/api/annotations/{annotation['id']}").status_code == 204
    assert _janitor(faulty_server)["clean"] is True


def test_mask_delete_failing_keeps_metadata_consistent(
    faulty_server: ServerProcess, alice: httpx.Client
) -> None:
    annotation, group = _complete_group(alice, files=3)
    base = group_url(annotation["id"], group["id"])
    items = alice.get(f"{base}/masks").json()["items"]
    first, victim = items[0], items[1]
    meta_path = (
        faulty_server.data_dir / "objects" / f"mask/{annotation['id']}/{group['id']}/metadata.json"
    )

    def listed() -> list[str]:
        return [f["filename"] for f in json.loads(meta_path.read_text())["files"]]

    # metadata.json cannot be rewritten: the deletion is committed first (with its outbox
    # row), so it stands; the document follows once storage takes it (here: the janitor).
    set_faults(faulty_server.data_dir, put_bytes=True)
    assert alice.delete(f"{base}/masks/{first['id']}").status_code == 204
    assert alice.get(f"{base}/masks/{first['id']}").status_code == 404
    set_faults(faulty_server.data_dir)
    assert _janitor(faulty_server, "--apply")["metadata_outbox"]["acted"] == 1
    assert first["filename"] not in listed()

    # The object cannot be deleted: the mask is gone, metadata.json agrees, object on record.
    set_faults(faulty_server.data_dir, delete_after=0)
    assert alice.delete(f"{base}/masks/{victim['id']}").status_code == 503
    assert alice.get(f"{base}/masks/{victim['id']}").status_code == 404
    assert victim["filename"] not in listed()
    assert (faulty_server.data_dir / "objects" / victim["object_key"]).exists()

    set_faults(faulty_server.data_dir)
    assert _janitor(faulty_server, "--apply")["pending_deletions"]["acted"] >= 1
    assert not (faulty_server.data_dir / "objects" / victim["object_key"]).exists()
    assert alice.get(f"{base}/masks").json()["total"] == 1
    assert alice.get(base).json()["status"] == "complete"


def test_complete_when_storage_fails_commits_nothing_and_succeeds_later(
    faulty_server: ServerProcess, alice: httpx.Client
) -> None:
    # A first completed group reserves the id blocks in the bucket's high-water mark: a
    # transaction that takes ids past the mark must write it first, so with writes failing a
    # fresh server's first complete is (rightly) a 503. This test is about metadata.json.
    _complete_group(alice, files=1)
    masks = make_masks(4)
    annotation = create_annotation(alice)
    group = create_group(alice, annotation["id"], masks)
    base = group_url(annotation["id"], group["id"])

    # Uploads fail while storage is broken: a clear 503 from the store's endpoint.
    set_faults(faulty_server.data_dir, upload=True)
    target = group["uploads"][0]
    r = httpx.put(target["url"], content=masks[0].body, headers=target["headers"])
    assert r.status_code == 503, r.text
    set_faults(faulty_server.data_dir)
    put_all(group["uploads"], masks)

    # Verification cannot list the objects: 503, group still pending, no masks.
    set_faults(faulty_server.data_dir, list=True)
    r = alice.post(f"{base}/complete")
    assert r.status_code == 503, r.text
    # metadata.json cannot be written: the completion is committed first, and the document
    # (from committed state) follows on a retry.
    set_faults(faulty_server.data_dir, put_bytes=True)
    assert alice.post(f"{base}/complete").status_code == 200
    meta_path = faulty_server.data_dir / "objects" / f"mask/{annotation['id']}/{group['id']}"
    assert not (meta_path / "metadata.json").exists()

    set_faults(faulty_server.data_dir)
    r = alice.post(f"{base}/complete")
    assert r.status_code == 200, r.text
    assert r.json()["mask_count"] == 4
    assert len(json.loads((meta_path / "metadata.json").read_text())["files"]) == 4
