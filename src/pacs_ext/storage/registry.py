"""Pick the storage backend by provider name; backends are imported only when chosen."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from ..core.clock import SYSTEM_CLOCK, Clock
from ..core.config import Settings
from .base import ObjectStorage

# provider name → "module:factory"; the factory takes Settings and a Clock (for the expiry
# decisions the backend makes itself) and returns an ObjectStorage.
BACKENDS: dict[str, str] = {
    "local": "pacs_ext.storage.local.factory:create",
    "s3": "pacs_ext.storage.s3.client:create",
    "minio": "pacs_ext.storage.s3.client:create",
}


def create_storage(settings: Settings, clock: Clock = SYSTEM_CLOCK) -> ObjectStorage:
    provider = settings.object_storage.provider
    try:
        target = BACKENDS[provider]
    except KeyError:
        known = ", ".join(sorted(BACKENDS))
        raise ValueError(
            f"object_storage.provider: unknown provider {provider!r} ({known})"
        ) from None
    module_name, _, attr = target.partition(":")
    factory: Callable[[Settings, Clock], ObjectStorage] = getattr(
        importlib.import_module(module_name), attr
    )
    return factory(settings, clock)
