"""Connections both processes need, retried until the servers answer or SIGTERM comes."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from arq.connections import ArqRedis, RedisSettings, create_pool

from videoflix_shared.bus import EventBus
from videoflix_transcoder.settings import TranscoderSettings

logger = logging.getLogger(__name__)


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


async def connect_bus(
    settings: TranscoderSettings, stop: asyncio.Event, *, principal: str
) -> EventBus | None:
    """The bus as `principal` (videoflix_shared.access): the dispatcher only reads catalog
    events, the worker (which runs ffmpeg on uploads) only publishes the transcoder's."""
    bus = EventBus.from_settings(settings, principal=principal)
    connecting = asyncio.create_task(bus.connect())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not connecting.done():
        connecting.cancel()
        with contextlib.suppress(BaseException):
            await connecting
        return None
    connecting.result()
    return bus
