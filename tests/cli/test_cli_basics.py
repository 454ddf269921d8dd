"""`pacs-ext db upgrade`, `token` and `serve` refusing an un-migrated database."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import jwt
import pytest

from fixtures.server import BIN, TEST_JWT_SECRET


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
    e.update(
        APP_CONFIG_DIR=str(tmp_path / "none"),
        APP_SERVER__DATA_DIR=str(tmp_path / "data"),
        APP_AUTH__JWT_SECRET=TEST_JWT_SECRET,
    )
    return e


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=120)


def test_token_prints_a_verifiable_token(env: dict[str, str]) -> None:
    r = run(env, "token", "alice")
    assert r.returncode == 0
    claims = jwt.decode(r.stdout.strip(), TEST_JWT_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice"
    assert claims["roles"] == []
    admin = jwt.decode(
        run(env, "token", "root", "--admin").stdout.strip(), TEST_JWT_SECRET, algorithms=["HS256"]
    )
    assert admin["roles"] == ["admin"]


def test_serve_refuses_an_unmigrated_database_then_db_upgrade_fixes_it(
    env: dict[str, str], tmp_path: Path
) -> None:
    r = run(env, "serve", "--port", "1")
    assert r.returncode == 1
    assert "pacs-ext db upgrade" in r.stderr
    r = run(env, "db", "upgrade")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "data" / "pacs_ext.db").is_file()
    again = run(env, "db", "upgrade")
    assert again.returncode == 0


def test_unknown_command_is_a_clear_error(env: dict[str, str]) -> None:
    r = run(env, "frobnicate")
    assert r.returncode != 0
    assert "Traceback" not in r.stderr


def _loaded_after(setup: str, modules: tuple[str, ...]) -> list[str]:
    """Which of `modules` a fresh interpreter has imported after running `setup`."""
    import sys

    code = f"import sys\n{setup}\nprint(' '.join(m for m in {modules!r} if m in sys.modules))\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_client_commands_do_not_load_the_server() -> None:
    """`pacs-ext upload/download` import only the SDK: no FastAPI, Alembic, uvicorn, ORM."""
    setup = (
        "from pacs_ext.cli import load_command\nload_command('upload'); load_command('download')"
    )
    server = ("fastapi", "alembic", "uvicorn", "sqlalchemy", "aiobotocore")
    assert _loaded_after(setup, server) == []


def test_upload_command_imports_only_what_an_upload_uses() -> None:
    """Every start of `pacs-ext upload` pays for its imports (most of its CPU on a small
    upload): none of the server, the DICOM stack, the other commands' schemas, httpx's own
    command line (click, pygments), httpx's own transport (httpcore, anyio: the SDK's
    clients use the lean one), rich's console or the bars drawn only on a terminal."""
    unused = (
        *("fastapi", "starlette", "alembic", "uvicorn", "sqlalchemy", "jwt"),
        *("pydantic_settings", "aiobotocore", "botocore", "numpy", "pydicom", "PIL"),
        *("click", "pygments", "httpcore", "anyio", "rich.console", "rich.progress"),
        *("pacs_ext.core.config", "pacs_ext.annotations", "pacs_ext.exports"),
        *("pacs_ext.seg", "pacs_ext.dicomweb", "pacs_ext.client.seg_import"),
        "pacs_ext.cli.progress_bars",
    )
    setup = (
        "from pacs_ext.cli import load_command\n"
        "load_command('upload')\n"
        "import asyncio\n"
        "from pacs_ext.client import PacsClient\n"
        "async def clients():\n"
        "    async with PacsClient('http://127.0.0.1:9', 'token'):\n"
        "        pass\n"
        "asyncio.run(clients())"
    )
    assert _loaded_after(setup, unused) == []


def test_the_server_loads_the_dicom_stack_only_to_export() -> None:
    """Every `pacs-ext serve` (and every in-process app) imports the app: highdicom, pydicom,
    numpy, dicomweb-client and requests cost ~0.4 s of CPU there, for exports that most
    servers never run. They load with the first export (and in its worker process)."""
    heavy = ("highdicom", "pydicom", "numpy", "dicomweb_client", "requests", "PIL", "pyspng")
    assert _loaded_after("from pacs_ext.app import create_app\ncreate_app()", heavy) == []


def test_help_lists_every_command(env: dict[str, str]) -> None:
    r = run(env, "--help")
    assert r.returncode == 0
    for name in (
        "db",
        "storage",
        "serve",
        "token",
        "upload",
        "download",
        "janitor",
        "migrate",
        "reindex",
    ):
        assert name in r.stdout
