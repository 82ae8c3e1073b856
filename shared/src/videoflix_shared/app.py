"""The app factory every HTTP service (and every worker's health port) is built with.

It wires what the API contract asks of all services alike: CORS for the configured
frontend origins (echoed, never `*`, with credentials), request ids, JSON errors for every
status (the handlers of `error_responses`: the one mapping of domain errors to HTTP), a
request body cap, trace context (videoflix_shared.tracing), `/healthz` (liveness),
`/readyz` (readiness: the service's real dependencies) and Prometheus `/metrics` (for all
of a service's worker processes at once: `videoflix_shared.metrics`).

Readiness means "can serve". A dependency the service cannot serve without is a required
check: when it fails, `/readyz` answers 503. One whose outage the service absorbs (NATS
for catalog and auth: the outbox keeps their events) is registered `required=False`: it
reports `degraded: ...` in the detail and the answer stays 200 ("status": "degraded"), so
routing keeps the service while operators see why (also in the metrics).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any

import uvicorn
from asgi_correlation_id import CorrelationIdMiddleware
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.middleware.cors import CORSMiddleware

from videoflix_shared.error_responses import install_error_handlers
from videoflix_shared.lifespan import LifespanStack
from videoflix_shared.metrics import exposition, forget_this_process, workers_share_metrics
from videoflix_shared.middleware import (
    BodySizeLimitMiddleware,
    MetricsMiddleware,
    TrailingSlashMiddleware,
    UnstorableTextMiddleware,
)
from videoflix_shared.settings import CommonSettings
from videoflix_shared.tracing import TraceMiddleware, configure_tracing
from videoflix_shared.workers import WORKER_HEALTHCHECK_SECONDS

logger = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[Any]]
MetricsRefresh = Callable[[], Awaitable[None]]
METRICS_REFRESH_TIMEOUT_SECONDS = 2.0

CORS_ALLOWED_HEADERS = [
    "Authorization",
    "Content-Type",
    "X-CSRFToken",
    "X-Request-ID",
    "Range",
    "If-None-Match",
]
CORS_EXPOSED_HEADERS = ["X-Request-ID", "Retry-After", "Content-Length", "Content-Range", "ETag"]


class JSONCORSMiddleware(CORSMiddleware):
    """Starlette's CORS, but a refused preflight answers JSON like every other error."""

    def preflight_response(self, request_headers: Any) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code == 200:
            return response
        headers = {
            k: v
            for k, v in response.headers.items()
            if k.lower() not in ("content-length", "content-type")
        }
        return JSONResponse(
            {"detail": bytes(response.body).decode()},
            status_code=response.status_code,
            headers=headers,
        )


def register_readiness_check(
    app: FastAPI, name: str, check: ReadinessCheck, *, required: bool = True
) -> None:
    """Add a dependency that `/readyz` checks; call it from the service's lifespan.
    `required=False`: its failure degrades the service but leaves it ready. A check may
    return a string: the detail `/readyz` shows for it when it passes (default "ok")."""
    app.state.readiness_checks[name] = check
    if not required:
        app.state.optional_readiness_checks.add(name)
    else:
        app.state.optional_readiness_checks.discard(name)


def register_metrics_refresh(app: FastAPI, name: str, refresh: MetricsRefresh) -> None:
    """Run `refresh` before every scrape of `/metrics`: it sets gauges whose values live
    elsewhere (a count in Redis), so a scrape shows them as they are now. A refresh that
    fails or takes longer than METRICS_REFRESH_TIMEOUT_SECONDS leaves its gauges as they
    were (logged); the scrape is answered anyway."""
    app.state.metrics_refreshes[name] = refresh


async def _refresh_metrics(refreshes: dict[str, MetricsRefresh]) -> None:
    async def one(name: str, refresh: MetricsRefresh) -> None:
        try:
            await asyncio.wait_for(refresh(), METRICS_REFRESH_TIMEOUT_SECONDS)
        except Exception as exc:  # a scrape reports what it has, it never fails
            logger.warning("metrics refresh %r failed: %s: %s", name, type(exc).__name__, exc)

    await asyncio.gather(*(one(name, refresh) for name, refresh in refreshes.items()))


async def _run_checks(
    checks: dict[str, ReadinessCheck], optional: set[str], timeout: float = 2.0
) -> dict[str, str]:
    async def one(name: str) -> str:
        try:
            detail = await asyncio.wait_for(checks[name](), timeout)
        except Exception as exc:  # a readiness probe reports, it never raises
            verdict = "degraded" if name in optional else "failing"
            return f"{verdict}: {type(exc).__name__}: {exc}"[:300]
        return detail if isinstance(detail, str) and detail else "ok"

    names = list(checks)
    results = await asyncio.gather(*(one(n) for n in names))
    return dict(zip(names, results, strict=True))


def readiness_status(results: dict[str, str]) -> str:
    """ready, degraded (an optional check fails) or not ready (a required one fails)."""
    if any(r.startswith("failing") for r in results.values()):
        return "not ready"
    if any(r.startswith("degraded") for r in results.values()):
        return "degraded"
    return "ready"


