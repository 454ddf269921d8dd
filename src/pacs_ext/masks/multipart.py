"""Multipart uploads for large files (S3-like stores only)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..models import MaskGroupFile
from .schemas import FileSpec
from .uploads import Target

if TYPE_CHECKING:
    from .service import Ctx


async def multipart_targets(
    ctx: Ctx, rows: list[dict[str, object]], specs: Sequence[FileSpec], ttl: int
) -> list[Target]:
    raise NotImplementedError("multipart uploads arrive with the S3 backend")


async def finish_multipart(ctx: Ctx, declared: Sequence[MaskGroupFile]) -> None:
    raise NotImplementedError("multipart uploads arrive with the S3 backend")
