"""HTTP surface of streaming: `/api/video/<id>/...` (playlists, segments, thumbnail).

A lean ASGI endpoint sits in front of the shared FastAPI app, which keeps everything else
(`/healthz`, `/readyz`, `/metrics`, CORS preflight, JSON 404s for unknown paths). The
shared middlewares' work for these routes is done inline (inline_middleware.py says why);
the HTTP rules (ranges, validators, cookies) are in http_semantics.py.

Per request: strict route match on the raw path (so `%2e%2e`/`%2f` never match) → token
(cookie `access_token` or Bearer; verified once, then answered from the verifier's cache
until it expires; 401 without one, except for a thumbnail) → who may play this video
(access.py: published and ready for everyone, ready for admins, else 404; 503 until the
playback states are loaded) → the media library (cached metadata) → 304 / 206 / 416 / 200. The body
comes from the library's in-memory cache when it is there (playlists always, segments and
thumbnails within its byte budget); otherwise a file that fits the cache, or a whole file of
up to WHOLE_READ_MAX_BYTES, is read in one go in a worker thread (and kept in the cache when
it fits), and byte ranges of larger files are read in chunks. Bytes sent and the cache's
hits and misses are counted (metrics.py).
"""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass
from typing import NamedTuple

from starlette.types import ASGIApp, Receive, Scope, Send

from videoflix_shared.security import InvalidToken, Principal, TokenVerifier, bearer_token
from videoflix_streaming.access import AccessMap, Audience
from videoflix_streaming.http_semantics import (
    RangeNotSatisfiable,
    cookie_value,
    not_modified,
    parse_byte_range,
    range_applies,
)
from videoflix_streaming.inline_middleware import (
    SERVED_METHODS,
    Header,
    HlsRequest,
    InlineMiddleware,
    JsonError,
)
from videoflix_streaming.metrics import (
    BODY_CACHE_BYTES,
    CACHE_HITS,
    CACHE_MISSES,
    CACHED_KINDS,
    SENT_BYTES_BY_KIND,
)
from videoflix_streaming.service import AssetKind, MediaFile, MediaLibrary, asset_kind

PATH_PREFIX = "/api/video/"
# Matched against the raw (still percent-encoded) path: only these exact names are served,
# so no encoded dot, slash or absolute path can ever reach the file system.
ROUTE = re.compile(
    rb"/api/video/([1-9][0-9]{0,17})/"
    rb"((?:480p|720p|1080p)/(?:index\.m3u8|seg_[0-9]{5}\.ts)|master\.m3u8|thumbnail\.jpg)/?"
)
MAX_TOKEN_LENGTH = 8192
READ_CHUNK_BYTES = 256 * 1024
# Up to this size a file missing from the body cache is read whole by one worker thread and
# sent as one body (segments are 0.5-4 MB); larger ones go out in READ_CHUNK_BYTES chunks.
WHOLE_READ_MAX_BYTES = 16 * 1024 * 1024
SEGMENT_CACHE_CONTROL = b"private, max-age=31536000, immutable"
PLAYLIST_CACHE_CONTROL = b"private, no-cache"
CONTENT_TYPES = {
    AssetKind.MASTER_PLAYLIST: b"application/vnd.apple.mpegurl",
    AssetKind.MEDIA_PLAYLIST: b"application/vnd.apple.mpegurl",
    AssetKind.SEGMENT: b"video/MP2T",
    AssetKind.THUMBNAIL: b"image/jpeg",
}
METRIC_ROUTES = {
    AssetKind.MASTER_PLAYLIST: "/api/video/{id}/master.m3u8",
    AssetKind.MEDIA_PLAYLIST: "/api/video/{id}/{resolution}/index.m3u8",
    AssetKind.SEGMENT: "/api/video/{id}/{resolution}/{segment}",
    AssetKind.THUMBNAIL: "/api/video/{id}/thumbnail.jpg",
}
# Header blocks kept per file version (see MediaHeaders); far more than a process serves
# within the library's cache time, and dropped all at once when reached.
MEDIA_HEADERS_MAX_ENTRIES = 4096

NOT_FOUND = JsonError(404, "Not found.")
METHOD_NOT_ALLOWED = JsonError(405, "Method not allowed.", ((b"allow", b"GET, HEAD, OPTIONS"),))
CREDENTIALS_MISSING = JsonError(
    401, "Authentication credentials were not provided.", ((b"www-authenticate", b"Bearer"),)
)
CREDENTIALS_INVALID = JsonError(
    401, "Invalid or expired access token.", ((b"www-authenticate", b"Bearer"),)
)
ACCESS_NOT_LOADED = JsonError(
    503, "Playback is starting up; try again in a moment.", ((b"retry-after", b"2"),)
)


@dataclass(frozen=True, slots=True)
class MediaHeaders:
    """The response headers that depend only on the file version served and on whether it
    is public: built once per version, not on every request for a segment."""

    validators: tuple[Header, ...]  # ETag, Last-Modified, Cache-Control: 304, 200 and 206
    entity: tuple[Header, ...]  # Content-Type, Accept-Ranges, nosniff and the validators
    whole: tuple[Header, ...]  # `entity` and the Content-Length of the whole file (200)


