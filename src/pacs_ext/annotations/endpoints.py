from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status

from ..core.schemas import ERROR_RESPONSES, Page
from ..http.deps import CtxDep
from ..http.params import PageParams, ResourceId
from . import service
from .limits import check_json_limits
from .schemas import AnnotationCreate, AnnotationFilters, AnnotationRead, AnnotationUpdate

router = APIRouter(prefix="/annotations", tags=["annotations"], responses=ERROR_RESPONSES)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=AnnotationRead)
async def create_annotation(body: AnnotationCreate, ctx: CtxDep) -> AnnotationRead:
    """Create an annotation owned by the caller."""
    check_json_limits(body, ctx.settings.limits)
    annotation = await service.create(ctx, body)
    read = AnnotationRead.model_validate(annotation)
    await service.write_annotation_document(ctx, annotation.id)
    return read


@router.get("", response_model=Page[AnnotationRead])
async def list_annotations(
    ctx: CtxDep, filters: Annotated[AnnotationFilters, Depends()], page: PageParams
) -> Page[AnnotationRead]:
    """List annotations the caller may read: their own, shared ones, or all for admins."""
    rows, total = await service.list_(ctx, filters, page)
    items = [AnnotationRead.model_validate(a) for a in rows]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.get("/{annotation_id}", response_model=AnnotationRead)
async def get_annotation(annotation_id: ResourceId, ctx: CtxDep) -> AnnotationRead:
    """Read one annotation."""
    return AnnotationRead.model_validate(await service.get_readable(ctx, annotation_id))


@router.patch("/{annotation_id}", response_model=AnnotationRead)
async def update_annotation(
    annotation_id: ResourceId,
    body: AnnotationUpdate,
    ctx: CtxDep,
) -> AnnotationRead:
    """Change some fields of an annotation (owner or admin)."""
    check_json_limits(body, ctx.settings.limits)
    annotation = await service.update(ctx, annotation_id, body)
    read = AnnotationRead.model_validate(annotation)
    await service.write_documents(ctx, annotation_id)
    return read


@router.delete("/{annotation_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_annotation(annotation_id: ResourceId, ctx: CtxDep) -> None:
    """Delete an annotation with its mask groups, masks and stored objects."""
    await service.delete(ctx, annotation_id)
