"""What catalog publishes and consumes on NATS JetStream.

Publishes (through the outbox, see service.py): `catalog.video.uploaded` (upload,
re-transcode, sweeper retry), `catalog.video.deleted`, and `access.video.<id>`
(`VideoAccessChanged`: who may play the video) whenever publication, readiness or
existence changes; on start it announces every video's state once more (backfill).
Consumes the TRANSCODER stream with the durable consumer `catalog`: progress, completed
and failed, applied idempotently (see `service.apply_transcoder_event`).
Also runs the stuck-job sweeper loop, which re-publishes upload events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from nats.aio.msg import Msg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from videoflix_catalog import service
from videoflix_catalog.list_cache import ListCache
from videoflix_shared.bus import EventBus, parse_or_drop

logger = logging.getLogger(__name__)

TRANSCODER_STREAM = "TRANSCODER"
TRANSCODER_SUBJECTS = "transcoder.>"
DURABLE = "catalog"


class TranscoderEventHandler:
    def __init__(
        self, session_factory: async_sessionmaker[AsyncSession], list_cache: ListCache
    ) -> None:
        self.session_factory = session_factory
        self.list_cache = list_cache

    async def __call__(self, msg: Msg, subject: str) -> None:
        event = await parse_or_drop(msg, subject)
        if event is None:
            return
        async with self.session_factory() as session:
            changed = await service.apply_transcoder_event(session, event=event)
        if changed:
            await self.list_cache.invalidate()
        await msg.ack()


async def consume_transcoder_events(
    bus: EventBus, handler: TranscoderEventHandler, stop: asyncio.Event
) -> None:
    await bus.consume(
        stream=TRANSCODER_STREAM,
        durable=DURABLE,
        filter_subject=TRANSCODER_SUBJECTS,
        handler=handler,
        retry_delay=2,
        stop=stop,
    )


async def run_sweeper(
    session_factory: async_sessionmaker[AsyncSession],
    list_cache: ListCache,
    *,
    interval_seconds: float,
    stuck_after_seconds: float,
    max_retries: int,
    stop: asyncio.Event,
) -> None:
    """Sweep for stuck videos every `interval_seconds` until `stop` is set."""
    while not stop.is_set():
        try:
            async with session_factory() as session:
                result = await service.sweep_stuck_videos(
                    session,
                    stuck_after=timedelta(seconds=stuck_after_seconds),
                    max_retries=max_retries,
                )
            if result.retried or result.failed:
                await list_cache.invalidate()
        except Exception as exc:  # database down for a while: try again next round
            logger.warning("stuck-job sweep failed: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_seconds)


async def announce_access_on_start(
    session_factory: async_sessionmaker[AsyncSession], stop: asyncio.Event
) -> None:
    """Announce every video's playback state once, retrying while the database is down."""
    delay = 1.0
    while not stop.is_set():
        try:
            async with session_factory() as session:
                staged = await service.announce_all_access(session)
            logger.info("announced the playback state of videos (%d new announcements)", staged)
            return
        except Exception as exc:
            logger.warning("announcing playback states failed (%s); retrying in %.0fs", exc, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 30)
