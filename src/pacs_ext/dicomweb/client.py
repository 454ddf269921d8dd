"""Blocking DICOMweb calls (dicomweb-client on requests); errors become DicomwebError."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset

Auth = Literal["none", "basic", "bearer"]
PIXEL_DATA = "7FE00010"


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


class _TimeoutSession(requests.Session):
    """requests has no session-wide timeout; dicomweb-client passes none per call."""

    def __init__(self, base: requests.Session, timeout: float) -> None:
        super().__init__()
        self.auth = base.auth
        self.headers.update(base.headers)
        self._timeout = timeout

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout)
        return super().request(*args, **kwargs)


def connect(target: DicomwebTarget) -> DICOMwebClient:
    session = _TimeoutSession(target.session(), target.timeout_seconds)
    return DICOMwebClient(url=target.url.rstrip("/"), session=session)


@contextmanager
def _translated(doing: str, target: DicomwebTarget) -> Iterator[None]:
    try:
        yield
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        raise DicomwebError(
            f"{doing}: the DICOMweb server at {target.url} answered {status}", status
        ) from None
    except requests.RequestException as exc:
        raise DicomwebError(
            f"{doing}: cannot reach the DICOMweb server at {target.url} ({type(exc).__name__})"
        ) from None


def series_metadata(
    target: DicomwebTarget, study_instance_uid: str, series_instance_uid: str
) -> list[Dataset]:
    """Every instance's attributes (no pixel data) of one series, by WADO-RS metadata."""
    with _translated(f"reading series {series_instance_uid}", target):
        items = connect(target).retrieve_series_metadata(
            study_instance_uid=study_instance_uid, series_instance_uid=series_instance_uid
        )
    # Bulk data (pixels) is not needed to reference an image, and is not fetched.
    return [Dataset.from_json({k: v for k, v in item.items() if k != PIXEL_DATA}) for item in items]


def store(target: DicomwebTarget, datasets: Sequence[Dataset]) -> list[StoredInstance]:
    """STOW-RS; the instances the server says it stored (a failed one is a DicomwebError)."""
    with _translated("storing by STOW-RS", target):
        answer = connect(target).store_instances(datasets=list(datasets))
    failed = answer.get("FailedSOPSequence")
    if failed:
        reasons = sorted({str(item.get("FailureReason", "?")) for item in failed})
        raise DicomwebError(
            f"the DICOMweb server refused {len(failed)} instance(s) (FailureReason {reasons})"
        )
    stored: list[StoredInstance] = []
    by_uid = {str(ds.SOPInstanceUID): ds for ds in datasets}
    for item in answer.get("ReferencedSOPSequence", []):
        uid = str(item.ReferencedSOPInstanceUID)
        ds = by_uid.get(uid)
        stored.append(
            StoredInstance(
                study_instance_uid=str(ds.StudyInstanceUID) if ds else "",
                series_instance_uid=str(ds.SeriesInstanceUID) if ds else "",
                sop_instance_uid=uid,
                retrieve_url=str(item.get("RetrieveURL", "")) or None,
            )
        )
    return stored


def find_series(
    target: DicomwebTarget, study_instance_uid: str | None = None, **filters: str
) -> list[dict[str, Any]]:
    """QIDO-RS series search (DICOM JSON), e.g. `Modality="SEG"`."""
    with _translated("searching series", target):
        found: list[dict[str, Any]] = connect(target).search_for_series(
            study_instance_uid=study_instance_uid, search_filters=dict(filters)
        )
    return found


def retrieve_instance(
    target: DicomwebTarget,
    study_instance_uid: str,
    series_instance_uid: str,
    sop_instance_uid: str,
) -> Dataset:
    """One instance by WADO-RS."""
    with _translated(f"retrieving instance {sop_instance_uid}", target):
        ds: Dataset = connect(target).retrieve_instance(
            study_instance_uid=study_instance_uid,
            series_instance_uid=series_instance_uid,
            sop_instance_uid=sop_instance_uid,
        )
    return ds


def series_instances(
    target: DicomwebTarget, study_instance_uid: str, series_instance_uid: str
) -> list[str]:
    """SOP Instance UIDs of a series (QIDO-RS)."""
    with _translated(f"listing series {series_instance_uid}", target):
        found = connect(target).search_for_instances(
            study_instance_uid=study_instance_uid, series_instance_uid=series_instance_uid
        )
    return [str(item["00080018"]["Value"][0]) for item in found]
