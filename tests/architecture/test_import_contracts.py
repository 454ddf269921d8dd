"""The layer contracts in pyproject.toml ([tool.importlinter], run by `make lint`) hold, and a
deliberate violation breaks them: lint-imports runs on a copy of the package with one import
pointing the wrong way added, and must fail naming it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "pacs_ext"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint(tmp_path: Path, package: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports with the contracts of pyproject.toml, on `package` (copied to tmp_path)."""
    src = tmp_path / "src"
    shutil.copytree(package, src / "pacs_ext", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_package_keeps_its_contracts(tmp_path: Path) -> None:
    result = _lint(tmp_path, PACKAGE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout


@pytest.mark.parametrize(
    ("module", "bad_import", "named"),
    [
        # A lower layer importing a domain: what the masks hub used to be.
        ("objects/claims.py", "from ..masks import service as _bad", "pacs_ext.masks"),
        # Storage speaking HTTP.
        ("storage/base.py", "import fastapi as _bad", "fastapi"),
        # The SDK importing the server.
        ("client/api.py", "from ..storage import base as _bad", "pacs_ext.storage"),
    ],
)
def test_a_wrong_way_import_breaks_the_contracts(
    tmp_path: Path, module: str, bad_import: str, named: str
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(PACKAGE, broken, ignore=shutil.ignore_patterns("__pycache__"))
    target = broken / module
    text = target.read_text()
    head, sep, rest = text.partition("from __future__ import annotations\n")
    target.write_text(head + sep + f"\n{bad_import}\n" + rest)
    result = _lint(tmp_path / "run", broken)
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout
    assert named in result.stdout
    assert "pacs_ext." + module.removesuffix(".py").replace("/", ".") in result.stdout
