"""Where a DICOMweb server is, how to authenticate, and what its calls give back: plain data,
so that the server's start-up does not load requests, dicomweb-client and pydicom (client.py
does, for the calls themselves)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import requests

Auth = Literal["none", "basic", "bearer"]


class DicomwebError(Exception):
    """The DICOMweb server refused, failed or could not be reached; `status` when it answered."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class DicomwebTarget:
    """Where the PACS is and how to authenticate (never logged: holds secrets)."""

    url: str
    auth: Auth = "none"
    username: str = ""
    password: str = ""
    token: str = ""
    timeout_seconds: float = 60.0

    def __repr__(self) -> str:
        return f"DicomwebTarget(url={self.url!r}, auth={self.auth!r})"

    def session(self) -> requests.Session:
        import requests  # with dicomweb-client, only where DICOMweb is spoken (client.py)

        session = requests.Session()
        if self.auth == "basic":
            session.auth = (self.username, self.password)
        elif self.auth == "bearer":
            session.headers["Authorization"] = f"Bearer {self.token}"
        return session


@dataclass(frozen=True, slots=True)
class StoredInstance:
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    retrieve_url: str | None
