"""`object_storage.legacy_local_dir` is checked (issue 19 item 2): a misspelt or unreadable
folder, or one that is not the mask tree, stops `serve`, fails `/ready` and `storage check`,
instead of every old mask silently getting a URL that 404s."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from fixtures.inprocess import AppFactory
from fixtures.server import BIN, ServerProcess
from pacs_ext.objects.legacy_folder import inspect


def _tree(root: Path) -> Path:
    (root / "12" / "34").mkdir(parents=True)
    (root / "12" / "34" / "0001_liver.png").write_bytes(b"png")
    return root


def test_inspect_tells_each_way_a_folder_is_wrong(tmp_path: Path) -> None:
    assert inspect(str(_tree(tmp_path / "good"))).ok
    missing = inspect(str(tmp_path / "goood"))
    assert (missing.ok, "does not exist" in missing.detail) == (False, True)
    (tmp_path / "file").write_text("x")
    assert "not a folder" in inspect(str(tmp_path / "file")).detail
    assert "absolute" in inspect("relative/path").detail
    (tmp_path / "other" / "photos").mkdir(parents=True)
    assert "does not look like" in inspect(str(tmp_path / "other")).detail
    (tmp_path / "empty").mkdir()
    assert not inspect(str(tmp_path / "empty")).ok
    if os.geteuid() != 0:  # root reads anything
        locked = _tree(tmp_path / "locked")
        locked.chmod(0)
        try:
            assert "not readable" in inspect(str(locked)).detail
        finally:
            locked.chmod(0o755)


async def test_ready_reports_the_folder(make_app: AppFactory, tmp_path: Path) -> None:
    good = _tree(tmp_path / "legacy")
    app = await make_app(object_storage={"legacy_local_dir": str(good)})
    async with app.anonymous() as c:
        r = await c.get("/ready")
    assert r.status_code == 200
    assert r.json()["checks"]["legacy_local_dir"] == "ok"

    app = await make_app(object_storage={"legacy_local_dir": str(tmp_path / "legacyy")})
    async with app.anonymous() as c:
        r = await c.get("/ready")
    assert r.status_code == 503
    assert r.json()["failing"] == ["legacy_local_dir"]
    assert "does not exist" in r.json()["checks"]["legacy_local_dir"]


@pytest.mark.e2e
def test_serve_refuses_and_storage_check_fails_on_a_misspelt_folder(tmp_path: Path) -> None:
    srv = ServerProcess(data_dir=tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path}/t.db")
    srv.extra_env["APP_OBJECT_STORAGE__LEGACY_LOCAL_DIR"] = str(tmp_path / "masks-old")
    srv.migrate_database()
    r = subprocess.run(
        [str(BIN), "serve"], env=srv.env(), capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2
    assert "object_storage.legacy_local_dir" in r.stderr
    assert "does not exist" in r.stderr
    assert "Traceback" not in r.stderr

    check = srv.run_cli("storage", "check", "--json", check=False)
    assert check.returncode == 1, check.stdout + check.stderr
    steps = {s["name"]: s for s in json.loads(check.stdout)["steps"]}
    assert steps["object_storage.legacy_local_dir"]["status"] == "FAIL"

    _tree(tmp_path / "masks-old")
    check = srv.run_cli("storage", "check", "--json", check=False)
    assert check.returncode == 0, check.stdout + check.stderr
