"""DICOMweb (QIDO-RS, WADO-RS, STOW-RS) with dicomweb-client, behind a small blocking API.

No HTTP framework and no configuration here: callers pass a `DicomwebTarget` (the server
builds one from `dicomweb.*`, the SDK from its arguments) and run the calls in a thread."""

from .client import (
    DicomwebError,
    DicomwebTarget,
    StoredInstance,
    find_series,
    retrieve_instance,
    series_metadata,
    series_metadata_json,
    store,
    store_encoded,
)

__all__ = [
    "DicomwebError",
    "DicomwebTarget",
    "StoredInstance",
    "find_series",
    "retrieve_instance",
    "series_metadata",
    "series_metadata_json",
    "store",
    "store_encoded",
]