def _health_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/healthz")
    async def healthz(request: Request) -> dict[str, str]:
        return {"status": "ok", "service": request.app.state.service_name}

    @router.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        results = await _run_checks(
            request.app.state.readiness_checks, request.app.state.optional_readiness_checks
        )
        status = readiness_status(results)
        return JSONResponse(
            {"status": status, "checks": results},
            status_code=503 if status == "not ready" else 200,
        )

    @router.get("/metrics")
    async def metrics(request: Request) -> Response:
        await _refresh_metrics(request.app.state.metrics_refreshes)
        return Response(exposition(), media_type=CONTENT_TYPE_LATEST)

    return router


def create_service_app(
    *,
    service: str,
    settings: CommonSettings,
    routers: Sequence[APIRouter] = (),
    lifespan: Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]] | None = None,
    open_resources: Callable[[FastAPI, LifespanStack], None] | None = None,
    body_limit_exempt_prefixes: tuple[str, ...] = (),
    **fastapi_kwargs: Any,
) -> FastAPI:
    """The FastAPI app every service starts from. Its lifespan is `lifespan`, or, simpler,
    `open_resources(app, resources)`: it puts what the service holds on `app.state`, each
    resource registered on `resources` (a `LifespanStack`) with what closes it."""

    @contextlib.asynccontextmanager
    async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if lifespan is not None:
                await stack.enter_async_context(lifespan(app))
            stack.callback(forget_this_process)  # a worker's live gauges go with it
            if open_resources is not None:
                open_resources(app, await stack.enter_async_context(LifespanStack()))
            yield

    app = FastAPI(
        title=f"Videoflix {service}", lifespan=_lifespan, redirect_slashes=False, **fastapi_kwargs
    )
    app.state.service_name = service
    app.state.settings = settings
    app.state.readiness_checks = {}
    app.state.optional_readiness_checks = set()
    configure_tracing(service, endpoint=settings.otel_exporter_otlp_endpoint)
    app.state.metrics_refreshes = {}
    install_error_handlers(app)
    app.include_router(_health_router())
    for router in routers:
        app.include_router(router)

    # Added innermost first: the last one added sees the request first.
    app.add_middleware(TrailingSlashMiddleware, router_app=app)
    app.add_middleware(UnstorableTextMiddleware)
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_json_body_bytes,
        exempt_prefixes=body_limit_exempt_prefixes,
    )
    app.add_middleware(
        JSONCORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_credentials=True,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"],
        allow_headers=CORS_ALLOWED_HEADERS,
        expose_headers=CORS_EXPOSED_HEADERS,
        max_age=600,
    )
    app.add_middleware(MetricsMiddleware, service=service, router_app=app)
    app.add_middleware(TraceMiddleware)  # inside the request id: it may stand for the trace
    app.add_middleware(CorrelationIdMiddleware, header_name="X-Request-ID")
    return app


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the process that embeds it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def run_worker(
    *,
    service: str,
    settings: CommonSettings,
    work: Callable[[FastAPI, asyncio.Event], Awaitable[None]],
    routers: Sequence[APIRouter] = (),
) -> None:
    """Run a long-running worker with a health port (`/healthz`, `/readyz`, `/metrics`, and
    the internal `routers` of the worker, if any).

    `work(app, stop)` does the job until `stop` is set (SIGTERM/SIGINT); it registers its
    readiness checks on `app` with `register_readiness_check`.
    """
    from videoflix_shared.logs import configure_logging

    configure_logging(service, level=settings.log_level, fmt=settings.log_format)

    async def main() -> None:
        stop = stop_event_on_signals()
        app = create_service_app(service=service, settings=settings, routers=routers)
        config = uvicorn.Config(
            app,
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,
            access_log=False,
            lifespan="off",
        )
        server = _EmbeddedServer(config)
        health = asyncio.create_task(server.serve(), name="health-server")
        try:
            await work(app, stop)
        finally:
            server.should_exit = True
            await health

    asyncio.run(main())


def run_http_service(app_factory: str, settings: CommonSettings, *, workers: int = 1) -> None:
    """Run an HTTP service under uvicorn (honours X-Forwarded-For from FORWARDED_ALLOW_IPS);
    several `workers` share their metrics (`videoflix_shared.metrics`)."""
    service = app_factory.partition(".")[0].removeprefix("videoflix_")
    with workers_share_metrics(service, workers=workers):
        uvicorn.run(
            app_factory,
            factory=True,
            host=settings.http_host,
            port=settings.http_port,
            workers=workers,
            log_config=None,
            proxy_headers=True,
            forwarded_allow_ips=settings.forwarded_allow_ips,
            server_header=False,
            timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
        )


def stop_event_on_signals() -> asyncio.Event:
    """An event set on SIGTERM/SIGINT, for long-running workers to finish cleanly."""
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop
