"""Request and response bodies of the catalog API (pydantic), and how the response
bodies are built from the models (the service layer returns models, never these)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from videoflix_catalog.models import (
    CATEGORY_NAME_MAX,
    DESCRIPTION_MAX,
    TITLE_MAX,
    Category,
    Video,
    VideoStatus,
)

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=TITLE_MAX)]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=DESCRIPTION_MAX)]
CategoryName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=CATEGORY_NAME_MAX)
]
# A category is named by its id or by its name (case-insensitive).
CategoryRef = int | CategoryName


def thumbnail_url(public_base_url: str, video: Video) -> str:
    """Absolute, and changing with each transcode so browsers never show a stale one."""
    return f"{public_base_url.rstrip('/')}/api/video/{video.id}/thumbnail.jpg?v={video.generation}"


def waiting_for(video: Video) -> str | None:
    """What an admin reads next to a video: why viewers do not see it yet (None: they do)."""
    then = " It publishes itself when ready." if video.publish_when_ready else ""
    if video.status == VideoStatus.FAILED.value:
        return "A working source: transcoding failed. Re-transcode it or upload it again."
    if video.queue_place is not None and video.status != VideoStatus.READY.value:
        return f"Its turn in the transcode queue (place {video.queue_place})." + then
    if video.status == VideoStatus.UPLOADED.value:
        return "A transcoder to start." + then
    if video.status == VideoStatus.PROCESSING.value:
        eta = f", about {_minutes(video.eta_seconds)} left" if video.eta_seconds else ""
        return f"Transcoding to finish ({video.progress:.0f}%{eta})." + then
    if not video.published:
        return "Publication: it is a draft. Publish it to show it to viewers."
    return None


def _minutes(seconds: float | None) -> str:
    minutes = max(1, round((seconds or 0) / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


class PublicVideo(BaseModel):
    """One row of `GET /api/video/` (field names fixed by the API contract)."""

    id: int
    created_at: datetime
    title: str
    description: str
    thumbnail_url: str
    category: str


def public_list_row(video: Video, *, public_base_url: str) -> dict[str, int | str]:
    """A `PublicVideo` as plain JSON values: the list is serialized once per change and
    cached as bytes, so it skips pydantic (and `created_at` keeps its isoformat spelling)."""
    return {
        "id": video.id,
        "created_at": video.created_at.isoformat(),
        "title": video.title,
        "description": video.description,
        "thumbnail_url": thumbnail_url(public_base_url, video),
        "category": video.category.name,
    }


class RenditionBitrate(BaseModel):
    average_bitrate: int = Field(description="Bits/s over the rendition's segments")
    peak_bitrate: int = Field(description="HLS peak segment bit rate (the BANDWIDTH)")
    crf: float | None = Field(description="x264 CRF chosen for the title; null: fixed bit rate")


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
    renditions: list[str] = Field(description="Renditions ready to play, lowest first")
    renditions_progress: dict[str, float] = Field(
        description="Per rendition, percent transcoded (films are transcoded rung by rung)"
    )
    eta_seconds: float | None = Field(
        description="Estimated seconds until every rendition is ready (films); null if unknown"
    )
    renditions_bitrate: dict[str, RenditionBitrate] = Field(
        default_factory=dict,
        description=(
            "Per ready rendition: average and peak bit rate in bits/s (segments as written) "
            "and the CRF the content-aware ladder chose (null: fixed bit rate)"
        ),
    )
    queue_place: int | None = Field(
        description="Place in the transcode queue while its work waits (1 = next)"
    )
    source_size: int
    thumbnail_url: str | None = Field(description="Set once the video is ready")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, video: Video, *, public_base_url: str) -> Self:
        ready = video.status == VideoStatus.READY.value
        return cls(
            id=video.id,
            title=video.title,
            description=video.description,
            category=video.category.name,
            category_id=video.category_id,
            published=video.published,
            publish_when_ready=video.publish_when_ready,
            waiting_for=waiting_for(video),
            status=video.status,
            progress=round(video.progress, 1),
            failure_reason=video.failure_reason,
            generation=video.generation,
            duration_seconds=video.duration_seconds,
            width=video.width,
            height=video.height,
            renditions=list(video.renditions or []),
            renditions_progress=dict(video.renditions_progress or {}),
            eta_seconds=video.eta_seconds,
            renditions_bitrate={
                name: RenditionBitrate.model_validate(rate)
                for name, rate in (video.renditions_bitrate or {}).items()
            },
            queue_place=video.queue_place,
            source_size=video.source_size,
            thumbnail_url=thumbnail_url(public_base_url, video) if ready else None,
            created_at=video.created_at,
            updated_at=video.updated_at,
        )


class UploadAccepted(BaseModel):
    id: int
    status: str
    video: AdminVideo


class UploadForm(BaseModel):
    """The text fields of an upload (multipart form fields, or a resumable upload's
    metadata): every value arrives as a string."""

    title: Title
    description: Description = ""
    category: CategoryRef
    # "true"/"false", "on"/"off", "1"/"0", "yes"/"no"
    publish_when_ready: bool = True


class UploadFormSoFar(BaseModel):
    """`UploadForm` while its fields still arrive: those present must be valid already."""

    title: Title | None = None
    description: Description | None = None
    category: CategoryRef | None = None
    publish_when_ready: bool | None = None


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

    @classmethod
    def of(cls, category: Category, *, video_count: int) -> Self:
        return cls(id=category.id, name=category.name, video_count=video_count)


class CategoryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: CategoryName


class Detail(BaseModel):
    detail: str
