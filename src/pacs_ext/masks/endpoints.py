from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, status
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel

from ..context import Ctx
from ..core.auth import CurrentUserOrQueryToken
from ..core.config import Settings
from ..core.schemas import ERROR_RESPONSES, MAX_BIGINT, ErrorBody, Page
from ..http.deps import ClockDep, CtxDep, DownloadsDep, SessionDep, SettingsDep, StorageDep
from ..http.params import MaskPageParams, PageParams, ResourceId
from ..models import Mask
from ..storage import inert
from . import archive, idempotency, service
from .schemas import (
    DownloadUrl,
    MaskFilters,
    MaskGroupCreate,
    MaskGroupCreated,
    MaskGroupRead,
    MaskGroupUpdate,
    MaskRead,
    UploadUrlsRequest,
    UploadUrlsResponse,
)
from .uploads import TARGETS, Target, hex_to_b64, resolve_ttl

router = APIRouter(
    prefix="/annotations/{annotation_id}/mask-groups",
    tags=["mask groups"],
    responses=ERROR_RESPONSES,
)

CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "Conflict (body lists missing/mismatched files)"}
}
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorBody, "description": "Storage or database unavailable; retry"}
}


def _json(content: BaseModel | bytes, status_code: int = 200) -> Response:
    # Thousands of upload targets: serialise once, skip FastAPI's validation of the return value.
    body = content.model_dump_json() if isinstance(content, BaseModel) else content
    return Response(body, status_code=status_code, media_type="application/json")


def _with_uploads(head: bytes, targets: list[Target]) -> bytes:
    """The JSON object `head` with "uploads" appended, each part by a compiled serialiser."""
    return b'%s%s"uploads":%s}' % (
        head[:-1],
        b"," if head != b"{}" else b"",
        TARGETS.dump_json(targets),
    )


def _mask_read(m: Mask) -> MaskRead:
    return MaskRead(
        id=m.id,
        group_id=m.group_id,
        slice_index=m.slice_index,
        sop_instance_uid=m.sop_instance_uid,
        label_name=m.label_name,
        filename=m.filename,
        object_key=m.object_key,
        mime_type=m.mime_type,
        file_size=m.file_size,
        md5=hex_to_b64(m.md5),
        sha256=hex_to_b64(m.sha256),
        width=m.width,
        height=m.height,
        created_at=m.created_at,
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=MaskGroupCreated,
    responses={**CONFLICT, **UNAVAILABLE},
)
async def create_mask_group(
    annotation_id: ResourceId,
    body: MaskGroupCreate,
    ctx: CtxDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=idempotency.HEADER,
            pattern=idempotency.KEY_PATTERN,
            description="retry-safe creation: the same key and request return the same group "
            "(with fresh upload URLs); the same key with another request is a 422",
        ),
    ] = None,
) -> Response:
    """Create a mask group; returns a signed upload target for every declared file."""
    replayed = False
    if idempotency_key is None:
        group, targets = await service.create_group(ctx, annotation_id, body)
    else:
        group, targets, replayed = await service.create_group_once(
            ctx, annotation_id, body, idempotency_key
        )
    (read,) = await service.to_read(ctx.session, [group])
    created = _with_uploads(read.model_dump_json().encode(), targets)
    response = _json(created, status.HTTP_201_CREATED)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@router.get("", response_model=Page[MaskGroupRead])
async def list_mask_groups(
    annotation_id: ResourceId,
    ctx: CtxDep,
    page: PageParams,
) -> Page[MaskGroupRead]:
    """List the annotation's mask groups with their counts."""
    items, total = await service.list_groups(ctx, annotation_id, page)
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.get("/{group_id}", response_model=MaskGroupRead)
async def get_mask_group(
    annotation_id: ResourceId, group_id: ResourceId, ctx: CtxDep
) -> MaskGroupRead:
    """Read a mask group with its file and mask counts and verified bytes."""
    _, group = await service.readable_group(ctx, annotation_id, group_id)
    (read,) = await service.to_read(ctx.session, [group])
    return read


@router.patch("/{group_id}", response_model=MaskGroupRead, responses=UNAVAILABLE)
async def update_mask_group(
    annotation_id: ResourceId, group_id: ResourceId, body: MaskGroupUpdate, ctx: CtxDep
) -> MaskGroupRead:
    """Change a group's descriptive fields (metadata.json follows for complete groups)."""
    group = await service.update_group(ctx, annotation_id, group_id, body)
    (read,) = await service.to_read(ctx.session, [group])
    return read


@router.delete("/{group_id}", status_code=status.HTTP_204_NO_CONTENT, responses=UNAVAILABLE)
async def delete_mask_group(annotation_id: ResourceId, group_id: ResourceId, ctx: CtxDep) -> None:
    """Delete a group, its masks and every object under its prefix."""
    await service.delete_group(ctx, annotation_id, group_id)


