from __future__ import annotations

from ...core.clock import SYSTEM_CLOCK, Clock
from ...core.config import Settings
from .store import LocalStorage


def create(settings: Settings, clock: Clock = SYSTEM_CLOCK) -> LocalStorage:
    return LocalStorage(
        root=settings.server.data_dir / "objects",
        secret=settings.local_storage_secret(),
        base_url=settings.object_storage.public_endpoint or settings.server.base_url(),
        bucket=settings.object_storage.bucket_name,
        clock=clock,
    )
