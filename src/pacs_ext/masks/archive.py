"""Downloads of masks the lifecycle moved to an archive class that needs a restore.

With `bucket.lifecycle_archive_storage_class` GLACIER (Flexible Retrieval) or DEEP_ARCHIVE, a
signed GET of an archived mask would fail at S3 (403 InvalidObjectState) where the server
cannot say why. So before signing, a mask old enough to have been archived is looked at
(one HEAD); if it is archived, a restore is started and the answer is 409 ObjectArchived with
when to retry. Younger masks, and the default GLACIER_IR (read like STANDARD), cost nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from ..core.clock import Clock
from ..core.config import RESTORE_CLASSES, Settings
from ..core.errors import Conflict
from ..storage.base import ObjectNotFound, ObjectStorage

# Typical restore times (AWS S3 documentation), in seconds: what Retry-After says.
RETRIEVAL_SECONDS = {
    ("GLACIER", "Expedited"): 5 * 60,
    ("GLACIER", "Standard"): 5 * 3600,
    ("GLACIER", "Bulk"): 12 * 3600,
    ("DEEP_ARCHIVE", "Standard"): 12 * 3600,
    ("DEEP_ARCHIVE", "Bulk"): 48 * 3600,
}


class ObjectArchived(Conflict):
    error = "ObjectArchived"


def _tier(storage_class: str, tier: str) -> str:
    # Deep Archive has no Expedited retrieval.
    return "Standard" if storage_class == "DEEP_ARCHIVE" and tier == "Expedited" else tier


async def ensure_readable(
    storage: ObjectStorage, settings: Settings, clock: Clock, key: str, stored_at: datetime
) -> None:
    """Raise ObjectArchived (409, with Retry-After) when `key` must be restored first."""
    b = settings.bucket
    if settings.object_storage.provider == "local" or not b.restore_needed:
        return
    if clock.now() - stored_at < timedelta(days=b.lifecycle_archive_days):
        return  # too young for the lifecycle to have moved it
    try:
        state = await storage.archive_state(key)
    except ObjectNotFound:
        return  # the signed GET will say so (or the legacy fallback serves it)
    if state.storage_class not in RESTORE_CLASSES or state.restore == "done":
        return
    tier = _tier(state.storage_class, b.archive_restore_tier)
    wait = RETRIEVAL_SECONDS.get((state.storage_class, tier), 12 * 3600)
    if state.restore is None:
        await storage.restore(key, b.archive_restore_days, tier)
        what = f"a restore ({tier} tier) was started"
    else:
        what = "its restore is under way"
    hours = f"{wait / 3600:g} h" if wait >= 3600 else f"{wait // 60} min"
    error = ObjectArchived(
        f"the mask's object is archived in {state.storage_class}; {what}: retry in about "
        f"{hours} (the restored copy stays readable for {b.archive_restore_days} days)",
        extra={
            "storage_class": state.storage_class,
            "restore": "started" if state.restore is None else "in progress",
            "retry_after_seconds": wait,
        },
    )
    error.headers = {"Retry-After": str(wait)}
    raise error
