"""Which stored objects the database still vouches for.

An object under the key prefix is *claimed* when a mask row names it, when a pending group
declared it (its upload may still arrive), when it is the metadata.json of a complete
group, or when a DICOM SEG export row names it (`exports/…` under the group's prefix).
Everything else is an orphan. Deleting only unclaimed objects keeps a late or
repeated deletion safe even if an id was reused (SQLite may reuse the highest rowid).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..models import Mask, MaskGroup, MaskGroupFile, SegExport
from ..models.mask_group import COMPLETE, PENDING
from .keys import EXPORTS_DIR, METADATA_NAME

_CHUNK = 900  # stays under SQLite's bound-parameter limit


@dataclass(frozen=True, slots=True)
class KeyParts:
    annotation_id: int
    group_id: int
    name: str


def _canonical_int(text: str) -> int | None:
    if not text.isdigit() or not text.isascii() or (len(text) > 1 and text[0] == "0"):
        return None
    value = int(text)
    return value if value < 2**63 else None


def parse_key(key_prefix: str, key: str) -> KeyParts | None:
    """'mask/5/7/0001_liver.png' → KeyParts(5, 7, '0001_liver.png'); None for other shapes."""
    if not key.startswith(key_prefix):
        return None
    parts = key[len(key_prefix) :].split("/")
    if len(parts) != 3 or not parts[2]:
        return None
    annotation_id, group_id = _canonical_int(parts[0]), _canonical_int(parts[1])
    if annotation_id is None or group_id is None:
        return None
    return KeyParts(annotation_id, group_id, parts[2])


async def claimed_keys(session: AsyncSession, key_prefix: str, keys: Iterable[str]) -> set[str]:
    """The subset of keys that a database record still refers to."""
    keys = list(keys)
    claimed = await _claimed_exports(session, [k for k in keys if f"/{EXPORTS_DIR}/" in k])
    wanted: dict[int, list[tuple[str, KeyParts]]] = {}
    for key in keys:
        parts = parse_key(key_prefix, key)
        if parts is not None:
            wanted.setdefault(parts.group_id, []).append((key, parts))
    if not wanted:
        return claimed
    ids = list(wanted)
    groups: dict[int, tuple[int, str]] = {}
    for i in range(0, len(ids), _CHUNK):
        found = await session.execute(
            select(MaskGroup.id, MaskGroup.annotation_id, MaskGroup.status).where(
                MaskGroup.id.in_(ids[i : i + _CHUNK])
            )
        )
        groups.update((gid, (aid, status)) for gid, aid, status in found.tuples())
    live = [gid for gid in groups if any(p.annotation_id == groups[gid][0] for _, p in wanted[gid])]
    pending = [gid for gid in live if groups[gid][1] == PENDING]
    referenced: set[str] = set()
    for i in range(0, len(live), _CHUNK):
        rows = await session.scalars(
            select(Mask.object_key).where(Mask.group_id.in_(live[i : i + _CHUNK]))
        )
        referenced.update(rows)
    for i in range(0, len(pending), _CHUNK):
        rows = await session.scalars(
            select(MaskGroupFile.object_key).where(
                MaskGroupFile.group_id.in_(pending[i : i + _CHUNK])
            )
        )
        referenced.update(rows)
    for gid in live:
        annotation_id, status = groups[gid]
        for key, parts in wanted[gid]:
            if parts.annotation_id != annotation_id:
                continue
            if key in referenced or (status == COMPLETE and parts.name == METADATA_NAME):
                claimed.add(key)
    return claimed


async def _claimed_exports(session: AsyncSession, keys: list[str]) -> set[str]:
    found: set[str] = set()
    for i in range(0, len(keys), _CHUNK):
        rows = await session.scalars(
            select(SegExport.object_key).where(SegExport.object_key.in_(keys[i : i + _CHUNK]))
        )
        found.update(k for k in rows if k is not None)
    return found
