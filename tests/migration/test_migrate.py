"""`pacs-ext migrate SOURCE_DIR` into the local store and into Ceph RGW, as an operator runs it."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import time
from pathlib import Path

import pytest

from fixtures.factories import create_annotation, create_group, make_masks, put_all
from fixtures.migration import make_tree, migrate_json, put_object, run
from fixtures.server import BIN, ServerProcess

PREFIX = "mask/"


def stored(srv: ServerProcess) -> dict[str, bytes]:
    assert srv.objects is not None
    return {k: srv.objects.read(k) for k in srv.objects.keys(PREFIX)}


def test_copies_a_tree_then_a_second_run_copies_nothing(
    target: ServerProcess, tmp_path: Path
) -> None:
    src = tmp_path / "legacy"
    files = make_tree(src, {(101, 1011): 24, (101, 1012): 9, (102, 1021): 15})
    (src / "README.txt").write_text("not a mask")
    (src / "101" / "1011" / ".DS_Store").write_bytes(b"junk")
    (src / "007").mkdir()

    code, report = migrate_json(target, src, "--verify")
    assert code == 1
    assert report["local_only"] == 48
    assert report["in_storage"] == 0

    code, s = migrate_json(target, src, "--concurrency", "8")
    assert code == 0, s
    assert (s["copied"], s["skipped"], s["failed"]) == (48, 0, 0)
    assert s["bytes"] == sum(len(b) for b in files.values())
    assert s["files_per_second"] > 0
    assert sorted(s["ignored"]) == ["007/", "101/1011/.DS_Store", "README.txt"]
    # No group of the tree is in the database: copied, reported, not registered.
    assert s["registered"]["unknown_groups"] == ["101/1011", "101/1012", "102/1021"]
    assert s["registered"]["masks_added"] == 0
    assert stored(target) == {PREFIX + rel: body for rel, body in files.items()}

    code, s = migrate_json(target, src)
    assert code == 0
    assert (s["copied"], s["skipped"], s["failed"]) == (0, 48, 0)

    # Same size, other bytes; and another size: both copied again, nothing else.
    same_size = "101/1011/0001_liver.png"
    files[same_size] = bytes(reversed(files[same_size]))
    (src / same_size).write_bytes(files[same_size])
    grown = "102/1021/0003_liver.png"
    files[grown] += b"more"
    (src / grown).write_bytes(files[grown])
    code, s = migrate_json(target, src)
    assert (s["copied"], s["skipped"]) == (2, 46)
    assert stored(target) == {PREFIX + rel: body for rel, body in files.items()}
    code, report = migrate_json(target, src, "--verify")
    assert code == 0
    assert report["local_only"] == 0


@pytest.mark.parametrize("target", ["local"], indirect=True)
def test_dry_run_changes_nothing(target: ServerProcess, tmp_path: Path) -> None:
    src = tmp_path / "legacy"
    make_tree(src, {(5, 50): 6})
    code, s = migrate_json(target, src, "--dry-run")
    assert code == 0
    assert s["dry_run"] is True
    assert (s["to_copy"], s["copied"]) == (6, 0)
    assert s["planned_copies"][0] == "5/50/0001_liver.png"
    assert stored(target) == {}
    text = run(target, "migrate", str(src), "--dry-run")
    assert "dry run: nothing was changed" in text.stdout
    assert "would copy (6)" in text.stdout


def test_delete_needs_yes_and_keeps_metadata_and_api_uploads(
    target: ServerProcess, tmp_path: Path
) -> None:
    src = tmp_path / "legacy"
    files = make_tree(src, {(101, 1011): 6})
    assert migrate_json(target, src)[0] == 0
    # A group uploaded through the API: its objects are nowhere in the legacy folder.
    target.start()
    with target.client("alice") as alice:
        annotation = create_annotation(alice)
        masks = make_masks(3)
        group = create_group(alice, annotation["id"], masks)
        put_all(group["uploads"], masks)
        r = alice.post(f"/api/annotations/{annotation['id']}/mask-groups/{group['id']}/complete")
        assert r.status_code == 200, r.text
    api_prefix = f"{PREFIX}{annotation['id']}/{group['id']}/"
    # Gone from the folder since the last run, and objects no local file explains.
    (src / "101/1011/0001_liver.png").unlink()
    put_object(target, f"{PREFIX}101/1011/stray.png", b"stray")
    put_object(target, f"{PREFIX}101/1011/metadata.json", b"{}")
    put_object(target, f"{PREFIX}9/99/0001_liver.png", b"orphan")
    before = stored(target)

    r = run(target, "migrate", str(src), "--delete")
    assert r.returncode == 2
    assert "--yes" in r.stderr
    assert "Traceback" not in r.stderr
    assert stored(target) == before

    code, s = migrate_json(target, src, "--delete", "--dry-run")
    assert code == 0
    assert s["to_delete"] == 3
    assert sorted(s["planned_deletions"]) == [
        f"{PREFIX}101/1011/0001_liver.png",
        f"{PREFIX}101/1011/stray.png",
        f"{PREFIX}9/99/0001_liver.png",
    ]
    assert s["kept"] == 3  # the API group's masks (its metadata.json is never a candidate)
    assert stored(target) == before

    code, s = migrate_json(target, src, "--delete", "--yes")
    assert code == 0, s
    assert s["deleted"] == 3
    after = stored(target)
    assert set(before) - set(after) == {
        f"{PREFIX}101/1011/0001_liver.png",
        f"{PREFIX}101/1011/stray.png",
        f"{PREFIX}9/99/0001_liver.png",
    }
    assert f"{PREFIX}101/1011/metadata.json" in after
    assert {k for k in after if k.startswith(api_prefix)} == {
        api_prefix + m.filename for m in masks
    } | {api_prefix + "metadata.json"}
    del files["101/1011/0001_liver.png"]
    assert migrate_json(target, src, "--verify")[0] == 0


@pytest.mark.parametrize("target", ["local"], indirect=True)
def test_files_of_known_groups_become_masks(target: ServerProcess, tmp_path: Path) -> None:
    """A group the database knows (here: declared through the API, never uploaded) gets its
    files from the folder as masks, is completed, and gets its metadata.json."""
    target.start()
    masks = make_masks(8)
    with target.client("alice") as alice:
        annotation = create_annotation(alice)
        group = create_group(alice, annotation["id"], masks, model_name="unet")
        partial = create_group(alice, annotation["id"], make_masks(3, size=300))
    src = tmp_path / "legacy"
    folder = src / str(annotation["id"]) / str(group["id"])
    folder.mkdir(parents=True)
    for m in masks:
        (folder / m.filename).write_bytes(m.body)
    # A pending group the folder has only part of: left as it is (no masks, not completed).
    short = src / str(annotation["id"]) / str(partial["id"])
    short.mkdir()
    for m in make_masks(2, size=300):
        (short / m.filename).write_bytes(m.body)
    make_tree(src, {(annotation["id"] + 1000, 77): 2})  # unknown group

    code, s = migrate_json(target, src)
    assert code == 0, s
    assert s["registered"]["groups"] == 1
    assert s["registered"]["masks_added"] == 8
    # Its own group, not "under another annotation" (issue 19 item 4).
    assert s["registered"]["conflicts"] == []
    assert len(s["registered"]["pending_groups"]) == 1
    assert f"/{partial['id']}: pending" in s["registered"]["pending_groups"][0]
    assert s["registered"]["unknown_groups"] == [f"{annotation['id'] + 1000}/77"]

    url = f"/api/annotations/{annotation['id']}/mask-groups/{group['id']}"
    with target.client("alice") as alice:
        g = alice.get(url).json()
        assert (g["status"], g["mask_count"], g["file_count"]) == ("complete", 8, 8)
        assert g["total_bytes"] == sum(len(m.body) for m in masks)
        listed = alice.get(url + "/masks").json()["items"]
        assert {(m["slice_index"], m["label_name"]) for m in listed} == {
            (m.slice_index, m.label_name) for m in masks
        }
        left = alice.get(f"/api/annotations/{annotation['id']}/mask-groups/{partial['id']}")
        assert (left.json()["status"], left.json()["mask_count"]) == ("pending", 0)
        first = listed[0]
        assert first["mime_type"] == "image/png"
        content = alice.get(f"{url}/masks/{first['id']}/content", follow_redirects=True)
        assert content.status_code == 200
        assert content.content == {m.filename: m.body for m in masks}[first["filename"]]
    assert target.objects is not None
    assert target.objects.exists(f"{PREFIX}{annotation['id']}/{group['id']}/metadata.json")

    # Converged: the next run registers nothing new.
    code, s = migrate_json(target, src)
    assert (s["copied"], s["registered"]["groups"], s["registered"]["masks_added"]) == (0, 0, 0)
    assert code == 0


@pytest.mark.rgw
@pytest.mark.parametrize("target", ["rgw"], indirect=True)
def test_interrupted_run_resumes(target: ServerProcess, tmp_path: Path) -> None:
    src = tmp_path / "legacy"
    files = make_tree(src, {(1, 10): 100, (1, 11): 100}, size=4000)
    assert target.objects is not None
    proc = subprocess.Popen(
        [str(BIN), "migrate", str(src), "--concurrency", "1", "--no-register"],
        env=target.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while len(target.objects.keys(PREFIX)) < 20 and proc.poll() is None:
            assert time.monotonic() < deadline, "the migration copied nothing in 2 minutes"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    copied_before = len(target.objects.keys(PREFIX))
    assert 0 < copied_before < len(files), "the run was not interrupted midway"

    code, s = migrate_json(target, src, "--no-register")
    assert code == 0, s
    assert s["skipped"] == copied_before
    assert s["copied"] == len(files) - copied_before
    got = stored(target)
    assert {k: hashlib.md5(v).hexdigest() for k, v in got.items()} == {
        PREFIX + rel: hashlib.md5(b).hexdigest() for rel, b in files.items()
    }
    assert migrate_json(target, src, "--verify")[0] == 0


@pytest.mark.parametrize("target", ["local"], indirect=True)
def test_bad_invocations_are_clear_errors(target: ServerProcess, tmp_path: Path) -> None:
    r = run(target, "migrate", str(tmp_path / "missing"))
    assert r.returncode == 2
    assert "is not a folder" in r.stderr
    r = run(target, "migrate", str(tmp_path), "--verify", "--delete")
    assert r.returncode == 2
    r = run(target, "migrate", str(tmp_path), "--delete", "--yes", "--no-register")
    assert r.returncode == 2
    assert "database" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("target", ["local"], indirect=True)
def test_a_failed_copy_is_reported_and_exits_non_zero(
    target: ServerProcess, tmp_path: Path
) -> None:
    src = tmp_path / "legacy"
    make_tree(src, {(3, 30): 4})
    # Fault: a folder where the object must go, so storing that one file fails.
    blocker = target.data_dir / "objects" / PREFIX / "3/30/0001_liver.png"
    (blocker / "inside").mkdir(parents=True)
    code, s = migrate_json(target, src)
    assert code == 1
    assert (s["copied"], s["failed"]) == (3, 1)
    assert s["failures"][0]["path"] == "3/30/0001_liver.png"
    text = run(target, "migrate", str(src))
    assert text.returncode == 1
    assert "failed" in text.stdout
    (blocker / "inside").rmdir()
    blocker.rmdir()
    code, s = migrate_json(target, src)
    assert (code, s["copied"], s["skipped"]) == (0, 1, 3)
