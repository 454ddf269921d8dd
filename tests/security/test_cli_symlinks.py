"""The CLI stays in its folder: `migrate` and `upload` do not follow file symlinks out of the
source (unless --follow-symlinks), `download` never writes through a symlink planted at its
`.part` name, and a destination that cannot be created is one line and a non-zero exit."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from fixtures.databases import sqlite_database
from fixtures.factories import create_annotation, create_group, group_url, make_masks, put_all
from fixtures.images import png_mask, write_png_masks
from fixtures.server import BIN, ServerProcess, make_token


def cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = server.env()
    env["PACS_EXT_SERVER"] = server.url
    env["PACS_EXT_TOKEN"] = make_token("alice")
    env["COLUMNS"] = "200"
    r = subprocess.run(
        [str(BIN), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert "Traceback" not in r.stderr, r.stderr
    return r


def test_migrate_ignores_file_symlinks_out_of_the_source(tmp_path: Path) -> None:
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("not a mask\n")
    group = tmp_path / "src" / "1" / "1"
    group.mkdir(parents=True)
    (group / "0001_liver.png").write_bytes(png_mask(1))
    (group / "0002_liver.png").symlink_to(secret)  # out of the tree
    (group / "0003_liver.png").symlink_to(group / "0001_liver.png")  # inside: fine
    with sqlite_database(tmp_path / "db") as url:
        srv = ServerProcess(data_dir=tmp_path / "data", database_url=url)
        objects = srv.data_dir / "objects" / "mask" / "1" / "1"

        r = cli(srv, "migrate", str(tmp_path / "src"), "--no-register", "--json")
        assert r.returncode == 0, r.stderr
        summary = json.loads(r.stdout)
        assert any("1/1/0002_liver.png" in i and "symlink" in i for i in summary["ignored"])
        assert sorted(p.name for p in objects.iterdir()) == ["0001_liver.png", "0003_liver.png"]

        r = cli(srv, "migrate", str(tmp_path / "src"), "--no-register", "--follow-symlinks")
        assert r.returncode == 0, r.stderr
        assert (objects / "0002_liver.png").read_text() == "not a mask\n"


@pytest.mark.server_kinds("sqlite")
def test_upload_refuses_file_symlinks_out_of_the_folder(
    server: ServerProcess, alice: httpx.Client, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.png"
    secret.write_bytes(png_mask(9))
    folder = tmp_path / "m"
    write_png_masks(folder, 1, ("liver",))
    (folder / "0002_liver.png").symlink_to(secret)
    (folder / "0003_liver.png").symlink_to(folder / "0001_liver.png")
    a = str(create_annotation(alice)["id"])

    r = cli(server, "upload", "-a", a, str(folder), "--quiet")
    assert r.returncode == 1
    assert "0002_liver.png" in r.stderr
    assert "--follow-symlinks" in r.stderr
    assert "0003_liver.png" not in r.stderr
    assert alice.get(f"/api/annotations/{a}/mask-groups").json()["total"] == 0

    r = cli(server, "upload", "-a", a, str(folder), "--quiet", "--follow-symlinks")
    assert r.returncode == 0, r.stderr
    assert "complete: 3 masks" in r.stdout


@pytest.mark.server_kinds("sqlite")
def test_download_never_writes_through_a_planted_part_symlink(
    server: ServerProcess, alice: httpx.Client, tmp_path: Path
) -> None:
    a = create_annotation(alice)["id"]
    masks = make_masks(2, size=500)  # 0001_liver.png, 0001_spleen.png
    group = create_group(alice, a, masks)
    put_all(group["uploads"], masks)
    assert alice.post(group_url(a, group["id"]) + "/complete").status_code == 200
    args = ["download", "-a", str(a), "-g", str(group["id"]), "--quiet"]

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / ".0001_liver.png.part").symlink_to(victim)
    (dest / ".0001_spleen.png.part").write_bytes(b"stale bytes of an earlier run")
    r = cli(server, *args, str(dest))
    assert r.returncode == 1
    assert "0001_liver.png" in r.stderr
    assert "symlink" in r.stderr
    assert victim.read_text() == "precious\n"
    assert (dest / ".0001_liver.png.part").is_symlink()
    assert not (dest / "0001_liver.png").exists()
    # The stale regular .part was replaced; that file arrived whole.
    assert (dest / "0001_spleen.png").read_bytes() == masks[1].body
    assert not (dest / ".0001_spleen.png.part").exists()

    # A destination that cannot be created: one line, non-zero exit.
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    r = cli(server, *args, str(blocker / "sub"))
    assert r.returncode == 1
    assert "Not a directory" in r.stderr
    assert str(blocker / "sub") in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_a_folder_that_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    with sqlite_database(tmp_path / "db") as url:
        srv = ServerProcess(data_dir=tmp_path / "data", database_url=url)
        blocker = tmp_path / "a-file"
        blocker.write_text("x")
        # The local store's folder cannot be created under a file.
        srv.extra_env["APP_SERVER__DATA_DIR"] = str(blocker / "data")
        src = tmp_path / "src" / "1" / "1"
        src.mkdir(parents=True)
        (src / "0001_liver.png").write_bytes(png_mask(1))
        r = cli(srv, "migrate", str(tmp_path / "src"), "--no-register")
        assert r.returncode != 0
        assert "Not a directory" in r.stderr
        assert os.path.exists(blocker)
