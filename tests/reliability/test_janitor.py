"""`pacs-ext janitor`: expiry of abandoned uploads, orphans, missing objects, dry run vs apply."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import create_async_engine

from fixtures.databases import admin_dsn
from fixtures.factories import create_annotation, create_group, group_url, make_masks, put_all
from fixtures.isolated import own_server
from fixtures.server import BIN, ServerProcess
from pacs_ext.models import Mask, MaskGroup

DB_KINDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
HOURS_AGO = time.time() - 2 * 3600


@pytest.fixture(scope="module", params=DB_KINDS)
def srv(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    with own_server(request.param, tmp_path_factory.mktemp(f"janitor-{request.param}")) as s:
        yield s


def janitor(srv: ServerProcess, *args: str) -> dict:
    r = srv.run_cli("janitor", "--json", *args, check=False)
    assert r.returncode == 0, r.stderr
    return dict(json.loads(r.stdout))


def expire_uploads(srv: ServerProcess, group: dict) -> None:
    """Time passes for one group: its upload URLs expired a second ago (the janitor decides on
    the group's upload_expires_at), without waiting for them on the real clock."""

    async def update_row() -> None:
        engine = create_async_engine(srv.database_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    update(MaskGroup)
                    .where(MaskGroup.id == group["id"])
                    .values(upload_expires_at=datetime.now(UTC) - timedelta(seconds=1))
                )
        finally:
            await engine.dispose()

    asyncio.run(update_row())


def plant(srv: ServerProcess, key: str, *, old: bool = True) -> Path:
    path = srv.data_dir / "objects" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"stray bytes")
    if old:
        os.utime(path, (HOURS_AGO, HOURS_AGO))
    return path


def test_janitor_finds_and_cleans_exactly_what_is_left_over(srv: ServerProcess) -> None:
    objects = srv.data_dir / "objects"
    with srv.client("alice") as alice:
        annotation = create_annotation(alice)
        a = annotation["id"]
        masks = make_masks(4)
        # Complete group: masks and metadata.json are claimed.
        done = create_group(alice, a, masks)
        put_all(done["uploads"], masks)
        alice.post(f"{group_url(a, done['id'])}/complete").raise_for_status()
        # Pending group with long-lived URLs and two of four files uploaded: claimed.
        waiting = create_group(alice, a, masks, ttl_seconds=3600)
        put_all(waiting["uploads"][:2], masks)
        # Pending group whose URLs expire at once, one file uploaded: abandoned.
        abandoned = create_group(alice, a, masks, ttl_seconds=3)
        put_all(abandoned["uploads"][:1], masks)

        orphans = {
            plant(srv, f"mask/{a}/{done['id']}/stray.png"),
            plant(srv, "mask/999999/1/0001_liver.png"),
            plant(srv, "mask/not-a-number/x.png"),
        }
        fresh = plant(srv, f"mask/{a}/{waiting['id']}/undeclared.png", old=False)
        gone_mask = alice.get(f"{group_url(a, done['id'])}/masks").json()["items"][0]
        (objects / gone_mask["object_key"]).unlink()

        expire_uploads(srv, abandoned)
        dry = janitor(srv, "--grace", "1800")
        assert dry["apply"] is False
        assert dry["expired_groups"]["found"] == 0  # within the grace period
        assert {o["key"] for o in dry["orphan_objects"]["samples"]} == {
            p.relative_to(objects).as_posix() for p in orphans
        }
        assert dry["orphan_bytes"] == 3 * len(b"stray bytes")
        assert [m["mask_id"] for m in dry["missing_objects"]["samples"]] == [gone_mask["id"]]
        assert dry["clean"] is False
        assert all(p.exists() for p in orphans)  # a dry run changes nothing

        dry0 = janitor(srv, "--grace", "0")
        assert [g["group_id"] for g in dry0["expired_groups"]["samples"]] == [abandoned["id"]]
        assert alice.get(group_url(a, abandoned["id"])).json()["status"] == "pending"

        applied = janitor(srv, "--grace", "0", "--apply")
        assert applied["expired_groups"]["acted"] == 1
        assert applied["orphan_objects"]["acted"] == 4  # the fresh one too, with grace 0
        assert not any(p.exists() for p in [*orphans, fresh])
        state = alice.get(group_url(a, abandoned["id"])).json()
        assert state["status"] == "expired"
        assert not (objects / f"mask/{a}/{abandoned['id']}").exists()
        # What is still vouched for is untouched.
        assert len(list((objects / f"mask/{a}/{waiting['id']}").iterdir())) == 2
        assert (objects / f"mask/{a}/{done['id']}/metadata.json").exists()
        assert len(list((objects / f"mask/{a}/{done['id']}").iterdir())) == 4
        # An expired group cannot be completed or given new URLs.
        assert alice.post(f"{group_url(a, abandoned['id'])}/complete").status_code == 409

        after = janitor(srv, "--grace", "0")
        assert after["orphan_objects"]["found"] == 0
        assert after["expired_groups"]["found"] == 0
        assert after["missing_objects"]["found"] == 1  # reported, never "fixed" by deleting


