"""HTTP surface of streaming: `/api/video/<id>/...` (playlists, segments, thumbnail).

A lean ASGI endpoint sits in front of the shared FastAPI app, which keeps everything else
(`/healthz`, `/readyz`, `/metrics`, CORS preflight, JSON 404s for unknown paths). Measured on
this machine, a FastAPI route + `FileResponse` reaches 0.16-0.32x of nginx on a 620 KB
segment, a bare ASGI handler on Granian 0.62x: the middleware stack and per-request
threadpool `stat` are the difference. So this endpoint does the shared middlewares' work
itself, from precomputed values: request id, CORS headers for the configured origins,
Prometheus metrics, JSON errors.

Per request: strict route match on the raw path (so `%2e%2e`/`%2f` never match) → token
(cookie `access_token` or Bearer; verified once, then answered from the verifier's cache
until it expires; 401 without one, except for a thumbnail) → who may play this video
(access.py: published and ready for everyone, ready for admins, else 404; 503 until the
playback states are loaded) → the media library (cached metadata) → 304 / 206 / 416 / 200. The body
comes from the library's in-memory cache when it is there (playlists always, segments and
thumbnails within its byte budget); otherwise a full file goes out by ASGI
`http.response.pathsend` (Granian sends it from the file), and byte ranges, or servers
without the extension, read it in a thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

from asgi_correlation_id import correlation_id
from asgi_correlation_id.middleware import is_valid_uuid4
from starlette.types import ASGIApp, Receive, Scope, Send

from videoflix_shared.app import CORS_EXPOSED_HEADERS
from videoflix_shared.middleware import LATENCY, REQUESTS
from videoflix_shared.security import InvalidToken, Principal, TokenVerifier, bearer_token
from videoflix_streaming.access import AccessMap, Audience
from videoflix_streaming.service import AssetKind, MediaFile, MediaLibrary, asset_kind

logger = logging.getLogger(__name__)

PATH_PREFIX = "/api/video/"
# Matched against the raw (still percent-encoded) path: only these exact names are served,
# so no encoded dot, slash or absolute path can ever reach the file system.
ROUTE = re.compile(
    rb"/api/video/([1-9][0-9]{0,17})/"
    rb"((?:480p|720p|1080p)/(?:index\.m3u8|seg_[0-9]{5}\.ts)|master\.m3u8|thumbnail\.jpg)/?"
)
# One range-spec of a Range header (RFC 9110 14.1.1): ASCII digits only ([0-9], not \d,
# which also matches other scripts' digits); spaces and tabs around the dash are tolerated.
RANGE_SPEC = re.compile(r"([0-9]*)[ \t]*-[ \t]*([0-9]*)")
OWS = " \t"
MAX_TOKEN_LENGTH = 8192
READ_CHUNK_BYTES = 256 * 1024
SEGMENT_CACHE_CONTROL = b"private, max-age=31536000, immutable"
PLAYLIST_CACHE_CONTROL = b"private, no-cache"
NO_STORE = b"no-store"
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
HEADERS_READ = frozenset(
    {
        b"authorization",
        b"cookie",
        b"origin",
        b"range",
        b"if-none-match",
        b"if-modified-since",
        b"if-range",
        b"x-request-id",
    }
)
CREDENTIALS_MISSING = "Authentication credentials were not provided."
CREDENTIALS_INVALID = "Invalid or expired access token."
ACCESS_NOT_LOADED = "Playback is starting up; try again in a moment."
RETRY_AFTER = b"2"


class RangeNotSatisfiable(Exception):
    pass


@dataclass(slots=True)
class HlsRequest:
    """What the endpoint reads from one request, parsed once."""

    method: str
    raw_path: bytes
    headers: dict[bytes, str]
    response_headers: list[tuple[bytes, bytes]]  # request id, Vary, CORS: on every answer
    pathsend: bool
    route: str = "unmatched"
    status: int = 500
    started: bool = field(default=False)


def parse_byte_range(header: str, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte of a single `bytes=` range, or None to ignore it.

    RFC 9110 14.2 lets a server ignore any Range it does not want to serve, so anything
    but one well-formed byte range (other units, several ranges, first > last, non-ASCII
    digits, stray characters) is ignored and the whole file goes out with 200. A
    well-formed range that cannot be satisfied (it starts at or beyond the end, or asks
    for an empty suffix) raises RangeNotSatisfiable (416). Numbers are compared by their
    digits before any int() conversion, so a position of thousands of digits is just
    "beyond any file" and never reaches Python's 4300-digit conversion limit.
    """
    unit, equals, range_set = header.partition("=")
    if not equals or unit.strip(OWS).lower() != "bytes":
        return None
    # A list: empty elements are allowed and ignored (RFC 9110 5.6.1.2).
    specs = [spec for spec in (part.strip(OWS) for part in range_set.split(",")) if spec]
    if len(specs) != 1:
        return None
    match = RANGE_SPEC.fullmatch(specs[0])
    if match is None:
        return None
    first, last = match[1], match[2]
    if not first and not last:
        return None
    # Leading zeros count towards int()'s digit limit too: drop them (an empty part
    # stays empty, "000" becomes "0").
    first, last = _significant(first), _significant(last)
    if not first:
        return _suffix_range(last, size)
    if last and _compare(first, last) > 0:
        return None  # invalid (first > last): ignored, not unsatisfiable
    if _compare(first, str(size)) >= 0:
        raise RangeNotSatisfiable
    start = int(first)  # now smaller than `size`: a short number
    if not last or _compare(last, str(size)) >= 0:
        return start, size - 1
    return start, int(last)


