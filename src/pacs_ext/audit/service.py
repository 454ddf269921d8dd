"""Audit rows, written in the caller's transaction: an action that rolls back leaves no row.

Callers make one small call per action. Signed URLs are recorded by object key, method and
expiry only: the URL and its signature are credentials and never reach the database.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from ..auth import Principal
from ..exceptions import Forbidden
from ..models import AuditEvent
from ..models.base import utcnow
from . import repository
from .schemas import AuditAction, AuditFilters


@dataclass(frozen=True, slots=True)
class IssuedUrl:
    object_key: str
    method: str
    expires_at: datetime
    part_number: int | None = None


class SignedPart(Protocol):
    @property
    def part_number(self) -> int: ...


class SignedTarget(Protocol):
    """An upload target as handed to the client (masks.schemas.UploadTarget)."""

    @property
    def object_key(self) -> str: ...
    @property
    def expires_at(self) -> datetime: ...
    @property
    def parts(self) -> Sequence[SignedPart] | None: ...


def _request_id() -> str | None:
    value = structlog.contextvars.get_contextvars().get("request_id")
    return value if isinstance(value, str) else None


async def record(
    session: AsyncSession,
    principal: Principal,
    action: AuditAction,
    *,
    annotation_id: int | None = None,
    group_id: int | None = None,
    mask_id: int | None = None,
    object_key: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    await repository.insert_many(
        session,
        [
            {
                "created_at": utcnow(),
                "subject": principal.subject,
                "action": action.value,
                "annotation_id": annotation_id,
                "group_id": group_id,
                "mask_id": mask_id,
                "object_key": object_key,
                "method": None,
                "expires_at": None,
                "request_id": _request_id(),
                "detail": detail,
            }
        ],
    )


async def record_signed_urls(
    session: AsyncSession,
    principal: Principal,
    urls: Iterable[IssuedUrl],
    *,
    annotation_id: int | None = None,
    group_id: int | None = None,
    mask_id: int | None = None,
) -> None:
    """One row per URL handed out, all in one executemany (5,000 for a large CT group)."""
    now, request_id = utcnow(), _request_id()
    action = AuditAction.SIGNED_URL_ISSUE.value
    rows = [
        {
            "created_at": now,
            "subject": principal.subject,
            "action": action,
            "annotation_id": annotation_id,
            "group_id": group_id,
            "mask_id": mask_id,
            "object_key": u.object_key,
            "method": u.method,
            "expires_at": u.expires_at,
            "request_id": request_id,
            "detail": None if u.part_number is None else {"part_number": u.part_number},
        }
        for u in urls
    ]
    await repository.insert_many(session, rows)


async def record_upload_targets(
    session: AsyncSession,
    principal: Principal,
    targets: Iterable[SignedTarget],
    *,
    annotation_id: int,
    group_id: int,
) -> None:
    """Every PUT URL in the targets: one per single upload, one per part of a multipart one."""
    urls: list[IssuedUrl] = []
    for t in targets:
        if t.parts:
            urls.extend(
                IssuedUrl(t.object_key, "PUT", t.expires_at, p.part_number) for p in t.parts
            )
        else:
            urls.append(IssuedUrl(t.object_key, "PUT", t.expires_at))
    await record_signed_urls(
        session, principal, urls, annotation_id=annotation_id, group_id=group_id
    )


async def list_events(
    session: AsyncSession, principal: Principal, filters: AuditFilters, limit: int, offset: int
) -> tuple[Sequence[AuditEvent], int]:
    if not principal.is_admin:
        raise Forbidden("the audit trail is for admins only")
    return await repository.list_events(session, filters, limit, offset)
