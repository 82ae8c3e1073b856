"""Resumable uploads for admins: the tus 1.0 protocol (core, creation, expiration,
termination, checksum) under `/api/admin/uploads/`.

Why not a library: PyPI's `tuspyserver` (a FastAPI router) writes chunks and takes its file
lock with blocking calls on the event loop, has no checksum extension, keeps expiry in whole
days of naive local time and requires `filename`/`filetype` metadata; wrapping it would have
taken more code than these few endpoints (docs/DEVELOPING.md, "Resumable uploads").

The flow: `POST` validates the metadata (title, description, category, publish_when_ready)
and the declared size before any byte is sent and answers the upload's URL; `PATCH` appends
a chunk at the offset the client states (409 if it is not the server's); `HEAD` tells the
offset to resume from; `DELETE` discards the upload. Once the last byte is stored, ffprobe
checks the file and only then the video exists and `catalog.video.uploaded` leaves, through
the same `service.record_upload` as the single-request upload. The storage is tus_store.py.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import format_datetime
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from videoflix_catalog import service
from videoflix_catalog.api import TUS_PATH, Cache, Settings
from videoflix_catalog.list_cache import ListCache
from videoflix_catalog.settings import CatalogSettings
from videoflix_catalog.tus_store import (
    CHECKSUM_ALGORITHMS,
    Checksum,
    ChunkRefused,
    ClientGone,
    TusStore,
    TusUpload,
    UploadBusy,
)
from videoflix_catalog.uploads import too_large
from videoflix_shared.db import Session
from videoflix_shared.error_responses import error_body, status_of
from videoflix_shared.errors import DomainError
from videoflix_shared.events import utcnow
from videoflix_shared.security import Admin
from videoflix_shared.text import UNSTORABLE_TEXT, is_storable

logger = logging.getLogger(__name__)

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,expiration,termination,checksum"
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
VIDEO_ID_HEADER = "Video-Id"  # on HEAD and the last PATCH once the upload became a video
# Upload-Metadata keys that describe the file rather than the video (tus clients send them).
FILE_KEYS = ("filename", "name", "filetype", "type")


class TusError(Exception):
    """A tus request refused: status, JSON body (left out for HEAD) and extra headers."""

    def __init__(
        self, status_code: int, body: dict[str, object], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(body)
        self.status_code = status_code
        self.body = body
        self.headers = headers or {}


def tus_error(error: DomainError) -> TusError:
    """A refusal of the service layer (bad metadata, not a video) as the tus answer."""
    return TusError(status_of(error), dict(error_body(error)))


def refused(status_code: int, detail: str, **headers: str) -> TusError:
    return TusError(
        status_code, {"detail": detail}, {k.replace("_", "-"): v for k, v in headers.items()}
    )


class UnfinishedUpload(BaseModel):
    id: str
    location: str = Field(description="The upload's tus URL (HEAD, PATCH, DELETE)")
    title: str
    filename: str
    length: int = Field(description="The file's size in bytes")
    offset: int = Field(description="Bytes received so far")
    created_at: datetime
    expires_at: datetime = Field(description="Deleted if not finished by then")


async def get_store(request: Request) -> TusStore:
    store: TusStore = request.app.state.tus_store
    return store


Store = Annotated[TusStore, Depends(get_store)]

tus = APIRouter(prefix=TUS_PATH.rstrip("/"), tags=["resumable uploads (tus)"])


def location(upload_id: str) -> str:
    return f"{TUS_PATH}{upload_id}/"


def http_date(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)


def upload_headers(upload: TusUpload) -> dict[str, str]:
    headers = {
        "Tus-Resumable": TUS_VERSION,
        "Upload-Offset": str(upload.offset),
        "Upload-Length": str(upload.length),
        "Cache-Control": "no-store",
    }
    if upload.video_id is not None:
        headers[VIDEO_ID_HEADER] = str(upload.video_id)
    else:
        headers["Upload-Expires"] = http_date(upload.expires_at)
    return headers


# -- request headers -------------------------------------------------------------------


def require_tus_version(request: Request) -> None:
    if request.headers.get("tus-resumable") != TUS_VERSION:
        raise refused(
            412,
            f"Send Tus-Resumable: {TUS_VERSION} (the only version served).",
            Tus_Version=TUS_VERSION,
        )


def declared_length(request: Request, max_bytes: int) -> int:
    if "upload-defer-length" in request.headers or "upload-concat" in request.headers:
        raise refused(
            400,
            "Declare the size with Upload-Length (deferred length and "
            "concatenation are not supported).",
        )
    raw = request.headers.get("upload-length", "")
    if not raw.isdigit():
        raise refused(400, "Upload-Length (the file's size in bytes) is required.")
    length = int(raw)
    if length == 0:
        raise TusError(400, {"file": ["The uploaded file is empty."]})
    if length > max_bytes:
        raise refused(413, too_large(max_bytes).message, Tus_Max_Size=str(max_bytes))
    return length


def parse_upload_metadata(value: str | None) -> dict[str, str]:
    """Upload-Metadata: comma-separated `key base64(value)` pairs (a bare key is "")."""
    fields: dict[str, str] = {}
    for pair in (value or "").split(","):
        parts = pair.strip().split(" ")
        if parts == [""]:
            continue
        if len(parts) > 2 or not parts[0]:
            raise refused(400, "Upload-Metadata must be comma-separated 'key base64' pairs.")
        key = parts[0]
        if key in fields:
            raise refused(400, f"Upload-Metadata names {key!r} twice.")
        try:
            text = base64.b64decode(parts[1], validate=True).decode() if len(parts) == 2 else ""
        except (binascii.Error, UnicodeDecodeError):
            raise refused(
                400, f"Upload-Metadata: the value of {key!r} is not base64-encoded UTF-8."
            ) from None
        if not is_storable(text):
            raise TusError(400, {key: [UNSTORABLE_TEXT]})
        fields[key] = text
    return fields


def upload_offset(request: Request) -> int:
    raw = request.headers.get("upload-offset", "")
    if not raw.isdigit():
        raise refused(400, "Upload-Offset (where this chunk starts) is required.")
    return int(raw)


def chunk_checksum(request: Request) -> Checksum | None:
    """Upload-Checksum: `<algorithm> <base64 digest>` of this chunk, if the client sends it."""
    raw = request.headers.get("upload-checksum")
    if raw is None:
        return None
    algorithm, _, encoded = raw.strip().partition(" ")
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise refused(
            400,
            f"Upload-Checksum: unsupported algorithm {algorithm!r}.",
            Tus_Checksum_Algorithm=",".join(CHECKSUM_ALGORITHMS),
        )
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error:
        raise refused(400, "Upload-Checksum: the digest is not base64.") from None
    return Checksum(algorithm, digest)


async def request_body(request: Request) -> AsyncIterator[bytes]:
    """The body in the pieces the server receives; ClientGone if the client leaves."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        if message.get("body"):
            yield message["body"]
        if not message.get("more_body", False):
            return


