"""The /viewer page: plain HTML/JS/CSS shipped in pacs_ext/static, no build step."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(str(files("pacs_ext") / "static"))

# The page holds a bearer token: only its own scripts run, nothing frames it, and no URL
# (signed ones included) leaks through Referer. Storage may be another origin, so PUTs
# (connect-src) and previews (img-src, after the content redirect) may go to any http(s) host.
# 'wasm-unsafe-eval' lets those scripts compile WebAssembly (the vendored hash-wasm MD5, ~5x
# the JS one); it allows no JS eval and no script from elsewhere.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; "
        "img-src 'self' data: blob: http: https:; connect-src 'self' http: https:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def install_viewer(app: FastAPI) -> None:
    app.mount("/viewer/assets", StaticFiles(directory=STATIC_DIR), name="viewer-assets")

    @app.get("/viewer", include_in_schema=False)
    async def viewer() -> FileResponse:
        """The upload and preview page for people."""
        return FileResponse(STATIC_DIR / "viewer.html", media_type="text/html", headers=_HEADERS)