@router.post(
    "/{group_id}/upload-urls",
    response_model=UploadUrlsResponse,
    responses={**CONFLICT, **UNAVAILABLE},
)
async def create_upload_urls(
    annotation_id: ResourceId, group_id: ResourceId, body: UploadUrlsRequest, ctx: CtxDep
) -> Response:
    """Sign URLs for more files, renew expired ones (same file name), or get the next page
    of a multipart file's part URLs (`parts`)."""
    targets = await service.upload_urls(
        ctx, annotation_id, group_id, body.files, body.ttl_seconds, body.parts
    )
    return _json(_with_uploads(b"{}", targets))


@router.post(
    "/{group_id}/complete",
    response_model=MaskGroupRead,
    responses={**CONFLICT, **UNAVAILABLE},
)
async def complete_mask_group(
    annotation_id: ResourceId, group_id: ResourceId, ctx: CtxDep
) -> MaskGroupRead:
    """Verify every declared object in storage (size, MD5) and record the masks. Idempotent."""
    group = await service.complete(ctx, annotation_id, group_id)
    (read,) = await service.to_read(ctx.session, [group])
    return read


@router.get("/{group_id}/masks", response_model=Page[MaskRead])
async def list_masks(
    annotation_id: ResourceId,
    group_id: ResourceId,
    ctx: CtxDep,
    filters: Annotated[MaskFilters, Depends()],
    page: MaskPageParams,
) -> Response:
    """List a group's verified masks, filtered by label, SOP instance or slice."""
    rows, total = await service.list_masks(ctx, annotation_id, group_id, filters, page)
    listed = Page[MaskRead](
        items=[_mask_read(m) for m in rows], total=total, limit=page.limit, offset=page.offset
    )
    return _json(listed)


@router.get("/{group_id}/masks/{mask_id}", response_model=MaskRead)
async def get_mask(
    annotation_id: ResourceId, group_id: ResourceId, mask_id: ResourceId, ctx: CtxDep
) -> MaskRead:
    """Read one mask."""
    return _mask_read(await service.readable_mask(ctx, annotation_id, group_id, mask_id))


@router.delete(
    "/{group_id}/masks/{mask_id}", status_code=status.HTTP_204_NO_CONTENT, responses=UNAVAILABLE
)
async def delete_mask(
    annotation_id: ResourceId, group_id: ResourceId, mask_id: ResourceId, ctx: CtxDep
) -> None:
    """Delete one mask and its object."""
    await service.delete_mask(ctx, annotation_id, group_id, mask_id)


@router.get("/{group_id}/masks/{mask_id}/download-url", response_model=DownloadUrl)
async def get_download_url(
    annotation_id: ResourceId,
    group_id: ResourceId,
    mask_id: ResourceId,
    ctx: CtxDep,
    downloads: DownloadsDep,
    clock: ClockDep,
    # Bounded here for the schema; resolve_ttl then names the configured range.
    ttl_seconds: Annotated[int | None, Query(ge=-MAX_BIGINT, le=MAX_BIGINT)] = None,
    attachment: Annotated[
        bool, Query(description="ask browsers to save the file under its name")
    ] = False,
) -> DownloadUrl:
    """A signed GET URL for the mask's object (409 ObjectArchived while it is restored)."""
    mask = await service.readable_mask(ctx, annotation_id, group_id, mask_id)
    ttl = resolve_ttl(ctx.settings, ttl_seconds)
    await archive.ensure_readable(
        ctx.storage, ctx.settings, clock, mask.object_key, mask.created_at
    )
    disposition = f'attachment; filename="{mask.filename}"' if attachment else None
    await service.prepare_signing(ctx)
    signed = await downloads.sign_download(
        mask.object_key,
        ttl,
        content_disposition=disposition,
        content_type=served_type(ctx.settings, mask.mime_type),
    )
    await service.audit_download(ctx, annotation_id, mask, signed.expires_at)
    return DownloadUrl(url=signed.url, expires_at=signed.expires_at)


@router.get(
    "/{group_id}/masks/{mask_id}/content",
    status_code=status.HTTP_307_TEMPORARY_REDIRECT,
    response_class=RedirectResponse,
    responses={307: {"description": "Redirect to a signed GET of the object"}},
)
async def get_mask_content(
    annotation_id: ResourceId,
    group_id: ResourceId,
    mask_id: ResourceId,
    user: CurrentUserOrQueryToken,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    clock: ClockDep,
    downloads: DownloadsDep,
) -> RedirectResponse:
    """Redirect to a short-lived signed GET (usable as an <img src> with ?access_token=)."""
    ctx = Ctx(session=session, storage=storage, settings=settings, principal=user, clock=clock)
    mask = await service.readable_mask(ctx, annotation_id, group_id, mask_id)
    await archive.ensure_readable(storage, settings, clock, mask.object_key, mask.created_at)
    await service.prepare_signing(ctx)
    signed = await downloads.sign_download(
        mask.object_key,
        ctx.settings.signed_url.default_ttl,
        content_type=served_type(ctx.settings, mask.mime_type),
    )
    await service.audit_download(ctx, annotation_id, mask, signed.expires_at)
    return RedirectResponse(signed.url, status_code=status.HTTP_307_TEMPORARY_REDIRECT)


def served_type(settings: Settings, mime_type: str) -> str:
    """The type a download is answered with: the mask's, when it is on the allow-list."""
    return inert.served_type(mime_type, settings.object_storage.allowed_content_types)
