"""Path parameters of the HTTP routes (kept apart from schemas.py, which the client SDK
imports without FastAPI)."""

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Path, Query

from ..core.schemas import MAX_BIGINT, Pagination

# Ids in paths: positive and within the databases' BIGINT.
ResourceId = Annotated[int, Path(ge=1, le=MAX_BIGINT)]


def pagination(default_limit: int = 50) -> Callable[[int, int], Awaitable[Pagination]]:
    """The `limit`/`offset` query parameters of a list route, as one Pagination (async: a
    plain function would run in FastAPI's thread pool)."""

    async def paginate(
        limit: Annotated[int, Query(ge=1, le=1000)] = default_limit,
        offset: Annotated[int, Query(ge=0, le=MAX_BIGINT)] = 0,
    ) -> Pagination:
        return Pagination(limit=limit, offset=offset)

    return paginate


# Every list route takes its page this way; masks list 100 at a time by default.
PageParams = Annotated[Pagination, Depends(pagination())]
MaskPageParams = Annotated[Pagination, Depends(pagination(100))]
