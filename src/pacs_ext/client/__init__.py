"""The Python SDK: a typed async client for the API, and the mask-group uploader/downloader.

async with PacsClient("http://127.0.0.1:8000", token) as client:
    result = await upload_mask_group(client, annotation_id, Path("masks/"))
"""

from .api import PacsClient
from .downloader import DownloadResult, download_mask_group
from .errors import (
    ApiError,
    ClientError,
    DownloadFailed,
    FileFailure,
    IncompleteUpload,
    LocalFileError,
    ServerUnreachable,
    UploadFailed,
)
from .progress import TransferProgress
from .retry import RetryPolicy
from .uploader import UploadResult, upload_mask_group

__all__ = [
    "ApiError",
    "ClientError",
    "DownloadFailed",
    "DownloadResult",
    "FileFailure",
    "IncompleteUpload",
    "LocalFileError",
    "PacsClient",
    "RetryPolicy",
    "ServerUnreachable",
    "TransferProgress",
    "UploadFailed",
    "UploadResult",
    "download_mask_group",
    "upload_mask_group",
]
