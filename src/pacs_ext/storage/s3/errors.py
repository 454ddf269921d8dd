"""botocore/aiohttp failures → storage-neutral errors whose message names bucket and operation."""

from __future__ import annotations

import asyncio

import aiohttp
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)

from ..base import (
    ChecksumMismatch,
    MultipartUploadNotFound,
    ObjectArchived,
    ObjectNotFound,
    StorageAccessDenied,
    StorageError,
    StorageUnavailable,
)

NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound"})
ACCESS_DENIED = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "403",
        "Forbidden",
        "AllAccessDisabled",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AccountProblem",
        "RequestTimeTooSkewed",
    }
)
UNAVAILABLE = frozenset(
    {
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeout",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "503",
        "500",
        "502",
        "504",
    }
)


class S3Failure:
    """Builds the error for one failed call; `where` names the bucket and endpoint."""

    __slots__ = ("bucket", "endpoint")

    def __init__(self, bucket: str, endpoint: str) -> None:
        self.bucket = bucket
        self.endpoint = endpoint

    def translate(self, exc: BaseException, operation: str, key: str | None = None) -> StorageError:
        where = f"bucket {self.bucket!r} at {self.endpoint}"
        if isinstance(exc, StorageError):
            return exc
        if isinstance(exc, ClientError):
            return self._client_error(exc, operation, key, where)
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return StorageAccessDenied(
                f"no usable credentials for {operation} on {where}: object_storage.access_key/"
                "secret_key are empty and the AWS credential chain (environment, profile, "
                f"IAM role) found none ({exc})"
            )
        if isinstance(exc, CredentialRetrievalError):
            return StorageAccessDenied(
                f"could not load credentials for {operation} on {where}: {exc}"
            )
        if isinstance(
            exc,
            (ConnectionError, HTTPClientError, aiohttp.ClientError, asyncio.TimeoutError, OSError),
        ):
            return StorageUnavailable(
                f"cannot reach {self.endpoint} for {operation} on bucket {self.bucket!r}: "
                f"{type(exc).__name__}: {_short(exc)}"
            )
        if isinstance(exc, BotoCoreError):
            return StorageError(f"{operation} on {where} failed: {_short(exc)}")
        raise exc

    def _client_error(
        self, exc: ClientError, operation: str, key: str | None, where: str
    ) -> StorageError:
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        message = str(error.get("Message") or "").strip()
        said = f"{code}{': ' + message if message and message != code else ''}"
        if code == "NoSuchBucket":
            return StorageUnavailable(
                f"bucket {self.bucket!r} does not exist at {self.endpoint} ({operation}); "
                "create it or fix object_storage.bucket_name"
            )
        if code == "NoSuchUpload":
            return MultipartUploadNotFound(
                f"multipart upload of {key!r} no longer exists in {where} ({operation})"
            )
        if code == "InvalidObjectState":
            return ObjectArchived(
                f"{key!r} in {where} is archived ({operation}: {said}); restore it first"
            )
        if code in ("BadDigest", "InvalidDigest"):
            return ChecksumMismatch(
                f"{operation} of {key!r} on {where}: storage refused the body ({said})"
            )
        if code in NOT_FOUND or (status == 404 and not code):
            return ObjectNotFound(key or f"{operation} on {where}")
        if code in ACCESS_DENIED or status == 403:
            return StorageAccessDenied(
                f"{operation} on {where} was refused ({said}); check object_storage.access_key "
                "and secret_key and that they may use this bucket"
            )
        if code in UNAVAILABLE or status >= 500:
            return StorageUnavailable(f"{operation} on {where} failed ({said or status}); retry")
        return StorageError(f"{operation} on {where} failed ({said or status})")


def _short(exc: BaseException) -> str:
    text = str(exc) or repr(exc)
    # Endpoint errors can quote a URL; a presigned query string must never reach a log.
    return text.split("?", 1)[0][:300]
