"""A cap on request bodies, checked before anything parses them (pure ASGI middleware).

A declared Content-Length over the cap is refused at once, without reading the body; a body
sent without one (chunked) is counted as it arrives and refused as soon as it passes the cap.
The local store's signed PUTs are exempt: their size is bound by the signature (the declared
Content-Length), which storage/local_endpoints.py enforces while streaming to disk.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..storage.local.store import ROUTE_PREFIX as LOCAL_STORE_PREFIX
from .errors import send_json


class BodyLimit:
    def __init__(
        self, app: ASGIApp, max_bytes: int, exempt_prefixes: tuple[str, ...] = (LOCAL_STORE_PREFIX,)
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt = exempt_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send, f"{declared} bytes declared")
            return
        # Read the body here, counting, up to the cap; the app then gets it in one message.
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message], receive), send)
                return
            body = message.get("body", b"")
            received += len(body)
            if received > self.max_bytes:
                await self._refuse(send, f"more than {self.max_bytes} bytes sent")
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        whole: Message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([whole], receive), send)

    async def _refuse(self, send: Send, what: str) -> None:
        payload: dict[str, object] = {
            "error": "PayloadTooLarge",
            "detail": f"request body too large ({what}); the limit is {self.max_bytes} "
            "bytes (limits.max_body_bytes)",
            "limit": self.max_bytes,
        }
        await send_json(send, 413, payload, [(b"connection", b"close")])


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            text = value.decode("latin-1")
            # A malformed value is the server's (h11's) to refuse; a huge one is over the cap.
            return int(text) if text.isascii() and text.isdigit() and len(text) < 19 else None
    return None


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
