"""Catalog HTTP routes: the public list, the admin API and the admin page (parse, call,
respond; the logic lives in service.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from videoflix_catalog import service
from videoflix_catalog.list_cache import ListCache
from videoflix_catalog.schemas import (
    AdminVideo,
    CategoryIn,
    CategoryOut,
    CategoryRef,
    Description,
    Detail,
    PublicVideo,
    Title,
    UploadAccepted,
    VideoUpdate,
)
from videoflix_catalog.settings import CatalogSettings
from videoflix_catalog.uploads import UploadRejected, probe_video, receive_upload
from videoflix_shared.db import Session
from videoflix_shared.security import Admin, Authenticated

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
UPLOAD_PATH = "/api/admin/videos/upload/"

VideoId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]
CategoryId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]

ERRORS = {
    400: {"model": dict[str, list[str] | str], "description": "Invalid input"},
    401: {"model": Detail, "description": "Not authenticated"},
    403: {"model": Detail, "description": "Not an administrator, or CSRF header missing"},
}


# `async def` on purpose: FastAPI runs a plain `def` dependency in the thread pool, a
# thread hop per dependency per request that cost the list endpoint a third of its time.
async def get_settings(request: Request) -> CatalogSettings:
    return request.app.state.settings


async def get_list_cache(request: Request) -> ListCache:
    return request.app.state.list_cache


Settings = Annotated[CatalogSettings, Depends(get_settings)]
Cache = Annotated[ListCache, Depends(get_list_cache)]

public = APIRouter(tags=["videos"])
admin = APIRouter(prefix="/api/admin", tags=["admin"], responses=ERRORS)
page = APIRouter(tags=["admin page"])


# -- public ----------------------------------------------------------------------------


@public.get(
    "/api/video/",
    response_model=list[PublicVideo],
    responses={401: {"model": Detail}},
    summary="Playable videos, newest first",
)
async def list_playable_videos(
    request: Request,
    cache: Cache,
    settings: Settings,
    _: Authenticated,  # any signed-in user; who it is does not change the list
) -> Response:
    async def build() -> list[dict]:
        async with request.app.state.session_factory() as session:
            return await service.list_playable_videos(
                session, public_base_url=settings.public_base_url
            )

    # Cached, already serialized bytes: no per-request validation or encoding.
    return Response(await cache.get_or_build(build), media_type="application/json")


# -- admin: videos ---------------------------------------------------------------------


@admin.get("/videos/", response_model=list[AdminVideo], summary="Every video with its status")
async def list_videos(_: Admin, session: Session, settings: Settings) -> list[AdminVideo]:
    videos = await service.list_videos(session)
    return [service.admin_view(v, public_base_url=settings.public_base_url) for v in videos]


UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "title", "category"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "title": {"type": "string", "maxLength": 200},
                        "description": {"type": "string", "maxLength": 5000},
                        "category": {
                            "type": "string",
                            "description": "Category id or name",
                        },
                        "publish_when_ready": {
                            "type": "boolean",
                            "default": True,
                            "description": "Publish the video once transcoded (false: a draft)",
                        },
                    },
                }
            }
        },
    }
}


@admin.post(
    "/videos/upload/",
    status_code=202,
    response_model=UploadAccepted,
    openapi_extra=UPLOAD_BODY,
    responses={
        413: {"model": Detail, "description": "File larger than CATALOG_MAX_UPLOAD_BYTES"},
        415: {"model": dict[str, list[str] | str], "description": "Not a video"},
    },
    summary="Upload a video (streamed to the media volume); transcoding starts in background",
)
async def upload_video(
    request: Request, _: Admin, session: Session, settings: Settings, cache: Cache
) -> UploadAccepted:
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > settings.max_upload_bytes + 1024 * 1024:
        raise UploadRejected(
            413,
            {
                "detail": "The file is larger than the maximum upload size of "
                f"{settings.max_upload_bytes} bytes."
            },
        )

    async def check_metadata(fields: dict[str, str]) -> None:
        # Refuse bad metadata sent ahead of the file before reading the file.
        await _parse_metadata(session, fields, partial=True)

    upload = await receive_upload(
        request.stream(),
        content_type=request.headers.get("content-type"),
        media_root=settings.media_root,
        max_bytes=settings.max_upload_bytes,
        on_file_start=check_metadata,
    )
    try:
        metadata = await _parse_metadata(session, upload.fields, partial=False)
        probe = await probe_video(
            upload.temp_path,
            ffprobe_bin=settings.ffprobe_bin,
            timeout=settings.ffprobe_timeout_seconds,
        )
        video = await service.create_video(
            session,
            metadata=metadata,  # type: ignore[arg-type]
            upload=upload,
            probe=probe,
            media_root=settings.media_root,
        )
    finally:
        upload.discard()  # gone already when the video was created (renamed)
    await cache.invalidate()
    view = service.admin_view(video, public_base_url=settings.public_base_url)
    return UploadAccepted(id=video.id, status=video.status, video=view)


_TITLE = TypeAdapter(Title)
_DESCRIPTION = TypeAdapter(Description)
_CATEGORY = TypeAdapter(CategoryRef)
_FLAG = TypeAdapter(bool)  # "true"/"false", "on"/"off", "1"/"0", "yes"/"no"


async def _parse_metadata(
    session: AsyncSession, fields: dict[str, str], *, partial: bool
) -> service.VideoMetadata | None:
    """Validate the upload's text fields; with `partial`, only those present so far."""
    errors: dict[str, list[str]] = {}
    values: dict[str, object] = {}
    for name, adapter, required in (
        ("title", _TITLE, True),
        ("description", _DESCRIPTION, False),
        ("category", _CATEGORY, True),
        ("publish_when_ready", _FLAG, False),
    ):
        if name not in fields:
            if required and not partial:
                errors[name] = ["This field is required."]
            continue
        try:
            values[name] = adapter.validate_python(fields[name])
        except ValidationError as exc:
            errors[name] = [e["msg"] for e in exc.errors()]
    unknown = set(fields) - {"title", "description", "category", "publish_when_ready"}
    if unknown:
        errors["detail"] = [f"Unexpected form field(s): {', '.join(sorted(unknown))}."]
    if not errors and "category" in values:
        try:
            values["category"] = await service.resolve_category(
                session,
                ref=values["category"],  # type: ignore[arg-type]
            )
        except service.CatalogError as exc:
            errors.update(exc.errors)  # type: ignore[arg-type]
    if errors:
        raise UploadRejected(400, errors)
    if partial:
        return None
    return service.VideoMetadata(
        title=values["title"],  # type: ignore[arg-type]
        description=values.get("description", ""),  # type: ignore[arg-type]
        category=values["category"],  # type: ignore[arg-type]
        publish_when_ready=values.get("publish_when_ready", True),  # type: ignore[arg-type]
    )