def existing_upload(store: TusStore, upload_id: str) -> TusUpload:
    upload = store.load(upload_id)
    if upload is None:
        raise refused(404, "No such upload (finished long ago, discarded or never created).")
    if upload.video_id is None and upload.expired():
        raise refused(410, "This upload expired; its bytes are deleted. Start a new one.")
    return upload


@contextlib.contextmanager
def locked(store: TusStore, upload_id: str) -> Iterator[int]:
    """The upload's data file under its write lock: 423 while another request holds it
    (tus clients retry), 404 once the upload is gone."""
    try:
        with store.writer(upload_id) as fd:
            yield fd
    except UploadBusy:
        raise refused(423, "Another request is writing to this upload; retry shortly.") from None
    except FileNotFoundError:
        raise refused(404, "No such upload (finished, discarded or expired).") from None


# -- routes ----------------------------------------------------------------------------


@tus.options("/", status_code=204, summary="What this tus server supports")
async def tus_options(_: Admin, settings: Settings) -> Response:
    return Response(
        status_code=204,
        headers={
            "Tus-Resumable": TUS_VERSION,
            "Tus-Version": TUS_VERSION,
            "Tus-Extension": TUS_EXTENSIONS,
            "Tus-Max-Size": str(settings.max_upload_bytes),
            "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS),
        },
    )


