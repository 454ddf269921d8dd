"""The state and verdicts of one `pacs-ext storage check` run."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import httpx

from ..core.config import Settings
from ..storage.s3.client import S3Storage
from .s3calls import Flavour, flavour_of

Status = Literal["PASS", "WARN", "FAIL", "SKIP"]


@dataclass
class Step:
    name: str
    status: Status
    detail: str
    cause: str = ""
    fix: str = ""

    def as_json(self) -> dict[str, str]:
        return asdict(self)


class CheckRun:
    """Verdicts so far, and why the steps still to come cannot run (`blocked`)."""

    def __init__(self, settings: Settings, storage: S3Storage, http: httpx.AsyncClient) -> None:
        self.settings = settings
        self.o = settings.object_storage
        self.storage = storage
        self.http = http
        self.steps: list[Step] = []
        self.blocked = ""  # why the steps still to come cannot run
        self.flavour: Flavour = flavour_of(settings)
        self.client: Any = None
        self.store_date: float | None = None
        self.allowed_origin = ""  # a configured origin whose preflight passed
        self.local_mid = 0.0

    def add(self, name: str, status: Status, detail: str, cause: str = "", fix: str = "") -> None:
        self.steps.append(Step(name, status, detail, cause, fix))

    def skip(self, *names: str) -> None:
        for name in names:
            self.add(name, "SKIP", f"skipped: {self.blocked}")
