"""Raw S3 calls for bucket administration, and what their errors mean: a store refusing a
feature (carry on) versus a real failure (stop)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any, Literal

import aiohttp
from botocore import xform_name
from botocore.exceptions import BotoCoreError, ClientError

from ..core.config import Settings

# Connection problems, missing credentials, timeouts: nothing was decided by the store.
TRANSPORT_FAILURES = (BotoCoreError, aiohttp.ClientError, asyncio.TimeoutError, OSError)
# Codes with which stores say "I don't do that" rather than "you may not" or "broken".
REFUSAL_CODES = frozenset(
    {
        "NotImplemented",
        "XNotImplemented",
        "InvalidArgument",
        "InvalidRequest",
        "InvalidStorageClass",
        "MethodNotAllowed",
        "UnsupportedOperation",
    }
)

# Ceph RGW request ids: tx<hex>-<hex time>-<hex>-<zonegroup>; AWS and MinIO use bare hex.
_RGW_REQUEST_ID = re.compile(r"tx[0-9a-f]{8,}-[0-9a-f]{8,}-[0-9a-f]+-")
Flavour = Literal["aws", "ceph", "minio", "s3-compatible"]
FLAVOUR_NAMES: dict[Flavour, str] = {
    "aws": "AWS S3",
    "ceph": "Ceph RGW",
    "minio": "MinIO",
    "s3-compatible": "this S3-compatible store",
}


async def call(client: Any, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """One S3 API call by its API name (PutBucketCors...), with exactly these parameters."""
    method = getattr(client, xform_name(operation))
    result: dict[str, Any] = await method(**params)
    return result


def error_code(exc: ClientError) -> tuple[str, int, str]:
    """(code, HTTP status, message) of a refused call; HEAD answers have no code: "404"..."""
    error = exc.response.get("Error", {})
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return str(error.get("Code") or status), status, str(error.get("Message") or "").strip()


def response_headers(obj: Any) -> dict[str, str]:
    """HTTP headers of a response dict or of a ClientError."""
    response = obj.response if isinstance(obj, ClientError) else obj
    headers = (response or {}).get("ResponseMetadata", {}).get("HTTPHeaders", {})
    return {str(k).lower(): str(v) for k, v in headers.items()}


def is_refusal(exc: ClientError) -> bool:
    code, status, _ = error_code(exc)
    return code in REFUSAL_CODES or status in (405, 501)


def said(exc: ClientError) -> str:
    """'Code: message (HTTP 400)', as the store put it."""
    code, status, message = error_code(exc)
    text = f"{code}: {message}" if message and message != code else code
    return f"{text} (HTTP {status})" if str(status) != code else text


def transport_error(exc: BaseException) -> str:
    # Endpoint errors can quote a URL; a presigned query string must never be printed.
    text = str(exc) or repr(exc)
    if "?" in text:
        text = text.split("?", 1)[0].rstrip("\"'") + " (query left out)"
    return f"{type(exc).__name__}: {text[:300]}"


def endpoint_name(settings: Settings) -> str:
    o = settings.object_storage
    return o.endpoint or f"AWS S3 ({o.region})"


def flavour_of(settings: Settings, headers: Mapping[str, str] | None = None) -> Flavour:
    """Which store answers, from its response headers (and the configured provider)."""
    if settings.object_storage.provider == "minio":  # said so explicitly
        return "minio"
    headers = headers or {}
    server = headers.get("server", "").lower()
    rgw_id = _RGW_REQUEST_ID.match(headers.get("x-amz-request-id", ""))
    if rgw_id or any(k.startswith("x-rgw-") for k in headers) or "ceph" in server:
        return "ceph"
    if "minio" in server:
        return "minio"
    if server == "amazons3" or not settings.object_storage.endpoint:
        return "aws"
    return "s3-compatible"
