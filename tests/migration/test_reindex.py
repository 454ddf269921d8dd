"""`pacs-ext reindex` rebuilds, in an empty database, the groups and masks a database built
through the API had, from nothing but the bucket (SQLite + local store; PostgreSQL + RGW)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from fixtures.databases import database
from fixtures.factories import create_annotation, create_group, group_url, make_masks, put_all
from fixtures.migration import delete_object, json_of, run
from fixtures.rgw import Rgw
from fixtures.server import ServerProcess, s3_server

KINDS = ["sqlite", pytest.param("postgres-rgw", marks=[pytest.mark.postgres, pytest.mark.rgw])]


@contextmanager
def servers(
    kind: str, folder: Path, request: pytest.FixtureRequest, count: int
) -> Iterator[list[ServerProcess]]:
    """`count` servers (not started) on one store, each with a fresh, migrated database."""
    db_kind, _, store = kind.partition("-")
    with ExitStack() as stack:
        bucket = None
        if store == "rgw":
            rgw: Rgw = request.getfixturevalue("rgw")
            bucket = stack.enter_context(rgw.bucket())
        out = []
        for n in range(count):
            url = stack.enter_context(database(db_kind, folder / f"db{n}"))
            srv = (
                s3_server(folder, url, rgw, bucket)
                if bucket
                else ServerProcess(data_dir=folder, database_url=url)
            )
            stack.callback(srv.stop)
            srv.migrate_database()
            out.append(srv)
        yield out


def _complete(client: httpx.Client, annotation_id: int, masks: list[Any], **fields: Any) -> int:
    group = create_group(client, annotation_id, masks, **fields)
    put_all(group["uploads"], masks)
    r = client.post(group_url(annotation_id, group["id"]) + "/complete")
    assert r.status_code == 200, r.text
    return int(group["id"])


def _build_through_api(srv: ServerProcess) -> tuple[list[tuple[int, int]], int]:
    """Groups (annotation id, group id) that are complete, and one pending group's id."""
    groups = []
    with srv.client("alice") as alice, srv.client("bob") as bob:
        a1 = create_annotation(
            alice, series_instance_uid="1.2.3.4", sop_instance_uid="1.2.3.4.5", is_shared=True
        )["id"]
        masks = make_masks(6, labels=("liver", "spleen", "kidney"))
        specs = [
            m.spec(sop_instance_uid=f"1.2.3.{m.slice_index}", width=512, height=512) for m in masks
        ]
        g = create_group(
            alice,
            a1,
            [],
            files=specs,
            model_name="unet",
            version="2.1",
            modality="CT",
            description="liver run",
            mask_type="segmentation",
        )
        put_all(g["uploads"], masks)
        assert alice.post(group_url(a1, g["id"]) + "/complete").status_code == 200
        groups.append((a1, int(g["id"])))
        groups.append((a1, _complete(alice, a1, make_masks(3, size=700), group_name="second")))
        # A mask deleted after completion: metadata.json is rewritten without it.
        first = alice.get(group_url(*groups[1]) + "/masks").json()["items"][0]
        r = alice.delete(group_url(*groups[1]) + f"/masks/{first['id']}")
        assert r.status_code == 204
        a2 = create_annotation(bob, study_instance_uid="9.8.7")["id"]
        groups.append((a2, _complete(bob, a2, make_masks(4, size=600), modality="MR")))
        pending = create_group(bob, a2, make_masks(2, size=500))["id"]
    return groups, int(pending)


def _snapshot(srv: ServerProcess, groups: list[tuple[int, int]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with srv.client("root", admin=True) as admin:
        for a, g in groups:
            annotation = admin.get(f"/api/annotations/{a}").json()
            out[f"annotation {a}"] = {
                k: annotation[k]
                for k in ("id", "owner", "study_instance_uid", "series_instance_uid")
            }
            group = admin.get(group_url(a, g)).json()
            group.pop("updated_at")  # not in metadata.json: restored as completed_at
            out[f"group {g}"] = group
            masks = admin.get(group_url(a, g) + "/masks", params={"limit": 1000}).json()
            out[f"masks {g}"] = [{k: v for k, v in m.items() if k != "id"} for m in masks["items"]]
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_reindex_reproduces_groups_and_masks(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    with servers(kind, tmp_path / kind, request, 3) as (original, restored, damaged):
        original.start()
        groups, pending = _build_through_api(original)
        expected = _snapshot(original, groups)
        original.stop()

        r = run(restored, "reindex", "--json")
        assert r.returncode == 0, r.stdout + r.stderr
        report = json_of(r)
        assert report["restored"] == {
            "annotations": 2,
            "groups": 3,
            "masks": 6 + 2 + 4,
            "exports": 0,
            "audit_events": 0,  # no janitor ran, so nothing was exported
        }
        assert report["problems"] == []

        # Idempotent: a second run refuses the now non-empty database unless told to merge,
        # and merging adds nothing.
        again = run(restored, "reindex")
        assert again.returncode == 1
        assert "--merge" in again.stderr
        merged = json_of(run(restored, "reindex", "--merge", "--json"))
        assert merged["restored"] == {
            "annotations": 0,
            "groups": 0,
            "masks": 0,
            "exports": 0,
            "audit_events": 0,
        }
        assert merged["groups_present"] == 3

        restored.start()
        assert _snapshot(restored, groups) == expected
        with restored.client("bob") as bob, restored.client("alice") as alice:
            # Never completed, so never in the bucket's metadata: not restored.
            assert bob.get(group_url(groups[2][0], pending)).status_code == 404
            # New rows after explicit ids: the id sequences were moved past them.
            a = create_annotation(alice)["id"]
            assert a > max(x for x, _ in groups)
            g = _complete(alice, a, make_masks(2, size=400))
            assert g > max(y for _, y in groups)
        restored.stop()

        # A metadata.json naming an object that is gone: reported, the rest restored.
        a, g = groups[0]
        missing = f"mask/{a}/{g}/0001_liver.png"
        delete_object(original, missing)
        r = run(damaged, "reindex", "--json")
        assert r.returncode == 1
        report = json_of(r)
        assert report["restored"]["masks"] == 6 + 2 + 4 + 2 - 1  # + the group made above
        assert any(missing in p and "missing" in p for p in report["problems"])
