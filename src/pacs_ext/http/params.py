"""Path parameters of the HTTP routes (kept apart from schemas.py, which the client SDK
imports without FastAPI)."""

from typing import Annotated

from fastapi import Path

from ..core.schemas import MAX_BIGINT

# Ids in paths: positive and within the databases' BIGINT.
ResourceId = Annotated[int, Path(ge=1, le=MAX_BIGINT)]
