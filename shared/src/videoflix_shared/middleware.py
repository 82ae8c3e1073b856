"""Pure ASGI middlewares of the app factory (no BaseHTTPMiddleware: it costs throughput).

- `TrailingSlashMiddleware`: the contract says every path ends with `/` but the path without
  it must work too; we serve it (rewriting the path) instead of redirecting, because a
  cross-origin redirect breaks browsers' preflighted requests.
- `BodySizeLimitMiddleware`: caps request bodies (413 JSON) except on paths that stream
  large uploads and enforce their own limit.
- `MetricsMiddleware`: Prometheus request counters and latency histograms per route.
- `UnstorableTextMiddleware`: 400 for NUL or lone surrogates in the path, the query string or
  any string of a JSON body (see `videoflix_shared.text`), before a route sees them.
"""

from __future__ import annotations

import json
import time
from typing import Any

from prometheus_client import Counter, Histogram
from starlette.applications import Starlette
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from videoflix_shared.error_responses import error_body, error_headers, status_of
from videoflix_shared.errors import DomainError, InvalidInput, TooLarge
from videoflix_shared.text import UNSTORABLE_TEXT, is_storable, unstorable_text_errors

REQUESTS = Counter("http_requests_total", "HTTP requests", ["service", "method", "route", "status"])
LATENCY = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency",
    ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


async def send_error(send: Send, error: DomainError) -> None:
    """Answer a domain error from a middleware, mapped like the app's exception handlers."""
    payload = json.dumps(error_body(error)).encode()
    headers = [
        (name.lower().encode(), value.encode()) for name, value in error_headers(error).items()
    ]
    await send(
        {
            "type": "http.response.start",
            "status": status_of(error),
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class TrailingSlashMiddleware:
    def __init__(self, app: ASGIApp, router_app: Starlette) -> None:
        self.app = app
        self.router_app = router_app  # the FastAPI app whose routes decide

    def _matches(self, scope: Scope) -> bool:
        for route in self.router_app.router.routes:
            match, _ = route.matches(scope)
            if match != Match.NONE:
                return True
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._matches(scope):
            path: str = scope["path"]
            other = path[:-1] if path.endswith("/") and path != "/" else path + "/"
            alt = {**scope, "path": other, "raw_path": other.encode()}
            if self._matches(alt):
                scope = alt
        await self.app(scope, receive, send)


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int, exempt_prefixes: tuple[str, ...] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt_prefixes = exempt_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt_prefixes):
            await self.app(scope, receive, send)
            return
        too_large = TooLarge(f"Request body too large (limit {self.max_bytes} bytes).")
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await send_error(send, InvalidInput("Invalid Content-Length header."))
                    return
                if declared > self.max_bytes:
                    await send_error(send, too_large)
                    return
        received = 0
        started = False
        rejected = False

        async def limited_receive() -> Message:
            # A body that grows past the cap without a Content-Length: answer 413 ourselves,
            # then tell the app the client went away so it stops reading.
            nonlocal received, rejected
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes and not rejected:
                    rejected = True
                    if not started:
                        await send_error(send, too_large)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if rejected:
                return  # the 413 is already out; drop the app's late error response
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, limited_receive, guarded_send)


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, service: str, router_app: Starlette) -> None:
        self.app = app
        self.service = service
        self.router_app = router_app

    def _route_name(self, scope: Scope) -> str:
        route = scope.get("route")
        path = getattr(route, "path", None)
        return path if isinstance(path, str) and path else "unmatched"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = self._route_name(scope)
            REQUESTS.labels(self.service, scope["method"], route, str(status)).inc()
            LATENCY.labels(self.service, scope["method"], route).observe(
                time.perf_counter() - start
            )


class UnstorableTextMiddleware:
    """Refuse text no service can store, whatever route or field it is meant for.

    Only requests that carry a JSON body (or no content type, which FastAPI also reads as
    JSON) are buffered; that is fine because `BodySizeLimitMiddleware` (outside this one)
    already caps them. Bodies that are not valid JSON pass through: the route answers 400.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query: bytes = scope.get("query_string", b"")
        if not is_storable(scope["path"]) or b"\x00" in query or b"%00" in query:
            await send_error(send, InvalidInput(UNSTORABLE_TEXT))
            return
        if scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE") or not _json_body(scope):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        body = bytearray()
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body.extend(message.get("body", b""))
            if not message.get("more_body", False):
                break
        error = _unstorable_body_error(bytes(body))
        if error is not None:
            await send_error(send, error)
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


def _json_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            media_type: bytes = value.split(b";", 1)[0].strip().lower()
            return media_type == b"application/json" or media_type.endswith(b"+json")
    return True


def _unstorable_body_error(body: bytes) -> InvalidInput | None:
    if not body:
        return None
    try:
        decoded: Any = json.loads(body)  # bytes: decoded like FastAPI does (surrogatepass)
    except ValueError:
        return None
    errors = unstorable_text_errors(decoded)
    if errors is None:
        return None
    ((_, messages),) = errors.items()  # one entry: the field at fault, or "detail"
    if isinstance(messages, list):
        return InvalidInput.for_fields(errors)
    return InvalidInput(messages)
