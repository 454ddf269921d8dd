"""aiohttp and aiobotocore connections that acknowledge storage answers at once.

Why (core/tcp.py): against Ceph RGW as shipped, every answer with a body (a LIST page, a GET)
waited ~40 ms for Linux's delayed acknowledgement; a `complete` of 2,000 masks lists four
pages. aiohttp offers no hook on a connection's reads, so its connector is given a protocol
that turns delayed acknowledgement off as each piece of an answer arrives: one setsockopt a
receive. `QuickAckConnector` is for aiohttp sessions of our own (files.py), and
`QuickAckHTTPSession` for aiobotocore (AioConfig's `http_session_cls`)."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import aiohttp
from aiobotocore.httpsession import AIOHTTPSession
from aiohttp.client_proto import ResponseHandler

from ...core.tcp import quickack, transport_socket


class QuickAckHandler(ResponseHandler):
    _tcp: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._tcp = transport_socket(transport)

    def data_received(self, data: bytes) -> None:
        quickack(self._tcp)
        super().data_received(data)


def _use_quickack(connector: aiohttp.TCPConnector) -> aiohttp.TCPConnector:
    # `_factory` is how TCPConnector makes each connection's protocol (aiohttp 3.9-3.14); a
    # version without it keeps its own protocol and the 40 ms, nothing worse.
    if hasattr(connector, "_factory"):
        connector._factory = functools.partial(QuickAckHandler, loop=connector._loop)  # type: ignore[assignment]
    return connector


class QuickAckConnector(aiohttp.TCPConnector):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _use_quickack(self)


class QuickAckHTTPSession(AIOHTTPSession):  # type: ignore[misc]
    async def _create_connector(self, proxy_url: Any) -> aiohttp.TCPConnector:
        return _use_quickack(await super()._create_connector(proxy_url))
