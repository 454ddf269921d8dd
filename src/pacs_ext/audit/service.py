"""Audit rows, written in the caller's transaction: an action that rolls back leaves no row.

Like annotation, group and mask ids, audit ids are covered by the bucket's high-water mark
(objects/high_water.py) before the transaction commits: after a rebuild from the bucket, no
audit id is handed out again, not even one of the rows the janitor had not exported yet.

Callers make one small call per action. The signed URLs of one request are one row, naming
the objects they reach, the method and the expiry: the URLs and their signatures are
credentials and never reach the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog

from ..context import Ctx
from ..core.auth import Principal
from ..core.errors import Forbidden, NotFound
from ..core.schemas import Pagination
from ..models import AuditEvent
from ..models.base import utcnow
from ..objects import high_water
from ..storage.errors import translate_storage_errors
from . import repository
from .schemas import AuditAction, AuditFilters


@dataclass(slots=True)
class IssuedUrl:
    """A signed target as the audit trail records it: never the URL itself (a credential).
    A multipart file's page of part URLs is one IssuedUrl with its (first, last) part numbers.
    Not frozen: thousands are made per request, and a frozen dataclass's __init__ costs ~3x
    more."""

    object_key: str
    expires_at: datetime
    parts: tuple[int, int] | None = None

    @property
    def url_count(self) -> int:
        return 1 if self.parts is None else self.parts[1] - self.parts[0] + 1


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


async def _insert(ctx: Ctx, row: dict[str, object]) -> None:
    event_id = await repository.insert_event(ctx.session, row)
    # A storage failure here fails the request (503): its id is not covered, so its
    # transaction must not commit.
    async with translate_storage_errors("reserving ids in the bucket's high-water mark"):
        await high_water.reserve(ctx.session, ctx.storage, ctx.key_prefix, "audit_events", event_id)


async def record(
    ctx: Ctx,
    action: AuditAction,
    *,
    annotation_id: int | None = None,
    group_id: int | None = None,
    mask_id: int | None = None,
    object_key: str | None = None,
    detail: dict[str, object] | None = None,
) -> None:
    row = _common(ctx.principal, action, annotation_id, group_id, mask_id)
    row.update(object_key=object_key, detail=detail)
    await _insert(ctx, row)


async def record_signed_urls(
    ctx: Ctx,
    method: str,
    urls: Sequence[IssuedUrl],
    *,
    annotation_id: int,
    group_id: int,
    mask_id: int | None = None,
) -> None:
    """One row for all the URLs a request hands out (10,000 at most, signed_url.
    max_urls_per_request): to whom, which objects, how many URLs, until when (the latest
    expiry: none of them works after it). Part pages are in detail, `{"parts": {key: [first,
    last]}}`. A batch that reaches one object also names it in object_key (and its first
    part in part_number), as single-object rows always did."""
    if not urls:
        return
    row = _common(ctx.principal, AuditAction.SIGNED_URL_ISSUE, annotation_id, group_id, mask_id)
    keys = [u.object_key for u in urls]
    parts = {u.object_key: list(u.parts) for u in urls if u.parts is not None}
    row.update(
        method=method,
        expires_at=max(u.expires_at for u in urls),
        url_count=sum(u.url_count for u in urls),
        object_count=len(keys),
        object_keys=keys,
        detail={"parts": parts} if parts else None,
    )
    if len(urls) == 1:
        row.update(object_key=keys[0], part_number=urls[0].parts[0] if urls[0].parts else None)
    await _insert(ctx, row)


async def get_event(ctx: Ctx, event_id: int) -> AuditEvent:
    """One event with everything it records (the object keys of a batch of signed URLs)."""
    _admin_only(ctx)
    event = await repository.get_event(ctx.session, event_id)
    if event is None:
        raise NotFound(f"audit event {event_id} not found")
    return event


def _admin_only(ctx: Ctx) -> None:
    if not ctx.principal.is_admin:
        raise Forbidden("the audit trail is for admins only")


async def list_events(
    ctx: Ctx, filters: AuditFilters, page: Pagination
) -> tuple[Sequence[AuditEvent], int]:
    _admin_only(ctx)
    return await repository.list_events(ctx.session, filters, page.limit, page.offset)
