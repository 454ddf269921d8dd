"""Errors the SDK raises: every one carries a message a person can act on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class ClientError(Exception):
    """Base class of everything the SDK raises."""


class ServerUnreachable(ClientError):
    """No HTTP answer from the server (refused, timed out, DNS...) after the retries."""


class ApiError(ClientError):
    """The API answered with an error status; `error` and `detail` come from its JSON body."""

    def __init__(
        self, status_code: int, error: str, detail: Any, body: dict[str, Any] | None = None
    ) -> None:
        self.status_code = status_code
        self.error = error
        self.detail = detail
        self.body = body or {}
        super().__init__(f"{status_code} {error}: {detail}")


class IncompleteUpload(ApiError):
    """`complete` answered 409 because files are missing or differ from what was declared."""

    @property
    def missing(self) -> list[str]:
        return [str(p["filename"]) for p in self.body.get("missing", [])]

    @property
    def mismatched(self) -> list[str]:
        return [str(p["filename"]) for p in self.body.get("mismatched", [])]

    @property
    def truncated(self) -> bool:
        """The server listed only some of the problems (limits.conflict_max_names)."""
        return bool(self.body.get("truncated", False))


@dataclass(frozen=True, slots=True)
class FileFailure:
    filename: str
    reason: str
    # Storage has no object for it (404): running the command again cannot help.
    missing: bool = False


class UploadFailed(ClientError):
    """Some files could not be uploaded; the group was left pending so a re-run can resume."""

    def __init__(self, group_id: int, failures: Sequence[FileFailure]) -> None:
        self.group_id = group_id
        self.failures = list(failures)
        first = "; ".join(f"{f.filename}: {f.reason}" for f in self.failures[:3])
        more = f" (and {len(self.failures) - 3} more)" if len(self.failures) > 3 else ""
        super().__init__(
            f"{len(self.failures)} file(s) failed to upload to mask group {group_id}: {first}{more}"
        )


class DownloadFailed(ClientError):
    def __init__(self, failures: Sequence[FileFailure]) -> None:
        self.failures = list(failures)
        first = "; ".join(f"{f.filename}: {f.reason}" for f in self.failures[:3])
        more = f" (and {len(self.failures) - 3} more)" if len(self.failures) > 3 else ""
        super().__init__(f"{len(self.failures)} file(s) failed to download: {first}{more}")


class LocalFileError(ClientError):
    """A local file cannot be uploaded as it is (bad name, unreadable, vanished)."""