@tus.get("/", response_model=list[UnfinishedUpload], summary="Unfinished uploads")
async def list_unfinished_uploads(_: Admin, store: Store) -> list[UnfinishedUpload]:
    now = utcnow()
    return [
        UnfinishedUpload(
            id=u.id,
            location=location(u.id),
            title=u.fields.get("title", ""),
            filename=u.filename,
            length=u.length,
            offset=u.offset,
            created_at=u.created_at,
            expires_at=u.expires_at,
        )
        for u in store.uploads()
        if u.video_id is None and not u.expired(now)
    ]


@tus.post("/", status_code=201, summary="Create an upload (tus creation)")
async def create_upload(
    request: Request, principal: Admin, session: Session, settings: Settings, store: Store
) -> JSONResponse:
    require_tus_version(request)
    length = declared_length(request, settings.max_upload_bytes)
    fields = parse_upload_metadata(request.headers.get("upload-metadata"))
    extra = {key: fields.pop(key) for key in FILE_KEYS if key in fields}
    try:
        await service.parse_upload_metadata(session, fields)
    except DomainError as exc:
        raise tus_error(exc) from exc
    upload = store.create(
        length=length,
        fields=fields,
        filename=extra.get("filename") or extra.get("name") or "upload",
        owner_id=principal.user_id,
        expires_in=timedelta(seconds=settings.tus_expiry_seconds),
        extra=extra,
    )
    logger.info("tus upload %s created: %s bytes", upload.id, length)
    return JSONResponse(
        {
            "id": upload.id,
            "location": location(upload.id),
            "expires_at": upload.expires_at.isoformat(),
        },
        status_code=201,
        headers={**upload_headers(upload), "Location": location(upload.id)},
    )


@tus.head("/{upload_id}/", summary="The offset to resume from")
async def upload_status(
    upload_id: str,
    _: Admin,
    session: Session,
    settings: Settings,
    store: Store,
    cache: Cache,
) -> Response:
    upload = existing_upload(store, upload_id)
    if upload.complete and upload.video_id is None:
        # All bytes arrived but catalog stopped before the video existed: finish now.
        upload = await Completion(session, settings, store, cache).finish_locked(upload)
    return Response(status_code=200, headers=upload_headers(upload))


@tus.patch("/{upload_id}/", status_code=204, summary="Append a chunk at Upload-Offset")
async def append_chunk(
    upload_id: str,
    request: Request,
    _: Admin,
    session: Session,
    settings: Settings,
    store: Store,
    cache: Cache,
) -> Response:
    require_tus_version(request)
    if request.headers.get("content-type", "").split(";")[0].strip() != OFFSET_CONTENT_TYPE:
        raise refused(415, f"Send chunks as Content-Type: {OFFSET_CONTENT_TYPE}.")
    offset = upload_offset(request)
    checksum = chunk_checksum(request)
    existing_upload(store, upload_id)
    with locked(store, upload_id) as fd:
        upload = existing_upload(store, upload_id)  # again, under the lock
        if offset != upload.offset:
            raise refused(
                409,
                f"Upload-Offset {offset} is not this upload's offset {upload.offset}; "
                "ask with HEAD and resume from there.",
                Upload_Offset=str(upload.offset),
            )
        if upload.video_id is None and not upload.complete:
            upload.expires_at = utcnow() + timedelta(seconds=settings.tus_expiry_seconds)
            try:
                await store.receive_chunk(upload, fd, request_body(request), checksum=checksum)
            except ChunkRefused as exc:
                raise refused(exc.status_code, exc.detail) from exc
        if upload.complete and upload.video_id is None:
            upload = await Completion(session, settings, store, cache).finish(upload)
    return Response(status_code=204, headers=upload_headers(upload))


