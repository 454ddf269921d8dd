"""PacsClient: a typed async client (httpx) for the whole HTTP API."""

from __future__ import annotations

import asyncio
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from pydantic import BaseModel

from .. import __version__
from ..core.clock import SYSTEM_CLOCK, Clock
from ..masks.schemas import (
    DownloadUrl,
    FileSpec,
    MaskGroupCreated,
    MaskGroupRead,
    MaskRead,
    UploadTarget,
    UploadUrlsResponse,
)
from .connections import KEEPALIVE_EXPIRY, REPEATABLE, RetryDroppedConnection
from .errors import ApiError, IncompleteUpload, ServerUnreachable
from .files import LocalSpec
from .lean_transport import LeanTransport
from .retry import (
    RETRYABLE_STATUSES,
    RETRYABLE_UNSAFE_STATUSES,
    RetryPolicy,
    is_retryable_exception,
    retry_after_seconds,
)

if TYPE_CHECKING:
    from ..annotations.schemas import AnnotationRead
    from ..core.schemas import Page
    from ..exports.schemas import ExportRead

M = TypeVar("M", bound=BaseModel)
# Ask storage for the bytes as stored (no compression in transit) when fetching mask bytes.
RAW_BYTES = {"Accept-Encoding": "identity"}
FileLike = FileSpec | Mapping[str, Any]


