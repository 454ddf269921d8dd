"""`pacs-ext reindex` against a poisoned bucket: metadata.json documents the server could never
have written (names, numbers, text and times the API refuses) are reported and skipped, the
good ones are restored, the id sequences end past every restored id, and a `--merge` re-run
is as calm as the first (SQLite and PostgreSQL)."""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fixtures.databases import database
from fixtures.factories import create_annotation, create_group, group_url, make_masks, put_all
from fixtures.isolated import own_server
from fixtures.migration import json_of, put_object, run
from fixtures.server import ServerProcess

KINDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
Doc = dict[str, Any]


def _file(doc: Doc, **changes: Any) -> None:
    doc["files"][0].update(changes)


POISONS: dict[str, Callable[[Doc], None]] = {
    "slice_index 2**40": lambda d: _file(d, slice_index=2**40),
    "NUL in owner": lambda d: d["annotation"].update(owner="ali\x00ce"),
    "path traversal": lambda d: _file(d, filename="../../11/11/t.png"),
    "newline in name": lambda d: _file(d, filename="a\nb.png"),
    "hidden name": lambda d: _file(d, filename=".hidden"),
    "reserved name": lambda d: _file(d, filename="metadata.json"),
    "text/html": lambda d: _file(d, content_type="text/html"),
}


def _place(good: Doc, a: int, g: int) -> tuple[str, Doc]:
    """A copy of the good document as annotation a / group g, and the key it belongs at."""
    doc = copy.deepcopy(good)
    doc["annotation"]["id"], doc["group"]["id"] = a, g
    for f in doc["files"]:
        f.pop("id", None)  # mask ids are unique: copies of one document cannot all keep them
    return f"mask/{a}/{g}/metadata.json", doc


def _store(srv: ServerProcess, key: str, doc: Doc, body: bytes) -> None:
    """The document at key, and each file it names (where a file can be stored)."""
    for f in doc["files"]:
        f["key"] = key.rsplit("/", 1)[0] + "/" + f["filename"]
        if "/" not in f["filename"] and f["filename"] != "metadata.json":
            put_object(srv, f["key"], body)
    put_object(srv, key, json.dumps(doc).encode())


@pytest.mark.parametrize("kind", KINDS)
def test_reindex_skips_what_the_api_refuses_and_resets_sequences(kind: str, tmp_path: Path) -> None:
    store = tmp_path / "store"
    with database(kind, tmp_path / "db0") as url0, database(kind, tmp_path / "db1") as url1:
        original = ServerProcess(data_dir=store, database_url=url0).start()
        try:
            with original.client("alice") as alice:
                a = create_annotation(alice)["id"]
                masks = make_masks(1, size=300)
                group = create_group(alice, a, masks)
                g = group["id"]
                put_all(group["uploads"], masks)
                assert alice.post(group_url(a, g) + "/complete").status_code == 200
                # Whatever the API refuses today, reindex must refuse too.
                html = alice.post(
                    f"/api/annotations/{a}/mask-groups",
                    json={"files": [{**masks[0].spec(), "content_type": "text/html"}]},
                )
                html_refused = html.status_code == 422
        finally:
            original.stop()
        body = masks[0].body
        good = json.loads((store / "objects" / f"mask/{a}/{g}/metadata.json").read_bytes())
        assert good["files"][0]["size"] == len(body)

        poisoned: dict[str, str] = {}
        for n, (name, poison) in enumerate(POISONS.items()):
            key, doc = _place(good, 100 + n, 200 + n)
            poison(doc)
            _store(original, key, doc, body)
            poisoned[name] = key
        # Two groups of one annotation, one stamped with a naive time: only that one is bad.
        key, doc = _place(good, 300, 301)
        _store(original, key, doc, body)
        key, doc = _place(good, 300, 302)
        doc["group"]["created_at"] = "2026-01-02T03:04:05"
        _store(original, key, doc, body)
        poisoned["naive created_at"] = key

        restored = ServerProcess(data_dir=store, database_url=url1)
        restored.migrate_database()
        r = run(restored, "reindex", "--json")
        assert "Traceback" not in r.stderr, r.stderr
        assert r.returncode == 1, r.stdout + r.stderr
        report = json_of(r)
        if not html_refused:
            poisoned.pop("text/html")
        for name, key in poisoned.items():
            assert any(p.startswith(key) and "skipped" in p for p in report["problems"]), name
        good_groups = {g, 301} | ({206} if not html_refused else set())
        assert report["restored"]["groups"] == len(good_groups), "\n".join(report["problems"])

        # The same bucket merged again: the same report, nothing new, no traceback.
        again = run(restored, "reindex", "--merge", "--json")
        assert "Traceback" not in again.stderr, again.stderr
        assert json_of(again)["restored"] == {
            "annotations": 0,
            "groups": 0,
            "masks": 0,
            "exports": 0,
            "audit_events": 0,
        }

        restored.start()
        try:
            with restored.client("root", admin=True) as admin:
                for key in poisoned.values():
                    ann, grp = key.split("/")[1:3]
                    assert admin.get(group_url(int(ann), int(grp))).status_code == 404, key
                assert admin.get(group_url(a, g)).json()["mask_count"] == 1
                # New rows after explicit ids: every sequence is past every restored id.
                new_a = create_annotation(admin)["id"]
                assert new_a > 300
                new_g = create_group(admin, new_a, make_masks(1))["id"]
                assert new_g > max(good_groups)
        finally:
            restored.stop()


def test_reindex_does_not_suggest_an_option_it_lacks(tmp_path: Path) -> None:
    unreachable = "postgresql+asyncpg://nobody@127.0.0.1:1/none"
    srv = ServerProcess(data_dir=tmp_path, database_url=unreachable)
    r = run(srv, "reindex")
    assert r.returncode != 0
    assert "cannot reach the database" in r.stderr
    assert "--no-register" not in r.stderr
    # migrate has that option, and still offers it.
    (tmp_path / "src").mkdir()
    m = run(srv, "migrate", str(tmp_path / "src"))
    assert "--no-register" in m.stderr


@pytest.mark.parametrize("kind", KINDS)
def test_janitor_skips_a_key_storage_refuses_and_deletes_the_rest(
    kind: str, tmp_path: Path
) -> None:
    with own_server(kind, tmp_path) as srv:
        with srv.client("alice") as alice:
            a = create_annotation(alice)["id"]
        hours_ago = time.time() - 2 * 3600
        planted = {}
        # A backslash is a valid file name on disk, and a key storage refuses to touch.
        for name in ("0001_stray.png", "a\\b.png", "0002_stray.png"):
            path = srv.data_dir / "objects" / f"mask/{a}/99/{name}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"stray")
            os.utime(path, (hours_ago, hours_ago))
            planted[name] = path
        r = srv.run_cli("janitor", "--apply", "--json", check=False)
        assert "Traceback" not in r.stderr, r.stderr
        assert r.returncode == 1  # something was left: said so
        report = json.loads(r.stdout)
        orphans = report["orphan_objects"]
        assert (orphans["found"], orphans["acted"], orphans["failed"]) == (3, 2, 1)
        assert any("a\\\\b.png" in e and "skipped" in e for e in report["errors"]), report
        assert not planted["0001_stray.png"].exists()
        assert not planted["0002_stray.png"].exists()
        assert planted["a\\b.png"].exists()
