"""Streaming service: the app factory and lifespan.

The ASGI app is the HLS endpoint (api.py) in front of the shared FastAPI app; the FastAPI
app owns the lifespan, the health/readiness/metrics routes and `app.state`. Streaming has
no database: it reads the media volume, auth's public keys (JWKS), and catalog's playback
announcements from NATS into memory (access.py), which decide who may play which video.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from videoflix_shared.app import create_service_app, register_readiness_check
from videoflix_shared.bus import EventBus
from videoflix_shared.logs import configure_logging
from videoflix_shared.security import JwksKeySource, TokenVerifier
from videoflix_streaming.access import AccessFeed, AccessMap
from videoflix_streaming.api import HlsEndpoint
from videoflix_streaming.service import MediaLibrary
from videoflix_streaming.settings import StreamingSettings

logger = logging.getLogger(__name__)

JWKS_PREFETCH_TIMEOUT_SECONDS = 5.0
# How long start-up waits for the playback states before serving anyway (then media answers
# 503 until they arrive): long enough for a replay whenever NATS is up.
ACCESS_LOAD_TIMEOUT_SECONDS = 10.0


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    key_source: JwksKeySource = app.state.jwks_key_source
    library: MediaLibrary = app.state.media_library
    access: AccessMap = app.state.access_map
    bus = EventBus.from_settings(app.state.settings, principal="streaming")
    app.state.event_bus = bus
    register_readiness_check(app, "jwks", key_source.check)
    register_readiness_check(app, "media", library.check)
    register_readiness_check(app, "access", access.check)
    await library.prepare()
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(bus.connect(), name="nats-connect"),
        asyncio.create_task(AccessFeed(bus, access).run(stop), name="access-feed"),
    ]
    # Fetch the keys before the first request if auth is up; if it is not (yet), the first
    # token with an unknown kid fetches them, so starting never depends on auth.
    try:
        await asyncio.wait_for(key_source.check(), JWKS_PREFETCH_TIMEOUT_SECONDS)
    except Exception as exc:
        logger.warning("JWKS not available at startup (%s); will fetch on first use", exc)
    await _wait_for_access(access)
    try:
        yield
    finally:
        stop.set()
        tasks[0].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await bus.close()


async def _wait_for_access(access: AccessMap) -> None:
    """Let the first replay finish before serving, so a start with NATS up never answers
    503; with NATS down, start anyway (fail closed: media answers 503 until loaded)."""
    try:
        await asyncio.wait_for(access.wait_loaded(), ACCESS_LOAD_TIMEOUT_SECONDS)
    except TimeoutError:
        logger.warning("playback states not loaded yet; media answers 503 until they are")


def create_app(settings: StreamingSettings | None = None) -> HlsEndpoint:
    settings = settings or StreamingSettings()
    configure_logging("streaming", level=settings.log_level, fmt=settings.log_format)
    service_app = create_service_app(service="streaming", settings=settings, lifespan=lifespan)
    key_source = JwksKeySource.from_settings(settings)
    verifier = TokenVerifier(
        key_source,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        leeway_seconds=settings.jwt_leeway_seconds,
    )
    library = MediaLibrary(
        media_root=settings.media_root,
        cache_seconds=settings.file_cache_seconds,
        body_cache_bytes=settings.body_cache_mb * 1024 * 1024,
        body_cache_max_file_bytes=settings.body_cache_max_file_mb * 1024 * 1024,
    )
    service_app.state.jwks_key_source = key_source
    service_app.state.token_verifier = verifier
    service_app.state.media_library = library
    access = AccessMap()
    service_app.state.access_map = access
    return HlsEndpoint(
        fallback=service_app,
        library=library,
        verifier=verifier,
        access=access,
        allowed_origins=settings.cors_origins,
        thumbnail_max_age=settings.thumbnail_max_age,
    )
