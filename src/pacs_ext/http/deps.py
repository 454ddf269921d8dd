"""FastAPI dependencies, as Annotated aliases named for what they give."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from ..context import Ctx
from ..core.auth import CurrentUser
from ..core.clock import Clock
from ..core.config import Settings
from ..core.db import session_scope
from ..storage.base import ObjectStorage
from ..storage.downloads import DownloadSigner


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    async for session in session_scope(request.app.state.sessionmaker):
        yield session


def _storage(request: Request) -> ObjectStorage:
    storage: ObjectStorage = request.app.state.storage
    return storage


def _downloads(request: Request) -> DownloadSigner:
    downloads: DownloadSigner = request.app.state.downloads
    return downloads


def _clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


# scope="function": commit before the response is sent, so a client that sees 2xx sees the
# change on its next request, and a failed commit becomes an error response, not a lost write.
SessionDep = Annotated[AsyncSession, Depends(_session, scope="function")]
StorageDep = Annotated[ObjectStorage, Depends(_storage)]
SettingsDep = Annotated[Settings, Depends(_settings)]
DownloadsDep = Annotated[DownloadSigner, Depends(_downloads)]
ClockDep = Annotated[Clock, Depends(_clock)]


def _ctx(session: SessionDep, storage: StorageDep, settings: SettingsDep, user: CurrentUser) -> Ctx:
    return Ctx(session=session, storage=storage, settings=settings, principal=user)


# The request context every domain service takes first (context.py).
CtxDep = Annotated[Ctx, Depends(_ctx)]
