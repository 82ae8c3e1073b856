"""Request and response bodies of the catalog API (pydantic)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from videoflix_catalog.models import CATEGORY_NAME_MAX, DESCRIPTION_MAX, TITLE_MAX

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=TITLE_MAX)]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=DESCRIPTION_MAX)]
CategoryName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=CATEGORY_NAME_MAX)
]
# A category is named by its id or by its name (case-insensitive).
CategoryRef = int | CategoryName


class PublicVideo(BaseModel):
    """One row of `GET /api/video/` (field names fixed by the API contract)."""

    id: int
    created_at: datetime
    title: str
    description: str
    thumbnail_url: str
    category: str


class AdminVideo(BaseModel):
    id: int
    title: str
    description: str
    category: str
    category_id: int
    published: bool
    publish_when_ready: bool = Field(description="Publishes itself once transcoded")
    waiting_for: str | None = Field(
        description="What has to happen before viewers see the video; null once they do"
    )
    status: str = Field(description="uploaded | processing | ready | failed")
    progress: float = Field(description="Transcoding progress in percent")
    failure_reason: str | None
    generation: int = Field(description="Transcoding attempt (upload = 1)")
    duration_seconds: float | None
    width: int | None
    height: int | None
    renditions: list[str]
    source_size: int
    thumbnail_url: str | None = Field(description="Set once the video is ready")
    created_at: datetime
    updated_at: datetime


class UploadAccepted(BaseModel):
    id: int
    status: str
    video: AdminVideo


class VideoUpdate(BaseModel):
    """Fields to change; anything left out stays as it is."""

    model_config = ConfigDict(extra="forbid")

    title: Title | None = None
    description: Description | None = None
    category: CategoryRef | None = None
    published: bool | None = None
    publish_when_ready: bool | None = None


class CategoryOut(BaseModel):
    id: int
    name: str
    video_count: int = 0


class CategoryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: CategoryName


class Detail(BaseModel):
    detail: str
