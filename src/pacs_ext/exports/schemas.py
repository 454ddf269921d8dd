"""Export request and answer (the client SDK imports these: no server-side imports)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..seg.labels import LabelEntry

ExportStatus = Literal["queued", "running", "succeeded", "failed"]


class ExportCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"format": "dicom-seg", "segmentation_type": "LABELMAP", "store": True}]
        },
    )

    format: Literal["dicom-seg"] = "dicom-seg"
    segmentation_type: Literal["LABELMAP", "BINARY"] = "LABELMAP"
    store: bool = Field(False, description="also send the SEG to the PACS by STOW-RS")
    slice_index_base: Literal[0, 1] = Field(
        0, description="the slice_index of the first image along the normal (0 or 1)"
    )
    label_table: dict[str, LabelEntry] | None = Field(
        None,
        max_length=1000,
        description="label → colour/category/type, before the configured and built-in tables",
    )


class ExportRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    annotation_id: int
    group_id: int
    format: str
    segmentation_type: str
    store: bool
    status: ExportStatus
    phase: str
    progress: float = Field(description="0 to 1")
    error: str | None = None
    object_key: str | None = None
    file_size: int | None = None
    frames: int | None = None
    series_instance_uid: str | None = None
    sop_instance_uid: str | None = None
    stored: bool = False
    timings: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    finished_at: datetime | None = None
    download_url: str | None = Field(None, description="signed GET of the SEG, when written")
    download_expires_at: datetime | None = None