def _suffix_range(digits: str, size: int) -> tuple[int, int]:
    """`bytes=-N`: the last N bytes (all of them when N is larger than the file)."""
    if digits == "0" or size == 0:
        raise RangeNotSatisfiable
    if _compare(digits, str(size)) >= 0:
        return 0, size - 1
    return size - int(digits), size - 1


def _significant(digits: str) -> str:
    return digits and (digits.lstrip("0") or "0")


def _compare(a: str, b: str) -> int:
    """Compare two ASCII digit strings without leading zeros as numbers (-1, 0 or 1)."""
    key_a, key_b = (len(a), a), (len(b), b)
    return (key_a > key_b) - (key_a < key_b)


def etag_matches(if_none_match: str, etag: str) -> bool:
    """Weak comparison of an If-None-Match list with our ETag (RFC 9110 13.1.2)."""
    if if_none_match.strip() == "*":
        return True
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate == etag:
            return True
    return False


def not_modified(headers: dict[bytes, str], media: MediaFile) -> bool:
    if_none_match = headers.get(b"if-none-match")
    if if_none_match is not None:
        return etag_matches(if_none_match, media.etag)
    if_modified_since = headers.get(b"if-modified-since")
    if if_modified_since is not None:
        try:
            since = parsedate_to_datetime(if_modified_since).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError, OSError):
            return False
        return media.mtime <= since
    return False


def _may_play(audience: Audience, principal: Principal | None) -> bool:
    """Published and ready: everyone (the caller checked the token where one is needed);
    ready but unpublished: admins only (a preview); anything else: nobody."""
    if audience is Audience.EVERYONE:
        return True
    return audience is Audience.ADMINS and principal is not None and principal.is_admin


