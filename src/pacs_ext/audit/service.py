"""Audit rows, written in the caller's transaction: an action that rolls back leaves no row.

Callers make one small call per action. Signed URLs are recorded by object key, method and
expiry only: the URL and its signature are credentials and never reach the database.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from ..context import Ctx
from ..core.auth import Principal
from ..core.errors import Forbidden
from ..core.schemas import Pagination
from ..models import AuditEvent
from ..models.base import utcnow
from . import batch, repository
from .schemas import AuditAction, AuditFilters


@dataclass(slots=True)
class IssuedUrl:
    """A signed URL as the audit trail records it: never the URL itself (a credential).
    A multipart page of part URLs is one IssuedUrl with its first part number. Not frozen:
    thousands are made per request, and a frozen dataclass's __init__ costs ~3x more."""

    object_key: str
    expires_at: datetime
    part_number: int | None = None


def _request_id() -> str | None:
    value = structlog.contextvars.get_contextvars().get("request_id")
    return value if isinstance(value, str) else None


def _common(
    principal: Principal,
    action: AuditAction,
    annotation_id: int | None,
    group_id: int | None,
    mask_id: int | None,
) -> dict[str, object]:
    return {
        "created_at": utcnow(),
        "subject": principal.subject,
        "action": action.value,
        "annotation_id": annotation_id,
        "group_id": group_id,
        "mask_id": mask_id,
        "request_id": _request_id(),
    }


async def record(
    session: AsyncSession,
    principal: Principal,
    action: AuditAction,
    *,
    annotation_id: int | None = None,
    group_id: int | None = None,
    mask_id: int | None = None,
    object_key: str | None = None,
    detail: dict[str, object] | None = None,
) -> None:
    row = _common(principal, action, annotation_id, group_id, mask_id)
    row.update(object_key=object_key, detail=detail)
    await repository.insert_event(session, row)


async def record_signed_urls(
    session: AsyncSession,
    principal: Principal,
    method: str,
    urls: Iterable[IssuedUrl],
    *,
    annotation_id: int,
    group_id: int,
    mask_id: int | None = None,
) -> None:
    """One row per URL handed out, all in one INSERT (5,000 of them for a large CT group)."""
    issued = list(urls)
    if not issued:
        return
    common = _common(principal, AuditAction.SIGNED_URL_ISSUE, annotation_id, group_id, mask_id)
    common["method"] = method
    await batch.insert_signed_urls(
        session,
        common,
        [u.object_key for u in issued],
        [u.expires_at for u in issued],
        [u.part_number for u in issued],
    )


async def list_events(
    ctx: Ctx, filters: AuditFilters, page: Pagination
) -> tuple[Sequence[AuditEvent], int]:
    if not ctx.principal.is_admin:
        raise Forbidden("the audit trail is for admins only")
    return await repository.list_events(ctx.session, filters, page.limit, page.offset)
