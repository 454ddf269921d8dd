"""The /api router: each domain's endpoints."""

from fastapi import APIRouter

from .annotations.endpoints import router as annotations_router
from .audit.endpoints import router as audit_router
from .masks.endpoints import router as masks_router

api_router = APIRouter()
api_router.include_router(annotations_router)
api_router.include_router(masks_router)
api_router.include_router(audit_router)