def cookie_value(cookie_header: str, name: str) -> str | None:
    for chunk in cookie_header.split(";"):
        key, equals, value = chunk.partition("=")
        if equals and key.strip() == name:
            return value.strip() or None
    return None


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
        self.thumbnail_cache_control = f"public, max-age={thumbnail_max_age}".encode()
        exposed = ", ".join(CORS_EXPOSED_HEADERS).encode()
        self.cors_headers = {
            origin.encode("latin-1"): [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-allow-credentials", b"true"),
                (b"access-control-expose-headers", exposed),
            ]
            for origin in allowed_origins
        }
        self._metrics: dict[tuple[str, str, int], tuple[object, object]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Preflight (OPTIONS) goes to the shared CORS middleware: identical answers for all paths.
        if (
            scope["type"] != "http"
            or scope["method"] == "OPTIONS"
            or not scope["path"].startswith(PATH_PREFIX)
        ):
            await self.fallback(scope, receive, send)
            return
        started_at = time.perf_counter()
        request = self._parse(scope)
        try:
            await self._serve(request, send)
        except Exception as exc:
            if request.started:
                # Mostly a client that went away mid-body; the server closes the connection.
                logger.warning("response to %r aborted: %r", request.raw_path, exc)
            else:
                logger.exception("error serving %s %r", request.method, request.raw_path)
                await self._send_error(send, request, 500, "Internal server error.")
        finally:
            self._record(request, time.perf_counter() - started_at)

    def _parse(self, scope: Scope) -> HlsRequest:
        headers: dict[bytes, str] = {}
        for name, value in scope["headers"]:
            if name in HEADERS_READ:
                text = value.decode("latin-1")
                if name == b"cookie" and name in headers:  # HTTP/2 may split cookies
                    text = f"{headers[name]}; {text}"
                headers[name] = text
        request_id = headers.get(b"x-request-id")
        if not request_id or not is_valid_uuid4(request_id):
            request_id = uuid.uuid4().hex
        correlation_id.set(request_id)
        response_headers = [(b"x-request-id", request_id.encode()), (b"vary", b"Origin")]
        origin = headers.get(b"origin")
        if origin is not None:
            response_headers += self.cors_headers.get(origin.encode("latin-1"), ())
        raw_path = scope.get("raw_path") or scope["path"].encode()
        return HlsRequest(
            method=scope["method"],
            raw_path=raw_path.partition(b"?")[0],
            headers=headers,
            response_headers=response_headers,
            pathsend="http.response.pathsend" in (scope.get("extensions") or {}),
        )

    async def _serve(self, request: HlsRequest, send: Send) -> None:
        if request.method not in ("GET", "HEAD"):
            await self._send_error(
                send, request, 405, "Method not allowed.", [(b"allow", b"GET, HEAD, OPTIONS")]
            )
            return
        match = ROUTE.fullmatch(request.raw_path)
        if match is None:
            await self._send_error(send, request, 404, "Not found.")
            return
        video_id, asset = int(match[1]), match[2].decode()
        kind = asset_kind(asset)
        request.route = METRIC_ROUTES[kind]  # type: ignore[index]
        principal = None
        if kind is not AssetKind.THUMBNAIL:  # a published video's thumbnail is public (<img>)
            principal, problem = await self._principal(request.headers)
            if problem is not None:
                await self._send_error(
                    send, request, 401, problem, [(b"www-authenticate", b"Bearer")]
                )
                return
        if not self.access.loaded:  # fail closed until the playback states are known
            await self._send_error(
                send, request, 503, ACCESS_NOT_LOADED, [(b"retry-after", RETRY_AFTER)]
            )
            return
        audience = self.access.audience(video_id)
        if audience is Audience.ADMINS and kind is AssetKind.THUMBNAIL:
            principal, _ = await self._principal(request.headers)  # the admin page's <img>
        if not _may_play(audience, principal):
            # 404, not 403: nobody learns that an unpublished video exists.
            await self._send_error(send, request, 404, "Not found.")
            return
        media = self.library.cached(video_id=video_id, asset=asset)
        if media is None:
            media = await self.library.find(video_id=video_id, asset=asset)
        if media is None:
            await self._send_error(send, request, 404, "Not found.")
            return
        await self._send_media(send, request, media, public=audience is Audience.EVERYONE)

    async def _principal(self, headers: dict[bytes, str]) -> tuple[Principal | None, str | None]:
        """The caller's verified identity, or None and the reason there is none."""
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

    def _cache_control(self, kind: AssetKind, *, public: bool) -> bytes:
        if kind is AssetKind.SEGMENT:
            return SEGMENT_CACHE_CONTROL
        if kind is AssetKind.THUMBNAIL:
            # An admin's preview of an unpublished video's thumbnail stays out of shared caches.
            return self.thumbnail_cache_control if public else PLAYLIST_CACHE_CONTROL
        return PLAYLIST_CACHE_CONTROL

    async def _send_media(
        self, send: Send, request: HlsRequest, media: MediaFile, *, public: bool
    ) -> None:
        validators = [
            (b"etag", media.etag.encode()),
            (b"last-modified", media.last_modified.encode()),
            (b"cache-control", self._cache_control(media.kind, public=public)),
            *request.response_headers,
        ]
        if not_modified(request.headers, media):
            await self._start(send, request, 304, validators)
            await send({"type": "http.response.body", "body": b""})
            return
        headers = [
            (b"content-type", CONTENT_TYPES[media.kind]),
            (b"accept-ranges", b"bytes"),
            (b"x-content-type-options", b"nosniff"),
            *validators,
        ]
        first, last = 0, media.size - 1
        status = 200
        range_header = request.headers.get(b"range")
        if range_header is not None and self._range_applies(request.headers, media):
            try:
                byte_range = parse_byte_range(range_header, media.size)
            except RangeNotSatisfiable:
                await self._send_error(
                    send,
                    request,
                    416,
                    "Requested range not satisfiable.",
                    [(b"content-range", f"bytes */{media.size}".encode())],
                )
                return
            if byte_range is not None:
                first, last = byte_range
                status = 206
                headers.append((b"content-range", f"bytes {first}-{last}/{media.size}".encode()))
        length = last - first + 1
        headers.append((b"content-length", str(length).encode()))

        if request.method == "HEAD":
            await self._start(send, request, status, headers)
            await send({"type": "http.response.body", "body": b""})
        elif (body := self.library.body(media)) is not None:
            await self._start(send, request, status, headers)
            await send({"type": "http.response.body", "body": body[first : last + 1]})
        elif status == 200 and request.pathsend:
            await self._start(send, request, status, headers)
            await send({"type": "http.response.pathsend", "path": media.path})
        else:
            await self._send_from_disk(send, request, status, headers, media, first, length)

    @staticmethod
    def _range_applies(headers: dict[bytes, str], media: MediaFile) -> bool:
        """If-Range: serve the range only if the client's copy is still the current one."""
        if_range = headers.get(b"if-range")
        if if_range is None:
            return True
        if_range = if_range.strip()
        return if_range == media.etag or if_range == media.last_modified

    async def _send_from_disk(
        self,
        send: Send,
        request: HlsRequest,
        status: int,
        headers: list[tuple[bytes, bytes]],
        media: MediaFile,
        offset: int,
        length: int,
    ) -> None:
        try:
            fd = await asyncio.to_thread(os.open, media.path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:  # removed since it was looked up (re-transcode, deletion)
            await self._send_error(send, request, 404, "Not found.")
            return
        try:
            await self._start(send, request, status, headers)
            while length > 0:
                chunk = await asyncio.to_thread(os.pread, fd, min(READ_CHUNK_BYTES, length), offset)
                if not chunk:
                    # Truncated while we read: fail the response rather than send a short one.
                    raise RuntimeError(f"{media.path} shrank while being sent")
                offset += len(chunk)
                length -= len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": length > 0})
        finally:
            os.close(fd)

    async def _start(
        self, send: Send, request: HlsRequest, status: int, headers: list[tuple[bytes, bytes]]
    ) -> None:
        request.status = status
        request.started = True
        await send({"type": "http.response.start", "status": status, "headers": headers})

    async def _send_error(
        self,
        send: Send,
        request: HlsRequest,
        status: int,
        detail: str,
        extra_headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        body = json.dumps({"detail": detail}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", NO_STORE),
            *(extra_headers or ()),
            *request.response_headers,
        ]
        await self._start(send, request, status, headers)
        await send(
            {"type": "http.response.body", "body": b"" if request.method == "HEAD" else body}
        )

    def _record(self, request: HlsRequest, seconds: float) -> None:
        # Methods are client-chosen: label only the ones we serve, so labels stay bounded.
        method = request.method if request.method in ("GET", "HEAD") else "OTHER"
        key = (method, request.route, request.status)
        children = self._metrics.get(key)
        if children is None:
            children = (
                REQUESTS.labels("streaming", method, request.route, str(request.status)),
                LATENCY.labels("streaming", method, request.route),
            )
            self._metrics[key] = children
        children[0].inc()  # type: ignore[attr-defined]
        children[1].observe(seconds)  # type: ignore[attr-defined]
