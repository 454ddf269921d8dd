"""Routes: start a DICOM SEG export of a mask group, follow it, list a group's exports."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, status

from ..core.schemas import ERROR_RESPONSES, ErrorBody, Page
from ..http.deps import CtxDep, DownloadsDep
from ..http.params import PageParams, ResourceId
from . import service
from .runner import ExportRunner
from .schemas import ExportCreate, ExportRead

router = APIRouter(
    prefix="/annotations/{annotation_id}/mask-groups/{group_id}/exports",
    tags=["exports"],
    responses=ERROR_RESPONSES,
)

REFUSED: dict[int | str, dict[str, Any]] = {
    409: {
        "model": ErrorBody,
        "description": "Group not complete, no DICOMweb server configured, or masks that "
        "cannot be mapped to the source series (`masks` names them)",
    },
    502: {"model": ErrorBody, "description": "The DICOMweb server failed"},
}


def _runner(request: Request) -> ExportRunner:
    runner: ExportRunner = request.app.state.exports
    return runner


RunnerDep = Annotated[ExportRunner, Depends(_runner)]


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=ExportRead, responses=REFUSED)
async def create_export(
    annotation_id: ResourceId,
    group_id: ResourceId,
    body: ExportCreate,
    ctx: CtxDep,
    runner: RunnerDep,
    downloads: DownloadsDep,
) -> ExportRead:
    """Export a complete group as a DICOM SEG (LABELMAP or BINARY); `store` also sends it to
    the PACS by STOW-RS. Answers at once with the export to follow (GET .../{export_id})."""
    export = await service.start(ctx, runner, annotation_id, group_id, body)
    return await service.to_read(ctx, downloads, export)


@router.get("", response_model=Page[ExportRead])
async def list_exports(
    annotation_id: ResourceId,
    group_id: ResourceId,
    ctx: CtxDep,
    page: PageParams,
    downloads: DownloadsDep,
) -> Page[ExportRead]:
    """The group's exports, newest first, with signed download URLs of the written ones."""
    rows, total = await service.list_for_group(ctx, annotation_id, group_id, page)
    items = [await service.to_read(ctx, downloads, e) for e in rows]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.get("/{export_id}", response_model=ExportRead)
async def get_export(
    annotation_id: ResourceId,
    group_id: ResourceId,
    export_id: ResourceId,
    ctx: CtxDep,
    downloads: DownloadsDep,
) -> ExportRead:
    """One export: status, phase, progress, error, result UIDs and download URL."""
    export = await service.get(ctx, annotation_id, group_id, export_id)
    return await service.to_read(ctx, downloads, export)
