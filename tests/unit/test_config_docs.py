"""docs/configuration.md names every configuration key, its variable and its default.

The reference is hand-written; these tests keep it from drifting: a key added to
config/default.toml or to the settings class without a row fails here.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from pacs_ext.core.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "configuration.md").read_text()


def _toml_keys() -> dict[str, Any]:
    data = tomllib.loads((ROOT / "config" / "default.toml").read_text())
    keys: dict[str, Any] = {}
    for name, value in data.items():
        if isinstance(value, dict):
            keys.update({f"{name}.{k}": v for k, v in value.items()})
        else:
            keys[name] = value
    return keys


def _class_keys() -> dict[str, Any]:
    keys: dict[str, Any] = {}
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            for sub, value in default:
                keys[f"{name}.{sub}"] = value
        else:
            keys[name] = default
    return keys


TOML = _toml_keys()
CLASS = _class_keys()


def _row(key: str) -> list[str]:
    """The cells of the table row whose first cell is `key`."""
    match = re.search(rf"^\| `{re.escape(key)}` \|(.*)$", DOC, re.MULTILINE)
    assert match, f"docs/configuration.md has no table row for `{key}`"
    return [cell.strip() for cell in match.group(1).split("|")]


def _shown(value: Any) -> str:
    """How the default column writes a scalar value."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float):
        return f"`{value:g}`"
    if value == "":
        return "empty"
    return f"`{value}`"


def test_the_settings_class_and_default_toml_agree_on_keys() -> None:
    # A key in default.toml the class does not know would stop start-up (extra="forbid").
    assert set(TOML) <= set(CLASS)


@pytest.mark.parametrize("key", sorted(CLASS))
def test_every_key_has_a_row_with_its_variable(key: str) -> None:
    env = "APP_" + key.upper().replace(".", "__")
    assert _row(key)[0] == f"`{env}`"


@pytest.mark.parametrize("key", sorted(CLASS))
def test_every_scalar_default_is_the_one_in_force(key: str) -> None:
    value = TOML.get(key, CLASS[key])  # default.toml wins over the class default
    if isinstance(value, list):
        shown = "[" + ", ".join(f'"{v}"' for v in value) + "]"
        assert f"`{shown}`" in _row(key)[1]
        return
    if isinstance(value, Path):
        value = f"./{value}"  # Path("./data") prints as "data"
    assert _row(key)[1].startswith(_shown(value)), (key, _row(key)[1], _shown(value))
