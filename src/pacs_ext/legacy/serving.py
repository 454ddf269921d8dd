"""Phase 2 of a migration: serve masks that are not in object storage yet from the old local
folder (`object_storage.legacy_local_dir`, laid out as `{annotation_id}/{group_id}/{file}`).

Where a download goes is decided without a storage request in the common cases:
- no legacy file for the key (new uploads; every mask once the folder is gone): object
  storage, after one local stat;
- a legacy file exists: object storage if the group is migrated, else a signed URL to this
  server's /legacy-storage/ route. A group is migrated once its metadata.json is in the bucket:
  `pacs-ext migrate` writes it after every file of the group is copied and verified. That is one
  HEAD per group and process: a positive answer is kept, a negative one for NEGATIVE_TTL.
"""

from __future__ import annotations

import hmac
import mimetypes
import time
from pathlib import Path
from typing import Annotated
from urllib.parse import quote, urlencode

import anyio.to_thread
import structlog
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from ..core.config import Settings
from ..objects.keys import METADATA_NAME
from ..storage import inert
from ..storage.base import (
    InvalidObjectKey,
    ObjectStorage,
    SignedRequest,
    StorageError,
    validate_key,
)
from ..storage.expiry import Expiries
from ..storage.local.store import SignatureError, check_expiry

log = structlog.get_logger(__name__)

ROUTE_PREFIX = "/legacy-storage/"
NEGATIVE_TTL = 30.0  # seconds a "not migrated yet" answer is trusted
CACHE_LIMIT = 100_000


class LegacyFiles:
    """Signed, expiring GET URLs for files of the legacy folder, served by this server."""

    def __init__(self, root: Path, secret: bytes, base_url: str, key_prefix: str) -> None:
        self.root = root.resolve()
        self.key_prefix = key_prefix
        self._secret = hmac.digest(secret, b"pacs-ext legacy files", "sha256")
        self._base = base_url.rstrip("/") + ROUTE_PREFIX
        self._expiry = Expiries()

    def existing(self, key: str) -> Path | None:
        """The legacy file of an object key, if there is one inside the root (blocking)."""
        if not key.startswith(self.key_prefix):
            return None
        rel = key[len(self.key_prefix) :]
        try:
            validate_key(rel)
        except InvalidObjectKey:
            return None
        path = (self.root / rel).resolve()
        return path if path.is_relative_to(self.root) and path.is_file() else None

    def _signature(self, key: str, expires: int, disposition: str) -> str:
        msg = "\n".join(("GET", key, str(expires), disposition)).encode()
        return hmac.digest(self._secret, msg, "sha256").hex()

    def sign_download(
        self, key: str, ttl_seconds: int, *, content_disposition: str | None = None
    ) -> SignedRequest:
        expires_at = self._expiry.at(ttl_seconds)
        expires = int(expires_at.timestamp())
        disposition = content_disposition or ""
        query = {"expires": str(expires), "signature": self._signature(key, expires, disposition)}
        if disposition:
            query["response-content-disposition"] = disposition
        url = f"{self._base}{quote(key, safe='/~')}?{urlencode(query, quote_via=quote)}"
        return SignedRequest("GET", url, {}, expires_at)

    def verify_get(self, key: str, expires: str, signature: str, disposition: str) -> None:
        expiry = check_expiry(expires)
        if not hmac.compare_digest(self._signature(key, expiry, disposition), signature):
            raise SignatureError(403, "SignatureDoesNotMatch", "signature does not match")


class Fallback:
    """Downloads during phase 2: the legacy folder for groups not migrated yet, else storage.

    A DownloadSigner (storage/downloads.py), built once in the app's lifespan."""

    def __init__(self, legacy: LegacyFiles, storage: ObjectStorage) -> None:
        self.legacy = legacy
        self.storage = storage
        self._migrated: dict[str, float] = {}  # group prefix → trusted until (inf: for good)

    async def sign_download(
        self,
        key: str,
        ttl_seconds: int,
        *,
        content_disposition: str | None = None,
        content_type: str | None = None,
    ) -> SignedRequest:
        local = await anyio.to_thread.run_sync(self.legacy.existing, key)
        if local is not None and not await self._group_migrated(key.rsplit("/", 1)[0] + "/"):
            return self.legacy.sign_download(
                key, ttl_seconds, content_disposition=content_disposition
            )
        return self.storage.sign_download(
            key, ttl_seconds, content_disposition=content_disposition, content_type=content_type
        )

    async def _group_migrated(self, prefix: str) -> bool:
        now = time.monotonic()
        until = self._migrated.get(prefix)
        if until is not None and until > now:
            return until == float("inf")
        try:
            await self.storage.head(prefix + METADATA_NAME)
            migrated = True
        except StorageError as exc:
            # Not there yet, or storage unreachable: the local copy serves either way.
            migrated = False
            if not isinstance(exc, InvalidObjectKey):
                log.debug("legacy.not_migrated", prefix=prefix, reason=type(exc).__name__)
        if len(self._migrated) >= CACHE_LIMIT:
            self._migrated.clear()
        self._migrated[prefix] = float("inf") if migrated else now + NEGATIVE_TTL
        return migrated


def legacy_files(settings: Settings) -> LegacyFiles | None:
    """The legacy folder's signer, or None when none is configured; app.py builds it once."""
    folder = settings.object_storage.legacy_local_dir
    if not folder:
        return None
    configured = settings.object_storage.secret_key.get_secret_value()
    secret = configured.encode() if configured else settings.jwt_secret().encode()
    return LegacyFiles(
        Path(folder),
        secret,
        settings.server.base_url(),
        settings.object_storage.key_prefix,
    )


router = APIRouter(prefix=ROUTE_PREFIX.rstrip("/"), include_in_schema=False)


@router.api_route("/{key:path}", methods=["GET", "HEAD"])
async def get_legacy_file(
    key: str,
    request: Request,
    expires: Annotated[str, Query()] = "",
    signature: Annotated[str, Query()] = "",
    disposition: Annotated[str, Query(alias="response-content-disposition")] = "",
) -> Response:
    legacy: LegacyFiles = request.app.state.legacy_files
    try:
        legacy.verify_get(key, expires, signature, disposition)
    except SignatureError as exc:
        return JSONResponse({"error": exc.code, "detail": exc.detail}, status_code=exc.status)
    path = await anyio.to_thread.run_sync(legacy.existing, key)
    if path is None:
        return JSONResponse(
            {"error": "NoSuchKey", "detail": "the file does not exist"}, status_code=404
        )
    # Served from the API's own origin: inert, like the local store (storage/inert.py).
    media_type = inert.served_type(mimetypes.guess_type(path.name, strict=False)[0])
    headers = {
        **inert.INERT_HEADERS,
        "Content-Disposition": disposition or inert.disposition(media_type, key),
    }
    return FileResponse(path, media_type=media_type, headers=headers)
