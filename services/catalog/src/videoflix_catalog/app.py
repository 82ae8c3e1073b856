"""Catalog service: the app factory and its lifespan.

The lifespan creates the database engine, Redis, the token verifier, the event bus, the
client of the transcoder's job list (transcoder_jobs.py), the outbox relay, the transcoder-event consumer, the stuck-job sweeper, the cleanup loop of
abandoned upload bytes and the start-up announcement of every video's playback state, and
keeps them on `app.state`. The service starts and serves while NATS is down: the bus
connects in the background, the relay keeps outbox rows until it can publish, and the
consumer waits; `/readyz` stays 200 and says "degraded" for NATS (and for an outbox
backlog), the metrics show it. Resumable (tus) uploads are wired in by tus.py.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from videoflix_catalog.api import TUS_PATH, UPLOAD_PATH, admin, page, public
from videoflix_catalog.events import (
    TranscoderEventHandler,
    announce_access_on_start,
    consume_transcoder_events,
    reannounce_access_into,
    run_sweeper,
)
from videoflix_catalog.list_cache import ListCache
from videoflix_catalog.settings import CatalogSettings
from videoflix_catalog.transcoder_jobs import TranscoderJobs
from videoflix_catalog.tus import install_tus
from videoflix_catalog.tus_store import run_upload_sweeper
from videoflix_shared.app import create_service_app, register_readiness_check
from videoflix_shared.bus import EventBus
from videoflix_shared.db import check_database, create_engine, create_session_factory
from videoflix_shared.lifespan import LifespanStack
from videoflix_shared.logs import configure_logging
from videoflix_shared.outbox import OutboxRelay
from videoflix_shared.redis import check_redis, create_redis
from videoflix_shared.security import JwksKeySource, TokenVerifier

STATIC_DIR = Path(__file__).with_name("static")


def _open_resources(app: FastAPI, settings: CatalogSettings, resources: LifespanStack) -> None:
    """Create every resource onto `app.state`, each closed by `resources` on the way out;
    the background loops end on `resources.stop`."""
    engine = create_engine(settings.database_url)
    resources.push_async_callback(engine.dispose)
    session_factory = create_session_factory(engine)
    redis = create_redis(settings)
    resources.push_async_callback(redis.aclose)
    keys = JwksKeySource.from_settings(settings)
    bus = EventBus.from_settings(settings, principal="catalog")
    resources.push_async_callback(bus.close)
    relay = OutboxRelay(session_factory, bus)
    # add_event() wakes the relay so uploads go out without waiting for its next poll.
    session_factory.configure(info={"outbox_wake": relay.wake})
    list_cache = ListCache.from_settings(redis, settings)
    transcoder_jobs = TranscoderJobs.open(settings.transcoder_jobs_url)
    resources.push_async_callback(transcoder_jobs.close)

    app.state.session_factory = session_factory
    app.state.redis = redis
    app.state.list_cache = list_cache
    app.state.transcoder_jobs = transcoder_jobs
    app.state.event_bus = bus
    app.state.access_backfilled = asyncio.Event()  # set once the start-up backfill is staged
    app.state.token_verifier = TokenVerifier(
        keys,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        leeway_seconds=settings.jwt_leeway_seconds,
    )
    register_readiness_check(app, "database", lambda: check_database(engine))
    register_readiness_check(app, "redis", lambda: check_redis(redis))
    register_readiness_check(app, "jwks", keys.check)
    # Uploads and edits go on while NATS is away: their events wait in the outbox.
    register_readiness_check(app, "nats", bus.check, required=False)
    register_readiness_check(app, "outbox", relay.check, required=False)

    resources.start_task(bus.connect(), name="nats-connect")
    _start_background_loops(app, settings, resources)
    relay.start()
    resources.push_async_callback(relay.stop)


def _start_background_loops(
    app: FastAPI, settings: CatalogSettings, resources: LifespanStack
) -> None:
    """Start the loops that run for the service's lifetime on what `_open_resources` put on
    `app.state`; each ends by itself once `resources.stop` is set, finishing its step."""
    session_factory = app.state.session_factory
    list_cache: ListCache = app.state.list_cache
    bus: EventBus = app.state.event_bus
    stop = resources.stop
    resources.start_task(
        consume_transcoder_events(bus, TranscoderEventHandler(session_factory, list_cache), stop),
        name="transcoder-events",
        cancel_on_exit=False,
    )
    resources.start_task(
        list_cache.follow_changes(stop), name="list-cache-changes", cancel_on_exit=False
    )
    resources.start_task(
        run_sweeper(
            session_factory,
            list_cache,
            interval_seconds=settings.sweep_interval_seconds,
            stuck_after_seconds=settings.stuck_after_seconds,
            max_retries=settings.stuck_max_retries,
            transcoder_silent_after_seconds=settings.transcoder_silent_after_seconds,
            stop=stop,
        ),
        name="stuck-job-sweeper",
        cancel_on_exit=False,
    )
    resources.start_task(
        run_upload_sweeper(
            app.state.tus_store,
            interval_seconds=settings.upload_sweep_interval_seconds,
            grace=timedelta(seconds=settings.upload_leftover_grace_seconds),
            stop=stop,
        ),
        name="upload-sweeper",
        cancel_on_exit=False,
    )
    resources.start_task(
        announce_access_on_start(session_factory, bus, stop, app.state.access_backfilled),
        name="announce-access",
        cancel_on_exit=False,
    )
    bus.on_stream_recreated(reannounce_access_into(session_factory, bus, stop))


def create_app(settings: CatalogSettings | None = None) -> FastAPI:
    settings = settings or CatalogSettings()
    configure_logging("catalog", level=settings.log_level, fmt=settings.log_format)

    app = create_service_app(
        service="catalog",
        settings=settings,
        routers=[public, admin, page],
        open_resources=lambda app, resources: _open_resources(app, settings, resources),
        # The uploads stream their bodies and enforce CATALOG_MAX_UPLOAD_BYTES themselves.
        body_limit_exempt_prefixes=(UPLOAD_PATH.rstrip("/"), TUS_PATH.rstrip("/")),
    )
    install_tus(app, settings)
    app.mount("/admin/static", StaticFiles(directory=STATIC_DIR), name="admin-static")
    return app
