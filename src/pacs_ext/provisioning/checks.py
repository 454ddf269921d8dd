"""Run the storage checks for the configured provider."""

from __future__ import annotations

import uuid

import httpx

from ..core.config import Settings
from ..objects.legacy_folder import KEY, inspect
from ..storage.base import ObjectStorage, StorageError
from ..storage.s3.client import S3Storage
from .doctor import Doctor, Step


async def run_checks(settings: Settings, storage: ObjectStorage) -> list[Step]:
    try:
        if isinstance(storage, S3Storage):
            # Like a browser: no redirects followed, proxies from the environment honoured.
            async with httpx.AsyncClient(timeout=15.0) as http:
                steps = await Doctor(settings, storage, http).run()
        else:
            steps = [await _local(storage)]
    finally:
        await storage.close()
    if settings.object_storage.legacy_local_dir:
        steps.append(legacy_folder(settings.object_storage.legacy_local_dir))
    return steps


def legacy_folder(folder: str) -> Step:
    """The pre-migration tree old masks are still served from (migration phase 2)."""
    state = inspect(folder)
    if state.ok:
        return Step(KEY, "PASS", f"serving masks not yet migrated from {state.detail}")
    return Step(
        KEY,
        "FAIL",
        state.detail,
        cause="masks not yet in object storage would get URLs that answer 404",
        fix=f"set {KEY} to the folder `pacs-ext migrate` copies from, or unset it once "
        "`pacs-ext migrate SOURCE --verify` reports every file in object storage",
    )


async def _local(storage: ObjectStorage) -> Step:
    """The embedded store: the folder takes a write, a read and a delete. Its signed URLs
    are served by the server itself, so `GET /ready` on the running server covers them."""
    key = f"pacs-ext-check/{uuid.uuid4().hex}.txt"
    where = getattr(storage, "root", "the data folder")
    try:
        await storage.put_bytes(key, b"pacs-ext storage check\n", "text/plain")
        if await storage.get_bytes(key) != b"pacs-ext storage check\n":
            raise StorageError(f"{key} read back differently")
        await storage.delete_many([key])
    except (StorageError, OSError) as exc:
        return Step(
            "local store",
            "FAIL",
            f"{type(exc).__name__}: {exc}",
            f"the server cannot write, read or delete files under {where}",
            "check server.data_dir: it must exist (or be creatable) and be writable by the "
            "server's user",
        )
    return Step(
        "local store",
        "PASS",
        f"write, read and delete under {where}; nothing to provision (signed URLs are "
        "served by the server itself: see GET /ready)",
    )