@tus.delete("/{upload_id}/", status_code=204, summary="Discard an upload (tus termination)")
async def discard_upload(upload_id: str, request: Request, _: Admin, store: Store) -> Response:
    require_tus_version(request)
    upload = store.load(upload_id)
    if upload is None:
        raise refused(404, "No such upload.")
    if upload.video_id is not None:  # finished: only its record is left (the video stays)
        store.delete(upload_id)
    else:
        with locked(store, upload_id):
            store.delete(upload_id)
    logger.info("tus upload %s discarded", upload_id)
    return Response(status_code=204, headers={"Tus-Resumable": TUS_VERSION})


# -- completion ------------------------------------------------------------------------


@dataclass(frozen=True)
class Completion:
    """What turning a complete upload into a video needs (one request's resources)."""

    session: AsyncSession
    settings: CatalogSettings
    store: TusStore
    cache: ListCache

    async def finish_locked(self, upload: TusUpload) -> TusUpload:
        """`finish` for a request that does not hold the upload's lock yet (HEAD)."""
        with locked(self.store, upload.id):
            upload = existing_upload(self.store, upload.id)
            if upload.video_id is not None:  # another request finished it meanwhile
                return upload
            return await self.finish(upload)

    async def finish(self, upload: TusUpload) -> TusUpload:
        """Turn a complete upload into a video: ffprobe, then the video row and its upload
        event in one transaction. A file that is no video, or metadata no longer valid (its
        category deleted meanwhile), discards the upload: nothing is left behind.

        The bytes are hard-linked to a temporary name that `record_upload` renames into place,
        so until the commit the upload itself is untouched and a crash loses nothing.
        """
        link = self.store.completion_path(upload.id)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        os.link(self.store.data_path(upload.id), link)
        source = service.StagedSource(
            path=link, size=upload.length, extension=service.safe_extension(upload.filename)
        )
        try:
            video = await service.record_upload(
                self.session,
                fields=upload.fields,
                source=source,
                media_root=self.settings.media_root,
                ffprobe_bin=self.settings.ffprobe_bin,
                probe_timeout=self.settings.ffprobe_timeout_seconds,
            )
        except DomainError as exc:
            self.store.delete(upload.id)
            logger.info("tus upload %s refused at completion: %s", upload.id, exc.message)
            raise tus_error(exc) from exc
        finally:
            link.unlink(missing_ok=True)
        upload.video_id = video.id
        # The record stays until it expires, so a client resuming late learns the video's id.
        upload.expires_at = utcnow() + timedelta(seconds=self.settings.tus_expiry_seconds)
        self.store.save(upload)
        self.store.data_path(upload.id).unlink(missing_ok=True)
        await self.cache.invalidate()
        logger.info("tus upload %s became video %s", upload.id, video.id)
        return upload


# -- wiring ----------------------------------------------------------------------------


def install_tus(app: FastAPI, settings: CatalogSettings) -> TusStore:
    """Serve the tus routes on `app`; their errors carry Tus-Resumable (HEAD: no body)."""
    store = TusStore(settings.media_root)
    app.state.tus_store = store
    app.include_router(tus)

    @app.exception_handler(TusError)
    async def tus_refused(request: Request, exc: TusError) -> Response:
        headers = {"Tus-Resumable": TUS_VERSION, **exc.headers}
        if request.method == "HEAD":  # what a GET would answer, without its body
            return Response(
                status_code=exc.status_code, headers=headers, media_type="application/json"
            )
        return JSONResponse(exc.body, status_code=exc.status_code, headers=headers)

    return store
