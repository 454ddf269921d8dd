from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from ..core.schemas import ERROR_RESPONSES, MAX_BIGINT, Page
from ..http.deps import CtxDep
from ..http.params import PageParams, ResourceId
from . import service
from .schemas import AuditAction, AuditEventDetail, AuditEventRead, AuditFilters

router = APIRouter(prefix="/audit", tags=["audit"], responses=ERROR_RESPONSES)


@router.get("", response_model=Page[AuditEventRead])
async def list_audit_events(
    ctx: CtxDep,
    page: PageParams,
    subject: Annotated[str | None, Query(max_length=255)] = None,
    action: Annotated[AuditAction | None, Query()] = None,
    annotation_id: Annotated[int | None, Query(ge=1, le=MAX_BIGINT)] = None,
    group_id: Annotated[int | None, Query(ge=1, le=MAX_BIGINT)] = None,
    object_key: Annotated[
        str | None,
        Query(max_length=1024, description="events that name this object (signed URLs: any)"),
    ] = None,
    since: Annotated[
        datetime | None,
        Query(alias="from", description="events at or after this time (ISO 8601; UTC if naive)"),
    ] = None,
    until: Annotated[
        datetime | None,
        Query(alias="to", description="events before this time (ISO 8601; UTC if naive)"),
    ] = None,
) -> Page[AuditEventRead]:
    """The audit trail, newest first (admins only)."""
    filters = AuditFilters(
        subject=subject,
        action=action,
        annotation_id=annotation_id,
        group_id=group_id,
        object_key=object_key,
        since=since,
        until=until,
    )
    rows, total = await service.list_events(ctx, filters, page)
    items = [AuditEventRead.model_validate(r) for r in rows]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.get("/{event_id}", response_model=AuditEventDetail)
async def get_audit_event(ctx: CtxDep, event_id: ResourceId) -> AuditEventDetail:
    """One event, with the key of every object its signed URLs reach (admins only)."""
    return AuditEventDetail.model_validate(await service.get_event(ctx, event_id))
