"""Where a stored object's bytes are read from, as the download routes see it.

The routes receive a `DownloadSigner` built once in the app's lifespan: `DirectDownloads`
(the storage signs every download) or, during phase 2 of a migration, the legacy fallback
(legacy/serving.py), which serves masks not yet moved from the old folder. The masks domain
so never imports the legacy job: the dependency points down, the choice is made in app.py."""

from __future__ import annotations

from typing import Protocol

from .base import ObjectStorage, SignedRequest


class DownloadSigner(Protocol):
    async def sign_download(
        self,
        key: str,
        ttl_seconds: int,
        *,
        content_disposition: str | None = None,
        content_type: str | None = None,
    ) -> SignedRequest: ...


class DirectDownloads:
    """Every download is signed by the object storage itself."""

    def __init__(self, storage: ObjectStorage) -> None:
        self.storage = storage

    async def sign_download(
        self,
        key: str,
        ttl_seconds: int,
        *,
        content_disposition: str | None = None,
        content_type: str | None = None,
    ) -> SignedRequest:
        return self.storage.sign_download(
            key, ttl_seconds, content_disposition=content_disposition, content_type=content_type
        )
