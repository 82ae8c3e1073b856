"""Catalog HTTP routes: the public list, the admin API and the admin page (parse, call,
respond; the logic lives in service.py, the response bodies are built in schemas.py).
Refusals are domain errors, mapped to HTTP by the app factory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from videoflix_catalog import service
from videoflix_catalog.list_cache import ListCache
from videoflix_catalog.schemas import (
    AdminVideo,
    CategoryIn,
    CategoryOut,
    Detail,
    PublicVideo,
    UploadAccepted,
    VideoUpdate,
    public_list_row,
)
from videoflix_catalog.settings import CatalogSettings
from videoflix_catalog.transcoder_jobs import TranscoderJobs
from videoflix_catalog.uploads import check_declared_length, receive_upload
from videoflix_shared.db import Session
from videoflix_shared.security import Admin, Authenticated
from videoflix_shared.transcode_jobs import TranscodeJobs

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
UPLOAD_PATH = "/api/admin/videos/upload/"
TUS_PATH = "/api/admin/uploads/"  # resumable uploads (tus.py)
TUS_CHUNK_BYTES = 50_000_000  # the admin page's chunk per request (the gateways allow 64 MiB)

VideoId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]
CategoryId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": dict[str, list[str] | str], "description": "Invalid input"},
    401: {"model": Detail, "description": "Not authenticated"},
    403: {"model": Detail, "description": "Not an administrator, or CSRF header missing"},
}


# `async def` on purpose: FastAPI runs a plain `def` dependency in the thread pool, a
# thread hop per dependency per request that cost the list endpoint a third of its time.
async def get_settings(request: Request) -> CatalogSettings:
    settings: CatalogSettings = request.app.state.settings
    return settings


async def get_list_cache(request: Request) -> ListCache:
    cache: ListCache = request.app.state.list_cache
    return cache


async def get_transcoder_jobs(request: Request) -> TranscoderJobs:
    jobs: TranscoderJobs = request.app.state.transcoder_jobs
    return jobs


Settings = Annotated[CatalogSettings, Depends(get_settings)]
Cache = Annotated[ListCache, Depends(get_list_cache)]
Transcoder = Annotated[TranscoderJobs, Depends(get_transcoder_jobs)]

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
    async def build() -> list[dict[str, int | str]]:
        async with request.app.state.session_factory() as session:
            videos = await service.list_playable_videos(session)
            base_url = settings.public_base_url
            return [public_list_row(video, public_base_url=base_url) for video in videos]

    # Cached, already serialized bytes: no per-request validation or encoding.
    return Response(await cache.get_or_build(build), media_type="application/json")


# -- admin: videos ---------------------------------------------------------------------


@admin.get("/videos/", response_model=list[AdminVideo], summary="Every video with its status")
async def list_videos(_: Admin, session: Session, settings: Settings) -> list[AdminVideo]:
    videos = await service.list_videos(session)
    return [AdminVideo.of(v, public_base_url=settings.public_base_url) for v in videos]


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
    check_declared_length(
        request.headers.get("content-length"), max_bytes=settings.max_upload_bytes
    )

    async def check_metadata(fields: dict[str, str]) -> None:
        await service.check_upload_metadata_so_far(session, fields)

    upload = await receive_upload(
        request.stream(),
        content_type=request.headers.get("content-type"),
        media_root=settings.media_root,
        max_bytes=settings.max_upload_bytes,
        on_file_start=check_metadata,
    )
    try:
        video = await service.record_upload(
            session,
            fields=upload.fields,
            source=upload.source,
            media_root=settings.media_root,
            ffprobe_bin=settings.ffprobe_bin,
            probe_timeout=settings.ffprobe_timeout_seconds,
        )
    finally:
        upload.discard()  # gone already when the video was created (renamed)
    await cache.invalidate()
    view = AdminVideo.of(video, public_base_url=settings.public_base_url)
    return UploadAccepted(id=video.id, status=video.status, video=view)


@admin.get("/videos/{video_id}/", response_model=AdminVideo, responses={404: {"model": Detail}})
async def get_video(
    video_id: VideoId, _: Admin, session: Session, settings: Settings
) -> AdminVideo:
    video = await service.get_video(session, video_id=video_id)
    return AdminVideo.of(video, public_base_url=settings.public_base_url)


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
    return AdminVideo.of(video, public_base_url=settings.public_base_url)


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
    return AdminVideo.of(video, public_base_url=settings.public_base_url)


# -- admin: categories -----------------------------------------------------------------


@admin.get("/categories/", response_model=list[CategoryOut])
async def list_categories(_: Admin, session: Session) -> list[CategoryOut]:
    usages = await service.list_categories(session)
    return [CategoryOut.of(u.category, video_count=u.video_count) for u in usages]


@admin.post("/categories/", status_code=201, response_model=CategoryOut)
async def create_category(body: CategoryIn, _: Admin, session: Session) -> CategoryOut:
    category = await service.create_category(session, name=body.name)
    return CategoryOut.of(category, video_count=0)


@admin.patch(
    "/categories/{category_id}/", response_model=CategoryOut, responses={404: {"model": Detail}}
)
async def rename_category(
    category_id: CategoryId, body: CategoryIn, _: Admin, session: Session, cache: Cache
) -> CategoryOut:
    usage = await service.rename_category(session, category_id=category_id, name=body.name)
    await cache.invalidate()  # the list shows category names
    return CategoryOut.of(usage.category, video_count=usage.video_count)


@admin.delete(
    "/categories/{category_id}/",
    status_code=204,
    responses={404: {"model": Detail}, 409: {"model": Detail}},
)
async def delete_category(category_id: CategoryId, _: Admin, session: Session) -> Response:
    await service.delete_category(session, category_id=category_id)
    return Response(status_code=204)


# -- admin: the transcode queue ----------------------------------------------------------


@admin.get(
    "/transcoding/jobs/",
    response_model=TranscodeJobs,
    responses={503: {"model": Detail, "description": "The transcoder cannot be reached"}},
    summary="The transcoder's queued, running and recently failed jobs (read-only)",
)
async def transcoding_jobs(_: Admin, transcoder: Transcoder) -> TranscodeJobs:
    return await transcoder.fetch()


# -- admin page ------------------------------------------------------------------------


@page.get("/admin/", response_class=HTMLResponse, summary="The admin web page")
async def admin_page(request: Request) -> HTMLResponse:
    context = {"upload_path": UPLOAD_PATH, "tus_path": TUS_PATH, "chunk_size": TUS_CHUNK_BYTES}
    return TEMPLATES.TemplateResponse(request, "admin.html", context)