def test_human_summary_and_metrics_file(srv: ServerProcess, tmp_path: Path) -> None:
    metrics = tmp_path / "janitor.prom"
    r = srv.run_cli("janitor", "--metrics-file", str(metrics), check=False)
    assert r.returncode == 0, r.stderr
    assert "dry run" in r.stdout
    assert "objects with no database record" in r.stdout
    text = metrics.read_text()
    assert 'pacs_janitor_found{kind="orphan_objects"}' in text
    assert 'pacs_janitor_runs_total{mode="dry_run",outcome="ok"} 1.0' in text
    assert "process_" not in text  # only the janitor's own metrics


def test_a_second_run_is_refused_while_one_holds_the_lock(srv: ServerProcess) -> None:
    if srv.database_url.startswith("postgresql"):

        async def held() -> str:
            conn = await asyncpg.connect(admin_dsn(srv.database_url))
            try:
                await conn.execute("SELECT pg_advisory_lock($1)", 0x7061637365787400)
                r = await asyncio.to_thread(srv.run_cli, "janitor", check=False)
                return f"{r.returncode}|{r.stderr}"
            finally:
                await conn.close()

        code, _, stderr = asyncio.run(held()).partition("|")
    else:
        with open(srv.data_dir / ".janitor.lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            r = srv.run_cli("janitor", check=False)
        code, stderr = str(r.returncode), r.stderr
    assert code == "1"
    assert "another janitor run is in progress" in stderr


@pytest.mark.parametrize("kind", DB_KINDS)
def test_periodic_janitor_inside_the_server_expires_abandoned_uploads(
    kind: str, tmp_path: Path
) -> None:
    env = {"APP_JANITOR__INTERVAL_SECONDS": "1", "APP_JANITOR__GRACE_SECONDS": "0"}
    with own_server(kind, tmp_path, extra_env=env) as s, s.client("alice") as alice:
        annotation = create_annotation(alice)
        masks = make_masks(2)
        group = create_group(alice, annotation["id"], masks, ttl_seconds=3)
        put_all(group["uploads"][:1], masks)
        expire_uploads(s, group)
        url = group_url(annotation["id"], group["id"])
        deadline = time.monotonic() + 60
        while alice.get(url).json()["status"] != "expired":
            assert time.monotonic() < deadline, "the periodic janitor never ran"
            time.sleep(0.2)
        # The run that expired the group goes on with its other passes: wait for a run that
        # finished after the group was seen expired (the next one at the latest).
        finished = s.log_path.read_text().count('"event": "janitor.finished"')
        while s.log_path.read_text().count('"event": "janitor.finished"') <= finished:
            assert time.monotonic() < deadline, "the periodic janitor did not finish a run"
            time.sleep(0.2)
        prefix = s.data_dir / "objects" / f"mask/{annotation['id']}/{group['id']}"
        assert not prefix.exists()


def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
    env.update(
        APP_CONFIG_DIR=str(tmp_path / "none"),
        APP_SERVER__DATA_DIR=str(tmp_path),
        APP_DATABASE__URL="postgresql+asyncpg://nobody@127.0.0.1:1/none",
    )
    r = subprocess.run([str(BIN), "janitor"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "janitor failed" in r.stderr
    assert "Traceback" not in r.stderr


def test_expiry_removes_masks_an_old_migrate_added_to_a_pending_group(srv: ServerProcess) -> None:
    """Issue 19 item 3: `migrate` used to add mask rows to a pending group; expiring it then
    said "objects deleted" while the rows kept every object claimed, for good. Expiry now
    drops the rows, so the objects go, and the counts say what was done."""
    objects = srv.data_dir / "objects"
    with srv.client("alice") as alice:
        a = create_annotation(alice)["id"]
        masks = make_masks(3, size=350)
        group = create_group(alice, a, masks)
        put_all(group["uploads"], masks)

    async def add_mask_rows() -> None:  # what an earlier `migrate` left
        engine = create_async_engine(srv.database_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    insert(Mask),
                    [
                        {
                            "group_id": group["id"],
                            "filename": m.filename,
                            "object_key": u["object_key"],
                            "mime_type": "image/png",
                            "file_size": len(m.body),
                            "created_at": datetime.now(UTC),
                        }
                        for m, u in zip(masks, group["uploads"], strict=True)
                    ],
                )
        finally:
            await engine.dispose()

    asyncio.run(add_mask_rows())
    expire_uploads(srv, group)
    report = janitor(srv, "--apply", "--grace", "0")
    assert report["expired_groups"]["acted"] >= 1
    assert report["objects_deleted"] >= len(masks)
    prefix = objects / f"mask/{a}/{group['id']}"
    assert not prefix.exists() or not any(prefix.iterdir())
    with srv.client("alice") as alice:
        g = alice.get(group_url(a, group["id"])).json()
        assert (g["status"], g["mask_count"]) == ("expired", 0)
    # Nothing is left for a later run to find.
    again = janitor(srv, "--apply", "--grace", "0")
    assert not any(s.get("group_id") == group["id"] for s in again["expired_groups"]["samples"])