class MediaReply(NamedTuple):
    """A 200 or 206 about to be sent: status, headers, and which bytes of which file."""

    status: int
    headers: list[Header]
    media: MediaFile
    offset: int
    length: int


def match_route(raw_path: bytes) -> tuple[int, str, AssetKind] | None:
    """(video id, asset name, kind) of a path naming a servable asset, or None."""
    match = ROUTE.fullmatch(raw_path)
    if match is None:
        return None
    asset = match[2].decode()
    kind = asset_kind(asset)
    return None if kind is None else (int(match[1]), asset, kind)


def may_play(audience: Audience, principal: Principal | None) -> bool:
    """Published and ready: everyone (the caller checked the token where one is needed);
    ready but unpublished: admins only (a preview); anything else: nobody."""
    if audience is Audience.EVERYONE:
        return True
    return audience is Audience.ADMINS and principal is not None and principal.is_admin


class HlsEndpoint:
    """ASGI app: serves the HLS routes itself and hands everything else to `fallback`."""

    def __init__(
        self,
        *,
        fallback: ASGIApp,
        library: MediaLibrary,
        verifier: TokenVerifier,
        access: AccessMap,
        allowed_origins: list[str],
        thumbnail_max_age: int,
    ) -> None:
        self.fallback = fallback
        self.library = library
        self.verifier = verifier
        self.access = access
        self.middleware = InlineMiddleware(allowed_origins=allowed_origins)
        self.thumbnail_cache_control = f"public, max-age={thumbnail_max_age}".encode()
        self._media_headers: dict[tuple[str, AssetKind, bool], MediaHeaders] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Preflight (OPTIONS) goes to the shared CORS middleware: identical answers for all paths.
        if (
            scope["type"] != "http"
            or scope["method"] == "OPTIONS"
            or not scope["path"].startswith(PATH_PREFIX)
        ):
            await self.fallback(scope, receive, send)
            return
        await self.middleware(scope, send, self._serve)

    async def _serve(self, request: HlsRequest, send: Send) -> None:
        if request.method not in SERVED_METHODS:
            await self.middleware.send_error(send, request, METHOD_NOT_ALLOWED)
            return
        route = match_route(request.raw_path)
        if route is None:
            await self.middleware.send_error(send, request, NOT_FOUND)
            return
        video_id, asset, kind = route
        request.route = METRIC_ROUTES[kind]
        audience = await self._authorize(request, video_id, kind)
        if isinstance(audience, JsonError):
            await self.middleware.send_error(send, request, audience)
            return
        media = self.library.cached(video_id=video_id, asset=asset)
        if media is None:
            media = await self.library.find(video_id=video_id, asset=asset)
        if media is None:
            await self.middleware.send_error(send, request, NOT_FOUND)
            return
        await self._send_media(send, request, media, public=audience is Audience.EVERYONE)

    async def _authorize(
        self, request: HlsRequest, video_id: int, kind: AssetKind
    ) -> Audience | JsonError:
        """Who may see this video if the caller may see it; else the error to answer."""
        principal = None
        if kind is not AssetKind.THUMBNAIL:  # a published video's thumbnail is public (<img>)
            principal, problem = await self._principal(request.headers)
            if problem is not None:
                return problem
        if not self.access.loaded:  # fail closed until the playback states are known
            return ACCESS_NOT_LOADED
        audience = self.access.audience(video_id)
        if audience is Audience.ADMINS and kind is AssetKind.THUMBNAIL:
            principal, _ = await self._principal(request.headers)  # the admin page's <img>
        if not may_play(audience, principal):
            # 404, not 403: nobody learns that an unpublished video exists.
            return NOT_FOUND
        return audience

    async def _principal(
        self, headers: dict[bytes, str]
    ) -> tuple[Principal | None, JsonError | None]:
        """The caller's verified identity, or None and the error that says why there is none."""
        token = bearer_token(headers.get(b"authorization"))
        if token is None and b"cookie" in headers:
            token = cookie_value(headers[b"cookie"], "access_token")
        if not token:
            return None, CREDENTIALS_MISSING
        if len(token) > MAX_TOKEN_LENGTH:
            return None, CREDENTIALS_INVALID
        principal = self.verifier.cached(token)
        if principal is not None:
            return principal, None
        try:
            return await self.verifier.verify(token), None
        except InvalidToken:
            return None, CREDENTIALS_INVALID

    def _headers_of(self, media: MediaFile, *, public: bool) -> MediaHeaders:
        # Keyed by the strong validator: a replaced file (re-transcode) is a new entry.
        key = (media.etag, media.kind, public)
        found = self._media_headers.get(key)
        if found is None:
            if len(self._media_headers) >= MEDIA_HEADERS_MAX_ENTRIES:
                self._media_headers.clear()
            found = self._media_headers[key] = self._build_headers(media, public=public)
        return found

    def _build_headers(self, media: MediaFile, *, public: bool) -> MediaHeaders:
        if media.kind is AssetKind.SEGMENT:
            cache_control = SEGMENT_CACHE_CONTROL
        elif media.kind is AssetKind.THUMBNAIL and public:
            cache_control = self.thumbnail_cache_control
        else:
            # Playlists; and an admin's preview of an unpublished video's thumbnail, which
            # stays out of shared caches.
            cache_control = PLAYLIST_CACHE_CONTROL
        validators = (
            (b"etag", media.etag.encode()),
            (b"last-modified", media.last_modified.encode()),
            (b"cache-control", cache_control),
        )
        entity = (
            (b"content-type", CONTENT_TYPES[media.kind]),
            (b"accept-ranges", b"bytes"),
            (b"x-content-type-options", b"nosniff"),
            *validators,
        )
        whole = (*entity, (b"content-length", str(media.size).encode()))
        return MediaHeaders(validators=validators, entity=entity, whole=whole)

    async def _send_media(
        self, send: Send, request: HlsRequest, media: MediaFile, *, public: bool
    ) -> None:
        """304, 416, 206 or 200 for a file the caller may see."""
        headers = self._headers_of(media, public=public)
        if not_modified(
            if_none_match=request.headers.get(b"if-none-match"),
            if_modified_since=request.headers.get(b"if-modified-since"),
            etag=media.etag,
            mtime=media.mtime,
        ):
            await self.middleware.start(
                send, request, 304, [*headers.validators, *request.response_headers]
            )
            await send({"type": "http.response.body", "body": b""})
            return
        byte_range = None
        range_header = request.headers.get(b"range")
        if range_header is not None and range_applies(
            request.headers.get(b"if-range"), etag=media.etag, last_modified=media.last_modified
        ):
            try:
                byte_range = parse_byte_range(range_header, media.size)
            except RangeNotSatisfiable:
                content_range = (b"content-range", f"bytes */{media.size}".encode())
                error = JsonError(416, "Requested range not satisfiable.", (content_range,))
                await self.middleware.send_error(send, request, error)
                return
        if byte_range is None:
            response_headers = [*headers.whole, *request.response_headers]
            await self._send_body(
                send, request, MediaReply(200, response_headers, media, 0, media.size)
            )
            return
        first, last = byte_range
        length = last - first + 1
        response_headers = [
            *headers.entity,
            (b"content-range", f"bytes {first}-{last}/{media.size}".encode()),
            (b"content-length", str(length).encode()),
            *request.response_headers,
        ]
        await self._send_body(
            send, request, MediaReply(206, response_headers, media, first, length)
        )

    async def _send_body(self, send: Send, request: HlsRequest, reply: MediaReply) -> None:
        """The bytes the reply names: from memory, else read in a worker thread (whole, and
        kept in the body cache when they fit; in chunks for a larger range or file)."""
        media = reply.media
        if request.method == "HEAD":
            body: bytes | None = b""
        else:
            body = self.library.body(media)
            if media.kind in CACHED_KINDS:
                (CACHE_MISSES if body is None else CACHE_HITS)[media.kind].inc()
            if body is None and self._read_whole(reply):
                body = await self.library.load_body(media)
                BODY_CACHE_BYTES.set(self.library.bodies.size)
                if body is None:  # replaced or removed since it was looked up
                    await self.middleware.send_error(send, request, NOT_FOUND)
                    return
        if body is None:
            await self._send_from_disk(send, request, reply)
            return
        await self.middleware.start(send, request, reply.status, reply.headers)
        # A whole body is sent as is (slicing all of a bytes object copies nothing).
        chunk = body[reply.offset : reply.offset + reply.length]
        await send({"type": "http.response.body", "body": chunk})
        SENT_BYTES_BY_KIND[media.kind].inc(len(chunk))

    def _read_whole(self, reply: MediaReply) -> bool:
        """Whether to read the whole file for this reply: it fits the body cache (so the
        next request, a range too, is served from memory), or it is a whole response small
        enough for one read."""
        size = reply.media.size
        whole = reply.status == 200 and size <= WHOLE_READ_MAX_BYTES
        return whole or self.library.bodies.admits(size)

    async def _send_from_disk(self, send: Send, request: HlsRequest, reply: MediaReply) -> None:
        media, offset, length = reply.media, reply.offset, reply.length
        try:
            fd = await asyncio.to_thread(os.open, media.path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:  # removed since it was looked up (re-transcode, deletion)
            await self.middleware.send_error(send, request, NOT_FOUND)
            return
        try:
            await self.middleware.start(send, request, reply.status, reply.headers)
            while length > 0:
                chunk = await asyncio.to_thread(os.pread, fd, min(READ_CHUNK_BYTES, length), offset)
                if not chunk:
                    # Truncated while we read: fail the response rather than send a short one.
                    raise RuntimeError(f"{media.path} shrank while being sent")
                offset += len(chunk)
                length -= len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": length > 0})
                SENT_BYTES_BY_KIND[media.kind].inc(len(chunk))
        finally:
            os.close(fd)
