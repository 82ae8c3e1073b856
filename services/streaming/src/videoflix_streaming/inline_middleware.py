"""The shared middlewares' work, done inline for the HLS routes: request id, trace context
(only when a `traceparent` comes in; otherwise the request id is the trace id at no cost),
CORS grant, Prometheus metrics, JSON errors.

Why streaming does this itself: every other route of every service gets these from the
shared app factory's middleware stack (videoflix_shared.app). On the segment hot path that
stack is the cost: measured on this machine when it was written, a FastAPI route +
`FileResponse` reached 0.16-0.32x of nginx's requests/s on a 620 KB segment, a bare ASGI
handler 0.62x.
Each middleware layer adds a coroutine, a wrapped `send` and its own header parsing per
request; here one pass over the request headers serves them all, and everything that does
not depend on the request (CORS headers per allowed origin, metric children per route and
status) is built once. The answers are the stack's answers: the same header names and
values, the same JSON error shape (`{"detail": ...}`), the same metric names and labels.
Preflights (OPTIONS) and every other path still go through the real stack (api.py).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from asgi_correlation_id import correlation_id
from asgi_correlation_id.middleware import is_valid_uuid4
from prometheus_client import Counter, Histogram
from starlette.types import Scope, Send

from videoflix_shared.app import CORS_EXPOSED_HEADERS
from videoflix_shared.middleware import LATENCY, REQUESTS
from videoflix_shared.tracing import adopt_traceparent

logger = logging.getLogger(__name__)

Header = tuple[bytes, bytes]
# The request headers the HLS routes read; all others are skipped without decoding.
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
        b"traceparent",
    }
)
SERVED_METHODS = ("GET", "HEAD")
NO_STORE = b"no-store"
UNMATCHED_ROUTE = "unmatched"
REQUEST_ID_BATCH = 256


class JsonError(NamedTuple):
    """An error answer: status, `{"detail": ...}` body and any headers it needs."""

    status: int
    detail: str
    headers: tuple[Header, ...] = ()


INTERNAL_ERROR = JsonError(500, "Internal server error.")


@dataclass(slots=True)
class HlsRequest:
    """What the endpoint reads from one request, parsed once, and how it was answered."""

    method: str
    raw_path: bytes  # still percent-encoded, without the query
    headers: dict[bytes, str]  # only HEADERS_READ, decoded as latin-1
    response_headers: list[Header]  # request id, Vary, CORS: on every answer
    route: str = UNMATCHED_ROUTE  # the metrics label, set once the path matched a route
    status: int = 500
    started: bool = False  # the response has started: an error can no longer be sent


Handler = Callable[[HlsRequest, Send], Awaitable[None]]


class RequestIds:
    """Random UUID4s as 32 hex digits, the shared middleware's format (`uuid4().hex`),
    made for every segment request: without a UUID object, and from os.urandom bytes
    fetched for REQUEST_ID_BATCH ids at a time (one system call per batch, not per id)."""

    def __init__(self) -> None:
        self._random = b""
        self._used = 0

    def new(self) -> str:
        if self._used >= len(self._random):
            self._random = os.urandom(16 * REQUEST_ID_BATCH)
            self._used = 0
        raw = bytearray(self._random[self._used : self._used + 16])
        self._used += 16
        raw[6] = raw[6] & 0x0F | 0x40  # version 4
        raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
        return raw.hex()

    def forget(self) -> None:
        """Drop the fetched bytes (a forked child must not reuse its parent's)."""
        self._random = b""
        self._used = 0


REQUEST_IDS = RequestIds()
os.register_at_fork(after_in_child=REQUEST_IDS.forget)


class InlineMiddleware:
    """Wraps a handler of the HLS routes the way the shared middleware stack wraps a route."""

    def __init__(self, *, allowed_origins: Iterable[str], service: str = "streaming") -> None:
        self.service = service
        exposed = ", ".join(CORS_EXPOSED_HEADERS).encode()
        self.cors_headers: dict[bytes, tuple[Header, ...]] = {
            origin.encode("latin-1"): (
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-allow-credentials", b"true"),
                (b"access-control-expose-headers", exposed),
            )
            for origin in allowed_origins
        }
        self._metrics: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, send: Send, handler: Handler) -> None:
        started_at = time.perf_counter()
        request = self.begin(scope)
        try:
            await handler(request, send)
        except Exception as exc:
            if request.started:
                # Mostly a client that went away mid-body; the server closes the connection.
                logger.warning("response to %r aborted: %r", request.raw_path, exc)
            else:
                logger.exception("error serving %s %r", request.method, request.raw_path)
                await self.send_error(send, request, INTERNAL_ERROR)
        finally:
            self.record(request, time.perf_counter() - started_at)

    def begin(self, scope: Scope) -> HlsRequest:
        """Read the request once: the headers the routes need, the request id (echoed when
        it is a UUID, else generated; also set for the logs) and the CORS grant."""
        headers: dict[bytes, str] = {}
        for name, value in scope["headers"]:
            if name in HEADERS_READ:
                text = value.decode("latin-1")
                if name == b"cookie" and name in headers:  # HTTP/2 may split cookies
                    text = f"{headers[name]}; {text}"
                headers[name] = text
        request_id = headers.get(b"x-request-id")
        # Echoed only when it parses as a UUID (the shared middleware's rule), so no
        # client-chosen text reaches the logs or the response headers.
        if not request_id or not is_valid_uuid4(request_id):
            request_id = REQUEST_IDS.new()
        correlation_id.set(request_id)
        traceparent = headers.get(b"traceparent")
        if traceparent is not None:
            adopt_traceparent(traceparent)
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
        )

    @staticmethod
    async def start(send: Send, request: HlsRequest, status: int, headers: list[Header]) -> None:
        request.status = status
        request.started = True
        await send({"type": "http.response.start", "status": status, "headers": headers})

    async def send_error(self, send: Send, request: HlsRequest, error: JsonError) -> None:
        body = json.dumps({"detail": error.detail}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", NO_STORE),
            *error.headers,
            *request.response_headers,
        ]
        await self.start(send, request, error.status, headers)
        await send(
            {"type": "http.response.body", "body": b"" if request.method == "HEAD" else body}
        )

    def record(self, request: HlsRequest, seconds: float) -> None:
        """Count the answer and its latency under the route's template (bounded labels)."""
        # Methods are client-chosen: label only the ones we serve, so labels stay bounded.
        method = request.method if request.method in SERVED_METHODS else "OTHER"
        key = (method, request.route, request.status)
        children = self._metrics.get(key)
        if children is None:
            children = (
                REQUESTS.labels(self.service, method, request.route, str(request.status)),
                LATENCY.labels(self.service, method, request.route),
            )
            self._metrics[key] = children
        children[0].inc()
        children[1].observe(seconds)
