"""HTTP endpoint of the embedded object store: signed PUT and GET, no bearer token (the
signature is the credential). Mounted only when the provider is `local`."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, BinaryIO

import anyio.to_thread
import structlog
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.requests import ClientDisconnect

from .. import inert
from ..base import InvalidObjectKey, ObjectExists
from .store import ROUTE_PREFIX, LocalStorage, SignatureError, content_type_of

log = structlog.get_logger(__name__)

router = APIRouter(prefix=ROUTE_PREFIX.rstrip("/"), include_in_schema=False)

# Bodies below this are written in one go; larger ones stream to disk chunk by chunk.
_BUFFER_LIMIT = 4 * 1024 * 1024


# Given a key, None when a PUT may store it, else (status, error code, detail).
UploadGuard = Callable[[str], Awaitable[tuple[int, str, str] | None]]


def _error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


def _storage(request: Request) -> LocalStorage:
    # The store itself, as the app built it (its storage is wrapped to be measured).
    storage: LocalStorage = request.app.state.local_store
    return storage


@router.put("/{key:path}")
async def put_object(
    key: str,
    request: Request,
    expires: Annotated[str, Query()] = "",
    signature: Annotated[str, Query()] = "",
) -> Response:
    storage = _storage(request)
    headers = request.headers
    content_type = headers.get("content-type", "")
    content_length = headers.get("content-length", "")
    content_md5 = headers.get("content-md5", "")
    try:
        storage.verify_put(key, expires, signature, content_type, content_length, content_md5)
        tmp = storage.temp_path()
        dest = storage.path_for(key)
    except SignatureError as exc:
        return _error(exc.status, exc.code, exc.detail)
    except InvalidObjectKey as exc:
        return _error(400, "InvalidKey", str(exc))
    # Write-once, as S3 with a signed If-None-Match: * (checked again when the file is
    # linked in place, for two PUTs racing): never overwrite, and nothing into a group that
    # is complete or deleted (the app's guard asks the database).
    guard: UploadGuard | None = getattr(request.app.state, "upload_guard", None)
    if guard is not None and (refusal := await guard(key)) is not None:
        return _error(*refusal)
    if await anyio.to_thread.run_sync(dest.exists):
        return _exists()
    expected = int(content_length)

    digest = hashlib.md5()  # noqa: S324 - the S3 Content-MD5 contract
    received = 0
    fh: BinaryIO | None = None
    pending = bytearray()
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > expected:
                return _error(
                    400, "IncompleteBody", "body is longer than the signed Content-Length"
                )
            digest.update(chunk)
            pending += chunk
            if len(pending) >= _BUFFER_LIMIT:
                if fh is None:
                    fh = await anyio.to_thread.run_sync(_open_write, tmp)
                await anyio.to_thread.run_sync(fh.write, bytes(pending))
                pending.clear()
        if received != expected:
            return _error(400, "IncompleteBody", "body is shorter than the signed Content-Length")
        md5_hex = digest.hexdigest()
        if content_md5 and base64.b64encode(digest.digest()).decode() != content_md5:
            return _error(400, "BadDigest", "the body does not match the signed Content-MD5")
        out = fh
        fh = None
        await anyio.to_thread.run_sync(
            _finish, storage, out, tmp, bytes(pending), key, md5_hex, content_type
        )
    except ObjectExists:
        return _exists()
    except ClientDisconnect:
        return _error(400, "IncompleteBody", "client disconnected before the body was complete")
    except OSError as exc:
        # Disk full, I/O error: the client may retry the same signed PUT.
        log.warning("storage.write_failed", key=key, error=str(exc)[:200])
        return _error(503, "ServiceUnavailable", "the object could not be stored; retry")
    finally:
        if fh is not None:
            fh.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return Response(status_code=200, headers={"ETag": f'"{md5_hex}"'})


def _open_write(path: Path) -> BinaryIO:
    return open(path, "wb")


def _finish(
    storage: LocalStorage,
    fh: BinaryIO | None,
    tmp: Path,
    tail: bytes,
    key: str,
    md5_hex: str,
    content_type: str,
) -> None:
    out = fh if fh is not None else _open_write(tmp)
    try:
        out.write(tail)
        out.flush()
        os.fsync(out.fileno())
    finally:
        out.close()
    storage.commit_temp(tmp, key, md5_hex, content_type, exclusive=True)


def _exists() -> JSONResponse:
    return _error(
        412,
        "PreconditionFailed",
        "an object is already stored under this key and objects are write-once; "
        "`complete` verifies what is stored",
    )


@router.api_route("/{key:path}", methods=["GET", "HEAD"])
async def get_object(
    key: str,
    request: Request,
    expires: Annotated[str, Query()] = "",
    signature: Annotated[str, Query()] = "",
    disposition: Annotated[str, Query(alias="response-content-disposition")] = "",
    served_type: Annotated[str, Query(alias="response-content-type")] = "",
) -> Response:
    storage = _storage(request)
    try:
        storage.verify_get(key, expires, signature, disposition, served_type)
        path = storage.path_for(key)
    except SignatureError as exc:
        return _error(exc.status, exc.code, exc.detail)
    except InvalidObjectKey as exc:
        return _error(400, "InvalidKey", str(exc))
    if not await anyio.to_thread.run_sync(path.is_file):
        return _error(404, "NoSuchKey", "the object does not exist")
    # Served from the API's own origin: never as a page that could run (storage/inert.py).
    if served_type:
        media_type = inert.normalise(served_type)
    else:
        media_type = inert.served_type(await anyio.to_thread.run_sync(content_type_of, path))
    headers = {
        **inert.INERT_HEADERS,
        "Content-Disposition": disposition or inert.disposition(media_type, key),
    }
    return FileResponse(path, media_type=media_type, headers=headers)
