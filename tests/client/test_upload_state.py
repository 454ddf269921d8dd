"""The upload state file (resume): typed per-file records, the same JSON on disk."""

from __future__ import annotations

import json
from pathlib import Path

from pacs_ext.client.files import LocalFile
from pacs_ext.client.state import STATE_VERSION, UploadState


def local(tmp_path: Path, name: str, size: int = 5, mtime_ns: int = 1) -> LocalFile:
    return LocalFile(tmp_path / name, name, size, mtime_ns, "image/png", md5="bWQ1")


def test_the_state_file_keeps_its_json_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    state = UploadState(path, "http://server", 3, 7, "liver")
    a, b = local(tmp_path, "a.png"), local(tmp_path, "b.png", size=9)
    b.part_md5s, b.part_size = ["cDE=", "cDI="], 5
    state.record([a], declared=True)
    state.record([b], declared=False)
    state.save()

    doc = json.loads(path.read_text())
    assert doc["version"] == STATE_VERSION
    assert doc["files"]["a.png"] == {
        "size": 5,
        "md5": "bWQ1",
        "sha256": None,
        "part_md5s": None,
        "part_size": None,
        "mtime_ns": 1,
        "declared": True,
    }
    loaded = UploadState.load(path)
    assert loaded is not None
    assert loaded.files == state.files
    assert not loaded.needs_declaring(local(tmp_path, "a.png"))
    assert loaded.needs_declaring(local(tmp_path, "b.png", size=9))  # not declared yet
    again = local(tmp_path, "b.png", size=9)
    again.md5 = None
    loaded.reuse_digests([again])
    assert (again.md5, again.part_md5s, again.part_size) == ("bWQ1", ["cDE=", "cDI="], 5)


def test_a_damaged_record_is_hashed_and_declared_again(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    record = {"size": "5", "md5": 12, "mtime_ns": 1, "declared": True}
    doc = {
        "version": STATE_VERSION,
        "server": "http://server",
        "annotation_id": 3,
        "group_id": 7,
        "files": {"a.png": record},
    }
    path.write_text(json.dumps(doc))
    loaded = UploadState.load(path)
    assert loaded is not None
    f = local(tmp_path, "a.png")
    f.md5 = None
    loaded.reuse_digests([f])
    assert f.md5 is None  # nothing taken from a record whose size does not read
    assert loaded.needs_declaring(local(tmp_path, "a.png"))
