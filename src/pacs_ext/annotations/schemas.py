from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ..core.schemas import DicomUID, JsonArray, JsonObject, Text

# A project as the identity provider names it in the token's projects claim.
ProjectId = Annotated[str, StringConstraints(min_length=1, max_length=255)]

_EXAMPLE: dict[str, Any] = {
    "study_instance_uid": "1.2.840.113619.2.55.3.604688119.969.1268071029.320",
    "series_instance_uid": "1.2.840.113619.2.55.3.604688119.969.1268071029.321",
    "tool_name": "TotalSegmentator",
    "tool_version": "2.4.0",
    "viewer_software": "OHIF",
    "description": "Liver and spleen segmentation",
    "data": {"labels": ["liver", "spleen"]},
    "measurement_values": [{"label": "liver", "volume_ml": 1523.4}],
    "is_shared": False,
}


class AnnotationBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    series_instance_uid: DicomUID | None = None
    sop_instance_uid: DicomUID | None = None
    tool_name: Text | None = Field(None, max_length=255)
    tool_version: Text | None = Field(None, max_length=64)
    viewer_software: Text | None = Field(None, max_length=255)
    description: Text | None = Field(None, max_length=10_000)


class AnnotationCreate(AnnotationBase):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_EXAMPLE]})

    study_instance_uid: DicomUID
    data: JsonObject = Field(default_factory=dict)
    measurement_values: JsonArray = Field(default_factory=list)
    is_shared: bool = False
    project_id: ProjectId | None = Field(
        None, description="a project listed in the caller's token; its members may read it"
    )


class AnnotationUpdate(AnnotationBase):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"description": "reviewed", "is_shared": True}]},
    )

    study_instance_uid: DicomUID | None = None
    data: JsonObject | None = None
    measurement_values: JsonArray | None = None
    is_shared: bool | None = None
    project_id: ProjectId | None = Field(None, description="null removes it from its project")


class AnnotationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    owner: str
    study_instance_uid: str
    series_instance_uid: str | None
    sop_instance_uid: str | None
    tool_name: str | None
    tool_version: str | None
    viewer_software: str | None
    description: str | None
    data: dict[str, Any]
    measurement_values: list[Any]
    is_shared: bool
    project_id: str | None
    created_at: datetime
    updated_at: datetime


class AnnotationFilters(BaseModel):
    study_instance_uid: Text | None = None
    series_instance_uid: Text | None = None
    viewer_software: Text | None = None
    project_id: Text | None = None