class PacsClient:
    """The API at `server`, called with a bearer token.

    Two HTTP clients: one for the API (carries the token) and one for object storage (signed
    URLs only: the token never goes to storage). Use as `async with PacsClient(...) as c:`.
    Idle connections are forgotten after `keepalive_expiry` seconds (before servers close
    them); a request safe to repeat that a reused connection dropped is sent again at once
    (client/connections.py), before the retry policy's own attempts. `clock` judges whether
    a signed URL has expired (client/expiry.py); tests pass a FakeClock.
    """

    def __init__(
        self,
        server: str,
        token: str,
        *,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        max_connections: int = 64,
        keepalive_expiry: float = KEEPALIVE_EXPIRY,
        transport: httpx.AsyncBaseTransport | None = None,
        storage_transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if not server.startswith(("http://", "https://")):
            raise ValueError(f"server must be an http:// or https:// URL (got {server!r})")
        self.server = server.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.clock = clock
        limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=keepalive_expiry,
        )
        agent = f"pacs-ext-client/{__version__}"
        # The API: the lean transport too, behind the same one retry of a dropped connection.
        # httpx's own (httpcore on anyio) cost ~40 ms of CPU to import and set up at every
        # `pacs-ext upload` start, and loaded the CA bundle even for a plain-http server; the
        # lean one makes a TLS context only when it first connects over https.
        # With a proxy in the environment (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY; NO_PROXY
        # honoured), both clients are httpx's own, which route through it: the lean transport
        # knows no proxies, and httpx reads the environment only when given no transport.
        proxied = _env_proxies()
        self.http = httpx.AsyncClient(
            base_url=self.server,
            headers={"Authorization": f"Bearer {token}", "User-Agent": agent},
            timeout=timeout,
            limits=limits,
            transport=transport
            or (None if proxied else RetryDroppedConnection(LeanTransport(limits))),
        )
        # Storage: the lean transport (lean_transport.py), unless a test brings its own; the
        # uploader's small PUTs call it directly, without httpx's models (`lean`).
        direct = storage_transport is None and not proxied
        self.lean = LeanTransport(limits) if direct else None
        self.storage = httpx.AsyncClient(
            headers={"User-Agent": agent},
            timeout=timeout,
            limits=limits,
            transport=storage_transport
            or (RetryDroppedConnection(self.lean) if self.lean else None),
        )

    async def __aenter__(self) -> PacsClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()
        await self.storage.aclose()

    # ---- transport -----------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        safe: bool | None = None,
    ) -> httpx.Response:
        """One API call with retries; raises ApiError for an error status. `safe`: sending
        it twice does no harm (default: by method)."""
        safe = method in ("GET", "HEAD", "PUT", "DELETE", "PATCH") if safe is None else safe
        statuses = RETRYABLE_STATUSES if safe else RETRYABLE_UNSAFE_STATUSES
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self.http.request(
                    method,
                    path,
                    json=json,
                    params=clean,
                    headers=headers,
                    extensions={REPEATABLE: safe},
                )
            except httpx.TransportError as exc:
                if attempt < self.retry.attempts and is_retryable_exception(exc, safe=safe):
                    await asyncio.sleep(self.retry.delay(attempt))
                    continue
                raise ServerUnreachable(
                    f"cannot reach the server at {self.server}: {_describe(exc)}"
                ) from exc
            if response.status_code in statuses and attempt < self.retry.attempts:
                await asyncio.sleep(self.retry.delay(attempt, retry_after_seconds(response)))
                continue
            if response.status_code >= 400:
                raise _api_error(response)
            return response

    async def _json(self, method: str, path: str, **kw: Any) -> Any:
        return (await self.request(method, path, **kw)).json()

    async def _model(self, model: type[M], method: str, path: str, **kw: Any) -> M:
        return model.model_validate(await self._json(method, path, **kw))

    # ---- health --------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        data: dict[str, Any] = await self._json("GET", "/health")
        return data

    # ---- annotations ---------------------------------------------------------------------

    async def create_annotation(self, study_instance_uid: str, **fields: Any) -> AnnotationRead:
        from ..annotations.schemas import AnnotationRead

        body = {"study_instance_uid": study_instance_uid, **fields}
        return await self._model(AnnotationRead, "POST", "/api/annotations", json=body)

    async def list_annotations(
        self, *, limit: int = 50, offset: int = 0, **filters: str | None
    ) -> Page[AnnotationRead]:
        from ..annotations.schemas import AnnotationRead
        from ..core.schemas import Page

        params = {"limit": limit, "offset": offset, **filters}
        return await self._model(Page[AnnotationRead], "GET", "/api/annotations", params=params)

    async def get_annotation(self, annotation_id: int) -> AnnotationRead:
        from ..annotations.schemas import AnnotationRead

        return await self._model(AnnotationRead, "GET", f"/api/annotations/{annotation_id}")

    async def update_annotation(self, annotation_id: int, **fields: Any) -> AnnotationRead:
        from ..annotations.schemas import AnnotationRead

        return await self._model(
            AnnotationRead, "PATCH", f"/api/annotations/{annotation_id}", json=fields
        )

    async def delete_annotation(self, annotation_id: int) -> None:
        await self.request("DELETE", f"/api/annotations/{annotation_id}")

    # ---- mask groups ---------------------------------------------------------------------

    @staticmethod
    def _groups(annotation_id: int) -> str:
        return f"/api/annotations/{annotation_id}/mask-groups"

    async def create_group(
        self,
        annotation_id: int,
        files: Sequence[FileLike] = (),
        *,
        ttl_seconds: int | None = None,
        **fields: Any,
    ) -> MaskGroupCreated:
        """Create a mask group declaring `files`; the answer holds one upload target each.

        Sent with an Idempotency-Key, the same on every retry: a retry after a lost answer
        gets the group the first attempt created, never a second one."""
        body: dict[str, object] = {**fields, "files": _specs(files)}
        if ttl_seconds is not None:
            body["ttl_seconds"] = ttl_seconds
        key = {"Idempotency-Key": f"pacs-ext-{uuid.uuid4().hex}"}
        return await self._model(
            MaskGroupCreated, "POST", self._groups(annotation_id), json=body, headers=key, safe=True
        )

    async def list_groups(
        self, annotation_id: int, *, limit: int = 50, offset: int = 0
    ) -> Page[MaskGroupRead]:
        from ..core.schemas import Page

        params = {"limit": limit, "offset": offset}
        return await self._model(
            Page[MaskGroupRead], "GET", self._groups(annotation_id), params=params
        )

    async def get_group(self, annotation_id: int, group_id: int) -> MaskGroupRead:
        return await self._model(MaskGroupRead, "GET", f"{self._groups(annotation_id)}/{group_id}")

    async def update_group(self, annotation_id: int, group_id: int, **fields: Any) -> MaskGroupRead:
        return await self._model(
            MaskGroupRead, "PATCH", f"{self._groups(annotation_id)}/{group_id}", json=fields
        )

    async def delete_group(self, annotation_id: int, group_id: int) -> None:
        await self.request("DELETE", f"{self._groups(annotation_id)}/{group_id}")

    async def upload_urls(
        self,
        annotation_id: int,
        group_id: int,
        files: Sequence[FileLike],
        *,
        ttl_seconds: int | None = None,
        parts: dict[str, tuple[int, int]] | None = None,
    ) -> list[UploadTarget]:
        """Declare more files, or renew the URLs of declared ones (same name); `parts` asks
        for a page of part URLs (first part number, count) of multipart files among them."""
        body: dict[str, object] = {"files": _specs(files)}
        if ttl_seconds is not None:
            body["ttl_seconds"] = ttl_seconds
        if parts:
            body["parts"] = {n: {"from": a, "count": c} for n, (a, c) in parts.items()}
        path = f"{self._groups(annotation_id)}/{group_id}/upload-urls"
        # Safe to repeat: declaring the same file again only re-signs it.
        resp = await self._model(UploadUrlsResponse, "POST", path, json=body, safe=True)
        return resp.uploads

    async def complete(self, annotation_id: int, group_id: int) -> MaskGroupRead:
        """Ask the server to verify and commit; IncompleteUpload lists what is missing."""
        path = f"{self._groups(annotation_id)}/{group_id}/complete"
        return await self._model(MaskGroupRead, "POST", path, safe=True)

    # ---- masks ---------------------------------------------------------------------------

    def _masks(self, annotation_id: int, group_id: int) -> str:
        return f"{self._groups(annotation_id)}/{group_id}/masks"

    async def list_masks(
        self,
        annotation_id: int,
        group_id: int,
        *,
        label_name: str | None = None,
        sop_instance_uid: str | None = None,
        slice_index: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Page[MaskRead]:
        from ..core.schemas import Page

        params = {
            "label_name": label_name,
            "sop_instance_uid": sop_instance_uid,
            "slice_index": slice_index,
            "limit": limit,
            "offset": offset,
        }
        return await self._model(
            Page[MaskRead], "GET", self._masks(annotation_id, group_id), params=params
        )

    async def iter_masks(
        self, annotation_id: int, group_id: int, *, page_size: int = 1000, **filters: Any
    ) -> AsyncIterator[MaskRead]:
        """Every mask of the group, page after page."""
        offset = 0
        while True:
            page = await self.list_masks(
                annotation_id, group_id, limit=page_size, offset=offset, **filters
            )
            for item in page.items:
                yield item
            offset += len(page.items)
            if not page.items or offset >= page.total:
                return

    async def get_mask(self, annotation_id: int, group_id: int, mask_id: int) -> MaskRead:
        return await self._model(
            MaskRead, "GET", f"{self._masks(annotation_id, group_id)}/{mask_id}"
        )

    async def delete_mask(self, annotation_id: int, group_id: int, mask_id: int) -> None:
        await self.request("DELETE", f"{self._masks(annotation_id, group_id)}/{mask_id}")

    async def download_url(
        self,
        annotation_id: int,
        group_id: int,
        mask_id: int,
        *,
        ttl_seconds: int | None = None,
        attachment: bool = False,
    ) -> DownloadUrl:
        path = f"{self._masks(annotation_id, group_id)}/{mask_id}/download-url"
        params = {"ttl_seconds": ttl_seconds, "attachment": "true" if attachment else None}
        return await self._model(DownloadUrl, "GET", path, params=params)

    def content_url(self, annotation_id: int, group_id: int, mask_id: int) -> str:
        """The API URL that redirects to the mask's bytes (for viewers; needs the token)."""
        return f"{self.server}{self._masks(annotation_id, group_id)}/{mask_id}/content"

    async def read_mask(self, annotation_id: int, group_id: int, mask_id: int) -> bytes:
        """The mask's bytes, fetched straight from storage through a signed URL."""
        signed = await self.download_url(annotation_id, group_id, mask_id)
        async with self.storage.stream("GET", signed.url, headers=RAW_BYTES) as resp:
            if resp.status_code != 200:
                await resp.aread()
                raise ApiError(resp.status_code, "StorageError", storage_message(resp))
            # As stored, never decoded: a stored Content-Encoding does not apply to mask bytes.
            return b"".join([chunk async for chunk in resp.aiter_raw()])

    # ---- DICOM SEG exports ---------------------------------------------------------------

    def _exports(self, annotation_id: int, group_id: int) -> str:
        return f"{self._groups(annotation_id)}/{group_id}/exports"

    async def create_export(
        self,
        annotation_id: int,
        group_id: int,
        *,
        segmentation_type: str = "LABELMAP",
        store: bool = False,
        **fields: Any,
    ) -> ExportRead:
        """Start a DICOM SEG export of a complete group (202); follow it with get_export."""
        from ..exports.schemas import ExportRead

        body = {"format": "dicom-seg", "segmentation_type": segmentation_type, "store": store}
        return await self._model(
            ExportRead,
            "POST",
            self._exports(annotation_id, group_id),
            json={**body, **fields},
            safe=False,
        )

    async def get_export(self, annotation_id: int, group_id: int, export_id: int) -> ExportRead:
        from ..exports.schemas import ExportRead

        return await self._model(
            ExportRead, "GET", f"{self._exports(annotation_id, group_id)}/{export_id}"
        )

    async def list_exports(
        self, annotation_id: int, group_id: int, *, limit: int = 50, offset: int = 0
    ) -> Page[ExportRead]:
        from ..core.schemas import Page
        from ..exports.schemas import ExportRead

        params = {"limit": limit, "offset": offset}
        return await self._model(
            Page[ExportRead], "GET", self._exports(annotation_id, group_id), params=params
        )

    async def wait_export(
        self,
        export: ExportRead,
        *,
        poll_seconds: float = 0.25,
        on_progress: Callable[[ExportRead], None] | None = None,
    ) -> ExportRead:
        """Poll until the export has succeeded or failed; returns its last state."""
        while True:
            if on_progress is not None:
                on_progress(export)
            if export.status in ("succeeded", "failed"):
                return export
            await asyncio.sleep(poll_seconds)
            export = await self.get_export(export.annotation_id, export.group_id, export.id)

    async def read_export(self, export: ExportRead) -> bytes:
        """The SEG's bytes, through the export's signed download URL."""
        if export.download_url is None:
            raise ApiError(409, "Conflict", f"export {export.id} has no SEG written yet")
        response = await self.storage.get(export.download_url, headers=RAW_BYTES)
        if response.status_code != 200:
            raise ApiError(response.status_code, "StorageError", storage_message(response))
        return response.content


def _env_proxies() -> bool:
    proxies = urllib.request.getproxies()
    return any(k in proxies for k in ("http", "https", "all"))


def _specs(files: Sequence[FileLike]) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for f in files:
        if isinstance(f, LocalSpec):  # the uploader's own, sent as it is
            out.append(f)
            continue
        spec = f if isinstance(f, FileSpec) else FileSpec.model_validate(dict(f))
        out.append(spec.model_dump(exclude_none=True))
    return out


def _api_error(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body:
        cls = (
            IncompleteUpload
            if response.status_code == 409 and ("missing" in body or "mismatched" in body)
            else ApiError
        )
        return cls(response.status_code, str(body["error"]), body.get("detail"), body)
    text = response.text.strip()[:200] or response.reason_phrase
    return ApiError(response.status_code, "HTTPError", text)


def storage_message(response: httpx.Response) -> str:
    """A short, readable reason from a storage error body (S3 XML or the local store's JSON)."""
    text = response.text
    code = _between(text, "<Code>", "</Code>")
    message = _between(text, "<Message>", "</Message>")
    if not code:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            code, message = str(body.get("error", "")), str(body.get("detail", ""))
    reason = ": ".join(p for p in (code, message) if p) or text.strip()[:200]
    return f"HTTP {response.status_code} {reason}".strip()


def _between(text: str, start: str, end: str) -> str:
    i = text.find(start)
    if i < 0:
        return ""
    j = text.find(end, i)
    return text[i + len(start) : j] if j > 0 else ""


def _describe(exc: BaseException) -> str:
    # httpx messages name the error, not the URL; still, never echo query strings.
    text = str(exc).split("?")[0].strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
