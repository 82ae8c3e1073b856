"""The connect sequence both processes share: NATS, then Redis, each retried until the
server answers or SIGTERM comes; then the work; then both closed again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from arq.connections import ArqRedis, RedisSettings, create_pool
from fastapi import FastAPI

from videoflix_shared.app import register_readiness_check
from videoflix_shared.bus import EventBus
from videoflix_shared.lifespan import LifespanStack, unless_stopped
from videoflix_transcoder.settings import TranscoderSettings

logger = logging.getLogger(__name__)

ConnectedWork = Callable[[EventBus, ArqRedis], Awaitable[None]]


async def run_connected(
    app: FastAPI, stop: asyncio.Event, *, principal: str, work: ConnectedWork
) -> None:
    """Connect to NATS as `principal` (videoflix_shared.access: the dispatcher only reads
    catalog events, the worker, which runs ffmpeg on uploads, only publishes the
    transcoder's) and to Redis, register both as readiness checks on `app`, run
    `work(bus, pool)`, and close both. Returns without working when `stop` comes first."""
    settings: TranscoderSettings = app.state.settings
    async with LifespanStack(stop) as resources:
        bus = EventBus.from_settings(settings, principal=principal)
        resources.push_async_callback(bus.close)
        if not await unless_stopped(stop, bus.connect()):
            return
        pool = await connect_redis(settings, stop)
        if pool is None:
            return
        resources.push_async_callback(_close_quietly, pool)
        app.state.event_bus = bus
        app.state.redis = pool  # the dispatcher's `GET /jobs` reads the queue with it
        register_readiness_check(app, "nats", bus.check)
        register_readiness_check(app, "redis", pool.ping)
        await work(bus, pool)


async def connect_redis(settings: TranscoderSettings, stop: asyncio.Event) -> ArqRedis | None:
    """An arq Redis pool, retrying while Redis is down; None when asked to stop first."""
    delay = 0.5
    while not stop.is_set():
        try:
            return await create_pool(
                RedisSettings.from_dsn(settings.redis_url),
                default_queue_name=settings.queue_name,
                retry=0,
            )
        except Exception as exc:
            logger.warning("Redis not reachable (%s); retrying in %.1fs", exc, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 5)
    return None


async def _close_quietly(pool: ArqRedis) -> None:
    with contextlib.suppress(Exception):  # Redis gone already: nothing left to close
        await pool.aclose()
