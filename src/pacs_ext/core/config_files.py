"""Where settings come from: which TOML files and which `.env` file are read, and the `.env`
layer itself (config.py puts the layers in order)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from pydantic import BaseModel
from pydantic_settings import DotEnvSettingsSource

from .config_error import ConfigError

# Variables that say where settings come from; they are read before the settings themselves.
META_VARIABLES = ("APP_ENV_FILE", "APP_CONFIG_DIR")


class DotEnvLayer(DotEnvSettingsSource):
    """The `.env` file as one more layer: APP_ names only, and every one must be a setting
    (a typo stops start-up, as in a TOML file); other variables there are left alone."""

    def __call__(self) -> dict[str, Any]:
        fields = self.settings_cls.model_fields
        for name in self.env_vars:
            if not name.startswith("app_") or name.upper() in META_VARIABLES:
                continue
            section, _, key = name[len("app_") :].partition("__")
            model = fields[section].default_factory if section in fields else None
            known = section in fields and (
                not key
                or not isinstance(model, type)
                or not issubclass(model, BaseModel)
                or key in model.model_fields
            )
            if not known:
                raise ConfigError(f"{self.env_file}: {name.upper()} is not a setting")
        return {k: v for k, v in super().__call__().items() if k in fields}


class ConfigLayers:
    """Where settings come from, lowest first: TOML files, then a `.env` file."""

    def __init__(self, tomls: list[Path], env_file: Path | None) -> None:
        self.tomls = tomls  # highest first, as the sources are given to pydantic-settings
        self.env_file = env_file

    def describe(self) -> list[str]:
        shown = [str(f) for f in reversed(self.tomls)]
        if self.env_file is not None:
            shown.append(str(self.env_file))
        return [*shown, "environment"]


def config_layers() -> ConfigLayers:
    """The files read: `.env` in the working directory or $APP_ENV_FILE (empty: none), and
    config/{APP_ENV}.toml and config/default.toml; APP_ENV and APP_CONFIG_DIR may also be
    given in the `.env` file (the process environment wins)."""
    raw = os.environ.get("APP_ENV_FILE")
    env_file: Path | None = None
    if raw is None:
        env_file = Path(".env") if Path(".env").is_file() else None
    elif raw:
        env_file = Path(raw)
        if not env_file.is_file():
            raise ConfigError(f"APP_ENV_FILE: {raw} is not a file (set it empty to read none)")
    from_file = {k.upper(): v for k, v in dotenv_values(env_file).items()} if env_file else {}

    def meta(name: str, default: str) -> str:
        return os.environ.get(name) or from_file.get(name) or default

    config_dir = Path(meta("APP_CONFIG_DIR", "config"))
    app_env = meta("APP_ENV", "development")
    files = [config_dir / f"{app_env}.toml", config_dir / "default.toml"]
    return ConfigLayers([f for f in files if f.is_file()], env_file)
