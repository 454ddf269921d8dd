"""The request context: the one convention for domain services (issue 13).

Every service function a route calls takes `ctx: Ctx` first, then the request's own
arguments; routes build it with `CtxDep` (http/deps.py) and call services only, never
repositories. Jobs (janitor, legacy import, recovery) work below this, on sessions and
storage directly, since they serve no request and act for no principal.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from .core.auth import Principal
from .core.clock import Clock
from .core.config import Settings
from .storage.base import ObjectStorage


@dataclass(frozen=True, slots=True)
class Ctx:
    """What every domain operation needs besides the request's own arguments."""

    session: AsyncSession
    storage: ObjectStorage
    settings: Settings
    principal: Principal
    # The app's clock: request-time decisions (tombstone retention) use it, not the wall clock.
    clock: Clock

    @property
    def key_prefix(self) -> str:
        return self.settings.object_storage.key_prefix
