"""Size and depth caps of an annotation's free JSON (`data`, `measurement_values`)."""

from __future__ import annotations

from typing import Any

from pydantic_core import to_json

from ..core.config import LimitsSettings
from ..core.errors import InvalidInput
from .schemas import AnnotationCreate, AnnotationUpdate


def depth_exceeds(value: Any, limit: int) -> bool:
    """True when containers nest deeper than limit (the value itself is level 1). Iterative:
    a hostile document cannot exhaust the stack."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def check_json_limits(body: AnnotationCreate | AnnotationUpdate, limits: LimitsSettings) -> None:
    """422 naming the limit when `data` or `measurement_values` is too deep or too large."""
    for name in ("data", "measurement_values"):
        value = getattr(body, name)
        if value is None:
            continue
        if depth_exceeds(value, limits.annotation_data_max_depth):
            raise InvalidInput(
                f"{name}: nested deeper than {limits.annotation_data_max_depth} levels "
                "(limits.annotation_data_max_depth)",
                extra={"field": name, "limit": limits.annotation_data_max_depth},
            )
        size = len(to_json(value))
        if size > limits.annotation_data_max_bytes:
            raise InvalidInput(
                f"{name}: {size} bytes of JSON, more than {limits.annotation_data_max_bytes} "
                "(limits.annotation_data_max_bytes)",
                extra={"field": name, "limit": limits.annotation_data_max_bytes},
            )
