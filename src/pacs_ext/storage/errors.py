"""Name the operation a storage error happened in; HTTP is decided elsewhere, once.

Storage raises storage-neutral errors (storage/base.py) and knows nothing of HTTP: the one
mapping to status codes is `storage_answer` in http/errors.py, used by app.py's handler."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from .base import StorageError


@asynccontextmanager
async def translate_storage_errors(operation: str) -> AsyncIterator[None]:
    """Record `operation` on a StorageError raised inside, for the answer's wording."""
    try:
        yield
    except StorageError as exc:
        if exc.operation is None:
            exc.operation = operation
        raise
