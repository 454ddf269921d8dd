"""Response headers that keep browsers from misusing what this server sends (pure ASGI).

Every response: `X-Content-Type-Options: nosniff` (a body is never sniffed into HTML or
script) and `X-Frame-Options: DENY` (nothing here is meant to be framed: no clickjacking).
API answers also get `Cache-Control: no-store`: they carry signed URLs (download-url, upload
targets) and patient-related data that no browser or proxy cache should keep. A header the
route set itself (the /viewer page's policy, the store's) is left as it is.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_ALWAYS = ((b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"))
_API = ((b"cache-control", b"no-store"),)


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = _ALWAYS + _API if scope["path"].startswith("/api/") else _ALWAYS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers += [(k, v) for k, v in extra if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
