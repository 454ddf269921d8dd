"""Translate storage-neutral errors into HTTP-mapped domain errors, once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ..core.errors import InvalidInput, NotFound, ServiceUnavailable
from .base import (
    InvalidObjectKey,
    ObjectNotFound,
    StorageAccessDenied,
    StorageError,
    StorageUnavailable,
)


@asynccontextmanager
async def translate_storage_errors(operation: str) -> AsyncIterator[None]:
    try:
        yield
    except ObjectNotFound as exc:
        raise NotFound(f"object not found in storage: {exc}") from None
    except InvalidObjectKey as exc:
        raise InvalidInput(str(exc)) from None
    except StorageAccessDenied as exc:
        # The server's own credentials were refused: an operator problem, not the caller's.
        raise ServiceUnavailable(f"storage refused access during {operation}: {exc}") from None
    except StorageUnavailable as exc:
        raise ServiceUnavailable(f"storage unavailable during {operation}: {exc}") from None
    except StorageError as exc:
        raise ServiceUnavailable(f"storage error during {operation}: {exc}") from None
