from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from ..core.auth import CurrentUser
from ..core.schemas import ERROR_RESPONSES, MAX_BIGINT, Page
from ..http.deps import SessionDep, SettingsDep, StorageDep
from ..http.params import ResourceId
from . import service
from .limits import check_json_limits
from .schemas import AnnotationCreate, AnnotationFilters, AnnotationRead, AnnotationUpdate

router = APIRouter(prefix="/annotations", tags=["annotations"], responses=ERROR_RESPONSES)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=AnnotationRead)
async def create_annotation(
    body: AnnotationCreate, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> AnnotationRead:
    """Create an annotation owned by the caller."""
    check_json_limits(body, settings.limits)
    annotation = await service.create(session, user, body)
    return AnnotationRead.model_validate(annotation)


@router.get("", response_model=Page[AnnotationRead])
async def list_annotations(
    user: CurrentUser,
    session: SessionDep,
    filters: Annotated[AnnotationFilters, Depends()],
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_BIGINT)] = 0,
) -> Page[AnnotationRead]:
    """List annotations the caller may read: their own, shared ones, or all for admins."""
    rows, total = await service.list_(session, user, filters, limit, offset)
    items = [AnnotationRead.model_validate(a) for a in rows]
    return Page(items=items, total=total, limit=limit, offset=offset)


@router.get("/{annotation_id}", response_model=AnnotationRead)
async def get_annotation(
    annotation_id: ResourceId, user: CurrentUser, session: SessionDep
) -> AnnotationRead:
    """Read one annotation."""
    return AnnotationRead.model_validate(await service.get_readable(session, user, annotation_id))


@router.patch("/{annotation_id}", response_model=AnnotationRead)
async def update_annotation(
    annotation_id: ResourceId,
    body: AnnotationUpdate,
    user: CurrentUser,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
) -> AnnotationRead:
    """Change some fields of an annotation (owner or admin)."""
    check_json_limits(body, settings.limits)
    annotation = await service.update(session, user, annotation_id, body)
    read = AnnotationRead.model_validate(annotation)
    key_prefix = settings.object_storage.key_prefix
    await service.write_documents(session, storage, key_prefix, annotation_id)
    return read


@router.delete("/{annotation_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_annotation(
    annotation_id: ResourceId,
    user: CurrentUser,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
) -> None:
    """Delete an annotation with its mask groups, masks and stored objects."""
    await service.delete(
        session,
        storage,
        settings.object_storage.key_prefix,
        user,
        annotation_id,
        settings.janitor.tombstone_retention_seconds,
    )
