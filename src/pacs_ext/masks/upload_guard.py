"""Write-once for the local store: its PUT endpoint asks here whether a key's group still
takes uploads (one primary-key lookup), so a signed PUT URL replayed after `complete` or after
the group's deletion stores nothing. S3 stores enforce the object half themselves
(`If-None-Match: *`); what they cannot know is kept out by the janitor (orphans)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..models import MaskGroup
from ..models.mask_group import PENDING

# (HTTP status, error code, detail), as storage/local_endpoints.py answers it.
Refusal = tuple[int, str, str]


def group_of(key_prefix: str, key: str) -> tuple[int, int] | None:
    """(annotation_id, group_id) of a key {prefix}{annotation}/{group}/{name}, else None."""
    if not key.startswith(key_prefix):
        return None
    parts = key[len(key_prefix) :].split("/")
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts[:2]):
        return None
    if len(parts[0]) > 19 or len(parts[1]) > 19:  # past any 64-bit id: no such group
        return (-1, -1)
    return int(parts[0]), int(parts[1])


async def check(
    maker: async_sessionmaker[AsyncSession], key_prefix: str, key: str
) -> Refusal | None:
    """None when a PUT to key may store an object; else why not."""
    ids = group_of(key_prefix, key)
    if ids is None:
        return None  # not a mask key (e.g. `storage check`'s probe): write-once still applies
    async with maker() as session:
        status = await session.scalar(
            select(MaskGroup.status).where(
                MaskGroup.id == ids[1], MaskGroup.annotation_id == ids[0]
            )
        )
    if status is None:
        return (
            403,
            "AccessDenied",
            "the mask group was deleted: this URL can no longer store anything",
        )
    if status != PENDING:
        return (412, "PreconditionFailed", f"the mask group is {status}: its objects cannot change")
    return None
