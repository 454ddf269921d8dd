"""SQL of the janitor's passes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..models import IdempotencyKey, Mask, MaskGroup, MaskGroupFile
from ..models.mask_group import COMPLETE, EXPIRED, PENDING

_CHUNK = 900


def _abandoned(cutoff: datetime) -> ColumnElement[bool]:
    # Pending past the last URL's expiry; a group that never issued a URL counts from creation.
    return and_(
        MaskGroup.status == PENDING,
        or_(
            MaskGroup.upload_expires_at < cutoff,
            and_(MaskGroup.upload_expires_at.is_(None), MaskGroup.created_at < cutoff),
        ),
    )


async def abandoned_groups(
    session: AsyncSession, cutoff: datetime
) -> Sequence[tuple[int, int, datetime | None]]:
    rows = await session.execute(
        select(MaskGroup.id, MaskGroup.annotation_id, MaskGroup.upload_expires_at)
        .where(_abandoned(cutoff))
        .order_by(MaskGroup.id)
    )
    return rows.tuples().all()


async def claim_expiry(session: AsyncSession, group_id: int, cutoff: datetime) -> bool:
    """pending → expired, unless a complete or a URL renewal got there first."""
    result = await session.execute(
        update(MaskGroup)
        .where(MaskGroup.id == group_id, _abandoned(cutoff))
        .values(status=EXPIRED)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


async def drop_masks(session: AsyncSession, group_id: int) -> None:
    """Mask rows of a group being expired: only a complete group has verified masks, and a
    row left here would keep its object claimed (never deleted) for good."""
    await session.execute(delete(Mask).where(Mask.group_id == group_id))


async def expired_groups_with_masks(session: AsyncSession) -> Sequence[tuple[int, int]]:
    """(group, annotation) of expired groups that still have mask rows (an earlier `migrate`
    added rows to pending groups, and their expiry could not remove the objects)."""
    rows = await session.execute(
        select(MaskGroup.id, MaskGroup.annotation_id)
        .where(MaskGroup.status == EXPIRED, MaskGroup.id.in_(select(Mask.group_id)))
        .order_by(MaskGroup.id)
    )
    return rows.tuples().all()


async def upload_ids(session: AsyncSession, group_id: int) -> Sequence[tuple[str, str]]:
    rows = await session.execute(
        select(MaskGroupFile.object_key, MaskGroupFile.upload_id).where(
            MaskGroupFile.group_id == group_id, MaskGroupFile.upload_id.is_not(None)
        )
    )
    return [(k, str(u)) for k, u in rows.tuples()]


async def live_upload_ids(session: AsyncSession, candidates: Sequence[str]) -> set[str]:
    """Multipart upload ids a pending group still expects parts for."""
    out: set[str] = set()
    for i in range(0, len(candidates), _CHUNK):
        rows = await session.scalars(
            select(MaskGroupFile.upload_id)
            .join(MaskGroup, MaskGroup.id == MaskGroupFile.group_id)
            .where(
                MaskGroup.status == PENDING,
                MaskGroupFile.upload_id.in_(candidates[i : i + _CHUNK]),
            )
        )
        out.update(u for u in rows if u is not None)
    return out


async def masks_of(
    session: AsyncSession, group_ids: Sequence[int], created_before: datetime
) -> Sequence[tuple[int, int, str]]:
    """(mask id, group id, key) of masks recorded before the scan began."""
    out: list[tuple[int, int, str]] = []
    for i in range(0, len(group_ids), _CHUNK):
        rows = await session.execute(
            select(Mask.id, Mask.group_id, Mask.object_key).where(
                Mask.group_id.in_(group_ids[i : i + _CHUNK]), Mask.created_at < created_before
            )
        )
        out.extend(rows.tuples())
    return out


async def groups_with_masks(session: AsyncSession) -> list[int]:
    return list(await session.scalars(select(Mask.group_id).distinct()))


async def purge_idempotency_keys(session: AsyncSession, older_than: datetime) -> int:
    result = await session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.created_at < older_than)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def count_old_idempotency_keys(session: AsyncSession, older_than: datetime) -> int:
    total = await session.scalar(
        select(func.count())
        .select_from(IdempotencyKey)
        .where(IdempotencyKey.created_at < older_than)
    )
    return int(total or 0)


async def complete_groups(session: AsyncSession, after: int, limit: int) -> Sequence[MaskGroup]:
    """Complete groups with an id above `after`, in id order."""
    rows = await session.scalars(
        select(MaskGroup)
        .where(MaskGroup.status == COMPLETE, MaskGroup.id > after)
        .order_by(MaskGroup.id)
        .limit(limit)
    )
    return rows.all()
