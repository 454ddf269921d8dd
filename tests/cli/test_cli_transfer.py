"""`pacs-ext upload` and `pacs-ext download` as a person runs them: a byte-identical round trip,
a resumed re-run, and clear errors with non-zero exits."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest

from fixtures.factories import create_annotation, create_group, make_masks
from fixtures.images import write_png_masks
from fixtures.objects import StoredObjects
from fixtures.server import BIN, ServerProcess, free_port, make_token


def cli(
    server: ServerProcess, *args: str, token: str | None = None, env_server: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = server.env()
    env["PACS_EXT_SERVER"] = env_server or server.url
    env["PACS_EXT_TOKEN"] = make_token("alice") if token is None else token
    env["COLUMNS"] = "200"
    return subprocess.run(
        [str(BIN), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.startswith(".")}


def test_upload_then_download_is_byte_identical(
    server: ServerProcess, alice: httpx.Client, tmp_path: Path
) -> None:
    write_png_masks(tmp_path / "masks", 15, ("liver", "spleen"))
    annotation = create_annotation(alice)
    up = cli(
        server, "upload", "--annotation", str(annotation["id"]), str(tmp_path / "masks"),
        "--group-name", "cli-run", "--model-name", "TotalSegmentator", "--modality", "CT",
    )  # fmt: skip
    assert up.returncode == 0, up.stderr
    assert "complete: 30 masks" in up.stdout
    assert "Traceback" not in up.stderr
    groups = alice.get(f"/api/annotations/{annotation['id']}/mask-groups").json()["items"]
    (group,) = groups
    assert (group["group_name"], group["model_name"], group["slice_count"]) == (
        "cli-run",
        "TotalSegmentator",
        15,
    )
    assert f"mask group {group['id']} complete" in up.stdout

    again = cli(server, "upload", "-a", str(annotation["id"]), str(tmp_path / "masks"))
    assert again.returncode == 0, again.stderr
    assert "30 already uploaded" in again.stdout
    assert f"mask group {group['id']} complete" in again.stdout

    down = cli(
        server, "download", "--annotation", str(annotation["id"]), "--group", str(group["id"]),
        str(tmp_path / "copy"),
    )  # fmt: skip
    assert down.returncode == 0, down.stderr
    assert "fetched 30 file(s)" in down.stdout
    assert files_of(tmp_path / "copy") == files_of(tmp_path / "masks")


def test_server_and_token_as_options(
    server: ServerProcess, alice: httpx.Client, tmp_path: Path
) -> None:
    write_png_masks(tmp_path / "m", 2, ("liver",))
    annotation = create_annotation(alice)
    r = cli(
        server, "upload", "-a", str(annotation["id"]), str(tmp_path / "m"), "--quiet",
        "--server", server.url, "--token", make_token("alice"),
        token="", env_server="http://127.0.0.1:1",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "complete: 2 masks" in r.stdout


# The messages do not depend on the database: one server is enough.
@pytest.mark.server_kinds("sqlite")
def test_clear_errors_and_exit_codes(
    server: ServerProcess, alice: httpx.Client, tmp_path: Path
) -> None:
    write_png_masks(tmp_path / "m", 1, ("liver",))
    folder = str(tmp_path / "m")
    annotation = create_annotation(alice)
    aid = str(annotation["id"])
    seen: list[subprocess.CompletedProcess[str]] = []

    def run(*args: str, **kw: str) -> subprocess.CompletedProcess[str]:
        seen.append(cli(server, *args, **kw))
        return seen[-1]

    r = run("upload", "-a", aid, folder, token="")
    assert r.returncode == 2
    assert "no token" in r.stderr

    r = run("upload", "-a", aid, folder, token="garbage")
    assert r.returncode == 1
    assert "401 Unauthorized" in r.stderr
    assert "PACS_EXT_TOKEN" in r.stderr

    r = run("upload", "-a", "999999", folder)
    assert r.returncode == 1
    assert "404 NotFound" in r.stderr

    r = run("upload", "-a", aid, str(tmp_path / "missing"))
    assert r.returncode == 1
    assert "does not exist" in r.stderr

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "slice one.png").write_bytes(b"x")
    r = run("upload", "-a", aid, str(tmp_path / "bad"))
    assert r.returncode == 1
    assert "slice one.png" in r.stderr

    unreachable = f"http://127.0.0.1:{free_port()}"
    r = run("upload", "-a", aid, folder, "--retries", "1", env_server=unreachable)
    assert r.returncode == 1
    assert "cannot reach the server" in r.stderr

    r = run("upload", "-a", aid, folder, env_server="localhost:8000")
    assert r.returncode == 2
    assert "http://" in r.stderr

    pending = create_group(alice, annotation["id"], make_masks(1))
    r = run("download", "-a", aid, "-g", str(pending["id"]), str(tmp_path / "d"))
    assert r.returncode == 1
    assert "pending" in r.stderr

    assert all("Traceback" not in x.stderr for x in seen)


@pytest.mark.server_kinds("postgres-rgw")
def test_a_large_file_round_trips_through_multipart(
    server: ServerProcess, alice: httpx.Client, tmp_path: Path, objects: StoredObjects
) -> None:
    write_png_masks(tmp_path / "masks", 2, ("liver",))
    # Above the RGW server's 8 MiB multipart threshold: two parts (16 MiB + 1 MiB).
    (tmp_path / "masks" / "volume_ct.nii").write_bytes(os.urandom(17 * 1024 * 1024))
    annotation = create_annotation(alice)
    aid = str(annotation["id"])
    up = cli(server, "upload", "-a", aid, str(tmp_path / "masks"))
    assert up.returncode == 0, up.stderr
    assert "complete: 3 masks" in up.stdout
    assert objects.uploads(f"mask/{aid}/") == []  # the multipart upload was completed
    (group,) = alice.get(f"/api/annotations/{aid}/mask-groups").json()["items"]
    down = cli(server, "download", "-a", aid, "-g", str(group["id"]), str(tmp_path / "copy"))
    assert down.returncode == 0, down.stderr
    assert files_of(tmp_path / "copy") == files_of(tmp_path / "masks")


@pytest.mark.server_kinds("sqlite")
def test_download_tells_a_missing_object_from_a_failure_worth_retrying(
    server: ServerProcess, alice: httpx.Client, tmp_path: Path
) -> None:
    """Issue 19 item 4: "run the same command again" cannot help an object storage lost."""
    from fixtures.factories import group_url, put_all

    masks = make_masks(3, size=500)
    annotation = create_annotation(alice)
    group = create_group(alice, annotation["id"], masks)
    put_all(group["uploads"], masks)
    assert alice.post(group_url(annotation["id"], group["id"]) + "/complete").status_code == 200
    lost = group["uploads"][0]["object_key"]
    (server.data_dir / "objects" / lost).unlink()
    aid, gid = str(annotation["id"]), str(group["id"])
    down = cli(server, "download", "-a", aid, "-g", gid, str(tmp_path / "d"), "--retries", "0")
    assert down.returncode == 1
    assert "1 of them are missing from object storage" in down.stderr
    assert "run the same command again" not in down.stderr
    assert "Traceback" not in down.stderr
