from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class AuditAction(StrEnum):
    ANNOTATION_CREATE = "annotation.create"
    ANNOTATION_UPDATE = "annotation.update"
    ANNOTATION_DELETE = "annotation.delete"
    MASK_GROUP_CREATE = "mask_group.create"
    MASK_GROUP_UPDATE = "mask_group.update"
    MASK_GROUP_DELETE = "mask_group.delete"
    MASK_GROUP_COMPLETE = "mask_group.complete"
    MASK_GROUP_EXPORT = "mask_group.export"
    MASK_DELETE = "mask.delete"
    SIGNED_URL_ISSUE = "signed_url.issue"


class AuditEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    created_at: datetime
    subject: str
    action: str
    annotation_id: int | None
    group_id: int | None
    mask_id: int | None
    object_key: str | None
    method: str | None
    expires_at: datetime | None
    part_number: int | None
    url_count: int | None = Field(None, description="signed_url.issue: URLs handed out")
    object_count: int | None = Field(
        None, description="signed_url.issue: objects they reach (keys: GET /api/audit/{id})"
    )
    request_id: str | None
    detail: dict[str, Any] | None


class AuditEventDetail(AuditEventRead):
    """One event with the keys of every object its signed URLs reach."""

    object_keys: list[str] | None


class AuditFilters(BaseModel):
    """Every filter is optional; times without an offset are taken as UTC."""

    subject: str | None = Field(None, max_length=255)
    action: AuditAction | None = None
    annotation_id: int | None = None
    group_id: int | None = None
    object_key: str | None = Field(None, max_length=1024)
    since: datetime | None = Field(None, description="events at or after this time")
    until: datetime | None = Field(None, description="events before this time")

    @field_validator("since", "until")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            return v.replace(tzinfo=UTC)
        return v