@admin.get("/videos/{video_id}/", response_model=AdminVideo, responses={404: {"model": Detail}})
async def get_video(
    video_id: VideoId, _: Admin, session: Session, settings: Settings
) -> AdminVideo:
    video = await service.get_video(session, video_id=video_id)
    return service.admin_view(video, public_base_url=settings.public_base_url)


@admin.patch(
    "/videos/{video_id}/",
    response_model=AdminVideo,
    responses={404: {"model": Detail}},
    summary="Change title, description, category or publication",
)
async def update_video(
    video_id: VideoId,
    changes: VideoUpdate,
    _: Admin,
    session: Session,
    settings: Settings,
    cache: Cache,
) -> AdminVideo:
    video = await service.update_video(session, video_id=video_id, changes=changes)
    await cache.invalidate()
    return service.admin_view(video, public_base_url=settings.public_base_url)


@admin.delete(
    "/videos/{video_id}/",
    status_code=204,
    responses={404: {"model": Detail}},
    summary="Delete a video (its media is removed by the transcoder)",
)
async def delete_video(video_id: VideoId, _: Admin, session: Session, cache: Cache) -> Response:
    await service.delete_video(session, video_id=video_id)
    await cache.invalidate()
    return Response(status_code=204)


@admin.post(
    "/videos/{video_id}/retranscode/",
    status_code=202,
    response_model=AdminVideo,
    responses={404: {"model": Detail}, 409: {"model": Detail}},
    summary="Transcode the stored source again",
)
async def retranscode_video(
    video_id: VideoId, _: Admin, session: Session, settings: Settings, cache: Cache
) -> AdminVideo:
    video = await service.retranscode_video(
        session, video_id=video_id, media_root=settings.media_root
    )
    await cache.invalidate()
    return service.admin_view(video, public_base_url=settings.public_base_url)


# -- admin: categories -----------------------------------------------------------------


@admin.get("/categories/", response_model=list[CategoryOut])
async def list_categories(_: Admin, session: Session) -> list[CategoryOut]:
    return await service.list_categories(session)


@admin.post("/categories/", status_code=201, response_model=CategoryOut)
async def create_category(body: CategoryIn, _: Admin, session: Session) -> CategoryOut:
    return await service.create_category(session, name=body.name)


@admin.patch(
    "/categories/{category_id}/", response_model=CategoryOut, responses={404: {"model": Detail}}
)
async def rename_category(
    category_id: CategoryId, body: CategoryIn, _: Admin, session: Session, cache: Cache
) -> CategoryOut:
    category = await service.rename_category(session, category_id=category_id, name=body.name)
    await cache.invalidate()  # the list shows category names
    return category


@admin.delete(
    "/categories/{category_id}/",
    status_code=204,
    responses={404: {"model": Detail}, 409: {"model": Detail}},
)
async def delete_category(category_id: CategoryId, _: Admin, session: Session) -> Response:
    await service.delete_category(session, category_id=category_id)
    return Response(status_code=204)


# -- admin page ------------------------------------------------------------------------


@page.get("/admin/", response_class=HTMLResponse, summary="The admin web page")
async def admin_page(request: Request) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(request, "admin.html", {"upload_path": UPLOAD_PATH})
