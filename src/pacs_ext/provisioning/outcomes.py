"""What one provisioning step came to, and the requests a dry run prints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import ClientError

from .s3calls import said

Status = Literal["unchanged", "changed", "refused", "skipped", "warning", "failed"]


@dataclass
class Outcome:
    setting: str
    status: Status
    detail: str
    instead: str = ""


@dataclass
class Request:
    operation: str
    params: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"operation": self.operation, "params": self.params}


class Failure(Exception):
    """A real failure of one setting; fatal ones stop the run."""

    def __init__(self, detail: str, *, fatal: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fatal = fatal


class Refusal(Exception):
    def __init__(self, exc: ClientError) -> None:
        super().__init__(said(exc))
        self.exc = exc
