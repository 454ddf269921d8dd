"""Schemas shared across domains: pagination, the error body, and mask-group status."""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

T = TypeVar("T")

# DICOM UI: digits and dots, at most 64 characters (PS3.5 §9.1).
DicomUID = Annotated[str, StringConstraints(pattern=r"^[0-9]+(\.[0-9]+)*$", max_length=64)]


def _valid_text(value: str) -> str:
    # PostgreSQL text and jsonb cannot hold NUL; no database driver can encode a lone
    # surrogate (JSON allows "\ud800"). Refused here, they are a 422 instead of a 500.
    if "\x00" in value:
        raise ValueError("must not contain NUL (U+0000) characters")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no unpaired surrogates)") from None
    return value


def _valid_json(value: Any) -> Any:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            _valid_text(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError("numbers must be finite (no NaN or Infinity)")
    return value


# Free text and free JSON from clients: anything the databases can store.
Text = Annotated[str, AfterValidator(_valid_text)]
JsonObject = Annotated[dict[str, Any], AfterValidator(_valid_json)]
JsonArray = Annotated[list[Any], AfterValidator(_valid_json)]

# Ids and offsets stay within a 64-bit integer (the databases' BIGINT), so that a huge number
# is a 422 instead of an overflow inside the database driver.
MAX_BIGINT = 2**63 - 1


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    error: str = Field(examples=["NotFound"])
    detail: Any = Field(examples=["annotation 42 not found"])


class Pagination(BaseModel):
    limit: int = Field(50, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=MAX_BIGINT)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Malformed request (e.g. a body that is not JSON)"},
    401: {"model": ErrorBody, "description": "Missing or invalid bearer token"},
    403: {"model": ErrorBody, "description": "Not allowed for this subject"},
    404: {"model": ErrorBody, "description": "Not found"},
    422: {"model": ErrorBody, "description": "Invalid input"},
    503: {"model": ErrorBody, "description": "Database or storage unavailable; retry"},
}


class MaskGroupStatus(StrEnum):
    """A group's life: pending (URLs issued) -> complete (verified), or expired (janitor).
    A StrEnum: the database column and the JSON hold the plain value ("pending"...)."""

    PENDING = "pending"
    COMPLETE = "complete"
    EXPIRED = "expired"
