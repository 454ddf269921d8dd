"""The /api router: each domain's endpoints."""

from fastapi import APIRouter, Depends

from .annotations.endpoints import router as annotations_router
from .audit.endpoints import router as audit_router
from .exports.endpoints import router as exports_router
from .http.observability import bind_path_ids
from .masks.endpoints import router as masks_router

# bind_path_ids: annotation, group and mask ids from the path go on every log line.
api_router = APIRouter(dependencies=[Depends(bind_path_ids)])
api_router.include_router(annotations_router)
api_router.include_router(masks_router)
api_router.include_router(audit_router)
api_router.include_router(exports_router)
