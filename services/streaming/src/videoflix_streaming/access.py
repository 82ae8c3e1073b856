"""Who may play which video: streaming's read model of catalog's playback announcements.

Catalog announces every change of a video's publication, readiness or existence as a
`VideoAccessChanged` event on `access.video.<id>` in the ACCESS stream, which keeps only the
last message per video and never ages it out (docs/AUTHORIZATION.md). Each streaming
process replays that stream into memory at start (an ephemeral consumer, delivering the
last message of every subject) and then follows it, so a request is authorised with one
dict lookup and no call to catalog.

Fail closed: until the first replay has reached the end of the stream, `AccessMap.loaded`
is False and the endpoint serves no media (503); a video the map does not know is nobody's.
When NATS goes away later, the map keeps the last state it saw and the feed resumes after
the last stream sequence it applied once NATS is back. A stream that was deleted and
re-created meanwhile (its creation time changed; its sequences start again) is replayed
from its start instead, into the same map: catalog announces every state into a re-created
stream, and nothing could be announced while it was missing.

Each announcement is applied in the trace it was published in (videoflix_shared.tracing),
and a live change (after the first replay) is logged, so the trace of an upload ends with
streaming's line saying who may now play it. The consumer's backlog is exported as
`videoflix_jetstream_consumer_pending_messages{consumer="streaming"}` (one label for the
ephemeral consumers of every process).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from datetime import datetime

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from videoflix_shared.bus import EventBus, record_consumer_info
from videoflix_shared.events import ACCESS_STREAM, VideoAccessChanged, parse_event
from videoflix_shared.tracing import TRACEPARENT, continue_trace

logger = logging.getLogger(__name__)

ACCESS_SUBJECTS = VideoAccessChanged.subject
FETCH_BATCH = 500
FETCH_TIMEOUT_SECONDS = 1.0
RETRY_SECONDS = 1.0
# The server removes the ephemeral consumer of a process that went away after this long.
CONSUMER_INACTIVE_SECONDS = 60.0
CONSUMER_LABEL = "streaming"  # the metrics label of every process's ephemeral consumer


class Audience(enum.Enum):
    """Who may play a video (and load its thumbnail)."""

    EVERYONE = "everyone"  # published and ready: every signed-in user; thumbnail public
    ADMINS = "admins"  # ready but not published: an admin's preview only
    NOBODY = "nobody"  # not transcoded (yet), deleted or unknown


def audience_of(event: VideoAccessChanged) -> Audience:
    if event.deleted or not event.ready:
        return Audience.NOBODY
    return Audience.EVERYONE if event.published else Audience.ADMINS


class AccessMap:
    """video id -> Audience, as of the last announcement applied (per process)."""

    def __init__(self) -> None:
        self._audiences: dict[int, Audience] = {}
        self.loaded = False  # the first replay reached the end of the stream
        self.last_sequence = 0  # stream sequence of the last message applied
        self._loaded_event = asyncio.Event()

    def audience(self, video_id: int) -> Audience:
        """Who may play `video_id` now (no I/O: hot path)."""
        return self._audiences.get(video_id, Audience.NOBODY)

    def apply(self, event: VideoAccessChanged) -> None:
        audience = audience_of(event)
        if audience is Audience.NOBODY:
            self._audiences.pop(event.video_id, None)  # deleted ids do not pile up
        else:
            self._audiences[event.video_id] = audience

    def mark_loaded(self) -> None:
        self.loaded = True
        self._loaded_event.set()
        logger.info("playback states loaded: %d playable videos", len(self._audiences))

    async def wait_loaded(self) -> None:
        await self._loaded_event.wait()

    async def check(self) -> None:
        """Readiness: the playback states have been loaded."""
        if not self.loaded:
            raise RuntimeError("playback states not loaded yet from the ACCESS stream")


class AccessFeed:
    """Keeps an AccessMap in step with the ACCESS stream until stopped."""

    def __init__(self, bus: EventBus, access: AccessMap) -> None:
        self.bus = bus
        self.access = access
        self.stream_created: datetime | None = None  # the stream last_sequence belongs to

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            sub = None
            try:
                sub = await self._subscribe()
                await self._follow(sub, stop)
            except Exception as exc:  # NATS down or restarted, consumer gone: start over
                logger.warning("playback state feed interrupted (%r); resuming", exc)
                await _sleep_or_stop(stop, RETRY_SECONDS)
            finally:
                if sub is not None:
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()

    async def _subscribe(self) -> JetStreamContext.PullSubscription:
        if self.bus.js is None:
            raise ConnectionError("not connected to NATS yet")
        config = ConsumerConfig(
            ack_policy=AckPolicy.NONE,
            inactive_threshold=CONSUMER_INACTIVE_SECONDS,
            mem_storage=True,
            num_replicas=1,
        )
        created = (await self.bus.js.stream_info(self.bus.stream(ACCESS_STREAM))).created
        if created != self.stream_created:  # first start, or a re-created stream
            self.access.last_sequence = 0
            self.stream_created = created
        if self.access.last_sequence:  # resume after what we applied, missing nothing
            config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = self.access.last_sequence + 1
        else:  # the current state: the last announcement of every video
            config.deliver_policy = DeliverPolicy.LAST_PER_SUBJECT
        sub = await self.bus.js.pull_subscribe(
            self.bus.subject(ACCESS_SUBJECTS), stream=self.bus.stream(ACCESS_STREAM), config=config
        )
        if not self.access.loaded and (await sub.consumer_info()).num_pending == 0:
            self.access.mark_loaded()  # nothing to replay: a fresh install
        return sub

    async def _follow(self, sub: JetStreamContext.PullSubscription, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                messages = await sub.fetch(FETCH_BATCH, timeout=FETCH_TIMEOUT_SECONDS)
            except NatsTimeoutError:
                # Quiet, or our consumer is gone (NATS restarted, consumer removed): a fetch
                # from a missing consumer only times out. Asking raises NotFoundError then.
                record_consumer_info(await sub.consumer_info(), consumer=CONSUMER_LABEL)
                continue
            for msg in messages:
                self._apply(msg)

    def _apply(self, msg: Msg) -> None:
        metadata = msg.metadata
        subject = self.bus.unprefixed(msg.subject)
        traceparent = msg.headers.get(TRACEPARENT) if msg.headers else None
        with continue_trace(traceparent, name=f"{subject} process"):
            try:
                event = parse_event(subject, msg.data)
            except ValueError as exc:
                logger.error("ignoring unusable playback state on %s: %s", subject, exc)
            else:
                if isinstance(event, VideoAccessChanged):
                    self.access.apply(event)
                    if self.access.loaded:  # a live change, not the start-up replay
                        logger.info(
                            "video %s: playable by %s",
                            event.video_id,
                            audience_of(event).value,
                        )
        self.access.last_sequence = metadata.sequence.stream
        if not self.access.loaded and metadata.num_pending == 0:
            self.access.mark_loaded()


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
