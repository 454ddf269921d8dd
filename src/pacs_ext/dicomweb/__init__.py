"""DICOMweb (QIDO-RS, WADO-RS, STOW-RS) with dicomweb-client, behind a small blocking API.

No HTTP framework and no configuration here: callers pass a `DicomwebTarget` (the server
builds one from `dicomweb.*`, the SDK from its arguments) and run the calls in a thread. The
calls are in `client.py`, imported where they are made: dicomweb-client, requests and pydicom
cost a server that never exports ~0.4 s of CPU at every start."""

from .target import DicomwebError, DicomwebTarget, StoredInstance

__all__ = ["DicomwebError", "DicomwebTarget", "StoredInstance"]
