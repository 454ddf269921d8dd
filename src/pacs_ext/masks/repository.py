"""SQL for mask groups, their declared files and masks."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..core.bulk import bulk_insert
from ..models import Mask, MaskGroup, MaskGroupFile
from ..models.mask_group import COMPLETE, PENDING
from .schemas import MaskFilters
from .uploads import FileRow
from .verify import DeclaredFile, MaskRow


@dataclass(frozen=True, slots=True)
class GroupCounts:
    file_count: int = 0
    mask_count: int = 0
    total_bytes: int = 0


async def get_group(session: AsyncSession, annotation_id: int, group_id: int) -> MaskGroup | None:
    group = await session.get(MaskGroup, group_id)
    if group is None or group.annotation_id != annotation_id:
        return None
    return group


async def lock_group(session: AsyncSession, annotation_id: int, group_id: int) -> MaskGroup | None:
    """The group, locked for the rest of the transaction (None when it is gone).

    Every transition of a group (declaring files, completing, deleting) takes this lock
    first, so they run one after another per group and each sees the others' committed
    result: PostgreSQL's SELECT ... FOR UPDATE (a concurrent DELETE or UPDATE of the row
    waits too). SQLite has no row locks: a no-op write takes the database's write lock
    (held until commit). pysqlite begins the transaction at that first write, so what
    the request read before it was read outside any transaction and the reads after it
    see the latest commit; callers therefore lock before any other write.
    """
    if session.get_bind().dialect.name == "sqlite":
        await session.execute(
            text("UPDATE mask_groups SET status = status WHERE id = :id"), {"id": group_id}
        )
    stmt = (
        select(MaskGroup).where(MaskGroup.id == group_id).execution_options(populate_existing=True)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    group = (await session.scalars(stmt)).first()
    if group is None or group.annotation_id != annotation_id:
        return None
    return group


async def list_groups(
    session: AsyncSession, annotation_id: int, limit: int, offset: int
) -> tuple[Sequence[MaskGroup], int]:
    where = MaskGroup.annotation_id == annotation_id
    total = await session.scalar(select(func.count()).select_from(MaskGroup).where(where))
    rows = await session.scalars(
        select(MaskGroup).where(where).order_by(MaskGroup.id).limit(limit).offset(offset)
    )
    return rows.all(), int(total or 0)


async def counts(session: AsyncSession, group_ids: Iterable[int]) -> dict[int, GroupCounts]:
    ids = list(group_ids)
    if not ids:
        return {}
    files = dict(
        (
            await session.execute(
                select(MaskGroupFile.group_id, func.count())
                .where(MaskGroupFile.group_id.in_(ids))
                .group_by(MaskGroupFile.group_id)
            )
        )
        .tuples()
        .all()
    )
    masks = {
        gid: (n, total)
        for gid, n, total in (
            await session.execute(
                select(Mask.group_id, func.count(), func.coalesce(func.sum(Mask.file_size), 0))
                .where(Mask.group_id.in_(ids))
                .group_by(Mask.group_id)
            )
        )
        .tuples()
        .all()
    }
    return {
        gid: GroupCounts(
            file_count=int(files.get(gid, 0)),
            mask_count=int(masks.get(gid, (0, 0))[0]),
            total_bytes=int(masks.get(gid, (0, 0))[1]),
        )
        for gid in ids
    }


async def declared_files(session: AsyncSession, group_id: int) -> Sequence[MaskGroupFile]:
    rows = await session.scalars(
        select(MaskGroupFile).where(MaskGroupFile.group_id == group_id).order_by(MaskGroupFile.id)
    )
    return rows.all()


# Rows per query or insert where a group can hold 100,000 files: each chunk's Python work on the
# event loop stays in the milliseconds, and the loop serves other requests between chunks.
CHUNK = 2000


_DECLARED_COLUMNS = [MaskGroupFile.__table__.c[f.name] for f in dataclasses.fields(DeclaredFile)]


async def declared_rows(
    session: AsyncSession, group_id: int, chunk: int = CHUNK
) -> list[DeclaredFile]:
    """The group's declared files as plain rows, read by keyset pages so that no single step
    holds the event loop."""
    out: list[DeclaredFile] = []
    last_id = 0
    table = MaskGroupFile.__table__
    while True:
        result = await session.execute(
            select(*_DECLARED_COLUMNS)
            .where(table.c.group_id == group_id, table.c.id > last_id)
            .order_by(table.c.id)
            .limit(chunk)
        )
        rows = [DeclaredFile(*row) for row in result.all()]
        out.extend(rows)
        if len(rows) < chunk:
            return out
        last_id = rows[-1].id


async def count_declared(session: AsyncSession, group_id: int) -> int:
    total = await session.scalar(
        select(func.count()).select_from(MaskGroupFile).where(MaskGroupFile.group_id == group_id)
    )
    return int(total or 0)


async def declared_by_name(
    session: AsyncSession, group_id: int, names: Iterable[str]
) -> dict[str, MaskGroupFile]:
    wanted = list(names)
    out: dict[str, MaskGroupFile] = {}
    # Chunked IN lists stay under SQLite's bound-parameter limit.
    for i in range(0, len(wanted), 900):
        rows = await session.scalars(
            select(MaskGroupFile).where(
                MaskGroupFile.group_id == group_id,
                MaskGroupFile.filename.in_(wanted[i : i + 900]),
            )
        )
        out.update((f.filename, f) for f in rows)
    return out


_FILES = cast(Table, MaskGroupFile.__table__)
_MASKS = cast(Table, Mask.__table__)


async def insert_files(session: AsyncSession, rows: Sequence[FileRow]) -> None:
    await bulk_insert(session, _FILES, [r.values() for r in rows])


async def insert_masks(session: AsyncSession, rows: Sequence[MaskRow]) -> None:
    for i in range(0, len(rows), CHUNK):
        await bulk_insert(session, _MASKS, [r.values() for r in rows[i : i + CHUNK]])


async def largest_mask_id(session: AsyncSession, group_id: int) -> int:
    value = await session.scalar(select(func.max(Mask.id)).where(Mask.group_id == group_id))
    return int(value or 0)


async def claim_completion(
    session: AsyncSession, group_id: int, *, completed_at: datetime, slice_count: int
) -> bool:
    """Move a pending group to complete; False when another request got there first."""
    result = await session.execute(
        update(MaskGroup)
        .where(MaskGroup.id == group_id, MaskGroup.status == PENDING)
        .values(
            status=COMPLETE,
            completed_at=completed_at,
            slice_count=slice_count,
            updated_at=completed_at,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


async def list_masks(
    session: AsyncSession, group_id: int, filters: MaskFilters, limit: int, offset: int
) -> tuple[Sequence[Mask], int]:
    stmt = select(Mask).where(Mask.group_id == group_id)
    if filters.label_name is not None:
        stmt = stmt.where(Mask.label_name == filters.label_name)
    if filters.sop_instance_uid is not None:
        stmt = stmt.where(Mask.sop_instance_uid == filters.sop_instance_uid)
    if filters.slice_index is not None:
        stmt = stmt.where(Mask.slice_index == filters.slice_index)
    total = await session.scalar(select(func.count()).select_from(stmt.subquery()))
    rows = await session.scalars(
        stmt.order_by(Mask.slice_index, Mask.label_name, Mask.id).limit(limit).offset(offset)
    )
    return rows.all(), int(total or 0)


async def all_masks(session: AsyncSession, group_id: int) -> Sequence[Mask]:
    rows = await session.scalars(select(Mask).where(Mask.group_id == group_id).order_by(Mask.id))
    return rows.all()


async def get_mask(session: AsyncSession, group_id: int, mask_id: int) -> Mask | None:
    mask = await session.get(Mask, mask_id)
    if mask is None or mask.group_id != group_id:
        return None
    return mask


async def delete_mask(session: AsyncSession, mask_id: int) -> None:
    await session.execute(delete(Mask).where(Mask.id == mask_id))


async def delete_declared(session: AsyncSession, group_id: int, filename: str) -> None:
    await session.execute(
        delete(MaskGroupFile).where(
            MaskGroupFile.group_id == group_id, MaskGroupFile.filename == filename
        )
    )


async def delete_group(session: AsyncSession, group_id: int) -> None:
    await session.execute(delete(MaskGroup).where(MaskGroup.id == group_id))


async def count_groups_by_status(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(select(MaskGroup.status, func.count()).group_by(MaskGroup.status))
    return {str(status): int(n) for status, n in rows.all()}
