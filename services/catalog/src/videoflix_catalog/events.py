"""What catalog publishes and consumes on NATS JetStream.

Publishes (through the outbox, see service.py): `catalog.video.uploaded` (upload,
re-transcode, sweeper retry), `catalog.video.deleted`, and `access.video.<id>`
(`VideoAccessChanged`: who may play the video) whenever publication, readiness or
existence changes; on start it reads the ACCESS stream back and announces every video whose
state it does not show (backfill after an upgrade, rebuild of a lost stream).
Consumes the TRANSCODER stream with the durable consumer `catalog`: progress, completed
and failed, applied idempotently (see `service.apply_transcoder_event`).
Also runs the stuck-job sweeper loop, which re-publishes upload events.
A lost ACCESS stream that the bus re-creates (videoflix_shared.bus) is filled again at
once: every video's playback state is announced into it (`reannounce_access_into`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from videoflix_catalog import service
from videoflix_catalog.list_cache import ListCache
from videoflix_shared.bus import EventBus, parse_or_drop
from videoflix_shared.events import (
    ACCESS_STREAM,
    STREAMS,
    TRANSCODER_STREAM,
    VideoAccessChanged,
    parse_event,
    utcnow,
)

logger = logging.getLogger(__name__)

TRANSCODER_SUBJECTS = STREAMS[TRANSCODER_STREAM]
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
    transcoder_silent_after_seconds: float = 120.0,
) -> None:
    """Sweep for stuck videos every `interval_seconds` until `stop` is set, while the
    transcoder is heard (its queue announcements): queued work is announced as queued,
    running work heartbeats, so only a video the transcoder no longer knows falls silent.
    Without announcements (NATS or every worker down) silence proves nothing: no sweep."""
    silent_after = timedelta(seconds=transcoder_silent_after_seconds)
    while not stop.is_set():
        try:
            async with session_factory() as session:
                heard = await service.transcoder_last_heard(session)
            if heard is None or utcnow() - heard > silent_after:
                logger.info("transcoder not heard since %s: no stuck-job sweep", heard)
                await _sleep_or_stop(stop, interval_seconds)
                continue
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
    session_factory: async_sessionmaker[AsyncSession],
    bus: EventBus,
    stop: asyncio.Event,
    done: asyncio.Event,
) -> None:
    """Bring the ACCESS stream in line with the database once per start (see
    `service.reconcile_access`), retrying while NATS or the database is not there yet;
    sets `done` when the announcements are staged."""
    delay = 1.0
    while not stop.is_set():
        try:
            announced = await announced_access(bus)
            async with session_factory() as session:
                staged = await service.reconcile_access(session, announced=announced)
            logger.info(
                "playback states: %d announced in the stream, %d (re)announced now",
                len(announced),
                staged,
            )
            done.set()
            return
        except Exception as exc:
            logger.info("playback state backfill waits (%r); retrying in %.0fs", exc, delay)
            await _sleep_or_stop(stop, delay)
            delay = min(delay * 2, 30)


def reannounce_access_into(
    session_factory: async_sessionmaker[AsyncSession], bus: EventBus, stop: asyncio.Event
) -> Callable[[str], Awaitable[None]]:
    """The bus's callback for a re-created stream: for ACCESS, announce every playback
    state again (the new stream is empty; streaming would otherwise miss them)."""

    async def on_recreated(stream: str) -> None:
        if stream == ACCESS_STREAM:
            await announce_access_on_start(session_factory, bus, stop, asyncio.Event())

    return on_recreated


async def announced_access(bus: EventBus) -> dict[int, VideoAccessChanged]:
    """The last announcement of every video in the ACCESS stream (what streaming replays)."""
    if bus.js is None:
        raise ConnectionError("not connected to NATS yet")
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE,
        deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
        mem_storage=True,
        inactive_threshold=30.0,
    )
    sub = await bus.js.pull_subscribe(
        bus.subject(VideoAccessChanged.subject),
        stream=bus.stream(ACCESS_STREAM),
        config=config,
    )
    announced: dict[int, VideoAccessChanged] = {}
    try:
        pending = (await sub.consumer_info()).num_pending
        while pending:
            for msg in await sub.fetch(min(pending, 500), timeout=5):
                pending = msg.metadata.num_pending
                with contextlib.suppress(ValueError):  # unusable: as if not announced
                    event = parse_event(bus.unprefixed(msg.subject), msg.data)
                    if isinstance(event, VideoAccessChanged):
                        announced[event.video_id] = event
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return announced


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
