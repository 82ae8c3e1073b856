"""NATS JetStream: connecting, provisioning the streams, publishing events with a message
id (so JetStream drops duplicates), and durable pull consumers with explicit acks.

A bus made for a principal of `videoflix_shared.access` (every service's is) logs in as
its NATS user, provisions only the streams that principal owns (its user may touch no
other), and receives replies on the principal's private inbox prefix.

Retention: a stream keeps a message `max_age` seconds: the AUTH stream (mail events, links
that expire) 6 hours unless its owner says otherwise (auth: `AUTH_STREAM_MAX_AGE_SECONDS`),
the others 14 days. Provisioning
updates an existing stream whose configuration differs, so a changed retention applies at
the owner's next start.

A consumer's handler acknowledges each message itself (`ack`, `nak(delay=...)`, `term`);
a handler that raises gets the message redelivered after `retry_delay` seconds.

Trace context (videoflix_shared.tracing): every publish carries the current `traceparent`
as a message header, and a consumer's handler runs in the trace of its message.

Lost and found: an operator may delete a stream or a consumer while the services run.
The owner of a stream checks its streams every `check_interval` seconds
(NATS_CHECK_INTERVAL_SECONDS; and when a publish finds no stream) and re-creates a missing
one, then tells whoever registered with `on_stream_recreated` (catalog re-announces every
playback state into a new ACCESS stream). A durable consumer checks itself as often; a
lost one is re-created where it stood: after the last acknowledged message of the same stream, or from the start
of a stream that is new (consumers are idempotent, so a message seen twice is harmless).

Metrics (gauges that merge across worker processes): `videoflix_nats_connected{service}`,
`videoflix_jetstream_consumer_pending_messages{stream,consumer}` (not yet delivered) and
`videoflix_jetstream_consumer_redelivered_messages{stream,consumer}` (delivered more than
once and not yet acknowledged), from each consumer's periodic check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    ConsumerInfo,
    DeliverPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NoStreamResponseError, NotFoundError
from prometheus_client import Gauge

from videoflix_shared import access
from videoflix_shared.events import AUTH_STREAM, STATE_STREAMS, STREAMS, Event, parse_event
from videoflix_shared.settings import CommonSettings
from videoflix_shared.tracing import TRACEPARENT, continue_trace, current_traceparent, span

logger = logging.getLogger(__name__)

DEFAULT_MAX_AGE_SECONDS = 14 * 24 * 3600
AUTH_STREAM_MAX_AGE_SECONDS = 6 * 3600
CHECK_INTERVAL_SECONDS = 5.0

MessageHandler = Callable[[Msg, str], Awaitable[None]]  # (message, unprefixed subject)
StreamRecreated = Callable[[str], Awaitable[None]]  # (unprefixed stream name)

# Each process reports its own connection; merged, one disconnected process shows 0.
NATS_CONNECTED = Gauge(
    "videoflix_nats_connected",
    "1 while this service is connected to NATS, 0 while not",
    ["service"],
    multiprocess_mode="livemin",
)
# Every process sharing a durable consumer sees the same figures: merged by their maximum.
CONSUMER_PENDING = Gauge(
    "videoflix_jetstream_consumer_pending_messages",
    "Messages of the stream not yet delivered to the consumer",
    ["stream", "consumer"],
    multiprocess_mode="livemax",
)
CONSUMER_REDELIVERED = Gauge(
    "videoflix_jetstream_consumer_redelivered_messages",
    "Messages delivered more than once and not yet acknowledged",
    ["stream", "consumer"],
    multiprocess_mode="livemax",
)


def record_consumer_info(info: ConsumerInfo, *, consumer: str) -> None:
    """Export a consumer's backlog (`consumer`: its durable name, or a stable label for
    per-process ephemeral consumers so restarts do not add label values)."""
    CONSUMER_PENDING.labels(info.stream_name, consumer).set(info.num_pending or 0)
    CONSUMER_REDELIVERED.labels(info.stream_name, consumer).set(info.num_redelivered or 0)


class EventBus:
    def __init__(
        self,
        *,
        url: str,
        subject_prefix: str = "",
        stream_prefix: str = "VIDEOFLIX_",
        principal: str | None = None,
        user: str = "",
        password: str = "",
        max_age: dict[str, float] | None = None,
        check_interval: float = CHECK_INTERVAL_SECONDS,
    ) -> None:
        """`principal` None (tests, tools): provisions every stream, shared inbox prefix.
        `max_age`: retention in seconds per (unprefixed) stream name, overriding the defaults.
        `check_interval`: how often the owner looks for a lost stream (0: never) and a
        consumer for its lost durable."""
        self.url = url
        self.subject_prefix = subject_prefix
        self.stream_prefix = stream_prefix
        self.principal = principal
        self.owned_streams = principal_streams(principal)
        self.user = user
        self.password = password
        self.max_age = {AUTH_STREAM: AUTH_STREAM_MAX_AGE_SECONDS, **(max_age or {})}
        self.nc: NATS | None = None
        self.js: JetStreamContext | None = None
        self.check_interval = check_interval
        self._stream_recreated: list[StreamRecreated] = []
        self._watchdog: asyncio.Task[None] | None = None
        self._reactions: set[asyncio.Task[None]] = set()
        self._connected = NATS_CONNECTED.labels(principal or "none")
        self._connected.set(0)

    @classmethod
    def from_settings(
        cls,
        settings: CommonSettings,
        *,
        principal: str | None = None,
        max_age: dict[str, float] | None = None,
    ) -> EventBus:
        return cls(
            url=settings.nats_url,
            subject_prefix=settings.nats_subject_prefix,
            stream_prefix=settings.nats_stream_prefix,
            principal=principal,
            user=settings.nats_user,
            password=settings.nats_password,
            max_age=max_age,
            check_interval=settings.nats_check_interval_seconds,
        )

    # -- naming -----------------------------------------------------------------------------
    def subject(self, name: str) -> str:
        return f"{self.subject_prefix}{name}"

    def unprefixed(self, subject: str) -> str:
        return subject.removeprefix(self.subject_prefix)

    def stream(self, name: str) -> str:
        return f"{self.stream_prefix}{name}"

    # -- lifecycle --------------------------------------------------------------------------
    async def connect(self, *, wait: bool = True, attempt_timeout: float = 5) -> None:
        """Connect (retrying until NATS answers when `wait`), then provision the streams.

        Each attempt is bounded: nats-py itself would keep retrying a first connection to an
        unreachable server forever, so `wait=False` raises ConnectionError instead of hanging.
        """
        delay = 0.5
        while True:
            try:
                self.nc = await asyncio.wait_for(self._open(), attempt_timeout)
                break
            except Exception as exc:
                if not wait:
                    raise ConnectionError(f"NATS at {self.url} not reachable: {exc!r}") from exc
                logger.warning(
                    "NATS at %s not reachable (%r); retrying in %.1fs", self.url, exc, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5)
        self.js = self.nc.jetstream(timeout=5)
        self._connected.set(1)
        await self.ensure_streams()
        if self.owned_streams and self.check_interval > 0 and self._watchdog is None:
            self._watchdog = asyncio.create_task(self._watch_streams(), name="nats-streams")

    async def _open(self) -> NATS:
        credentials: dict[str, str] = {}
        if self.user:
            credentials = {"user": self.user, "password": self.password}
        if self.principal is not None:
            credentials["inbox_prefix"] = access.inbox_prefix(self.principal)
        return await nats.connect(
            self.url,
            **credentials,
            max_reconnect_attempts=-1,
            reconnect_time_wait=1,
            connect_timeout=2,
            drain_timeout=5,
            allow_reconnect=True,
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnect,
            reconnected_cb=self._on_reconnect,
        )

    def _stream_config(self, name: str) -> StreamConfig:
        state = name in STATE_STREAMS  # the last message per subject, kept for good
        return StreamConfig(
            name=self.stream(name),
            subjects=[self.subject(STREAMS[name])],
            storage=StorageType.FILE,
            duplicate_window=120,
            max_age=0 if state else self.max_age.get(name, DEFAULT_MAX_AGE_SECONDS),
            max_msgs_per_subject=1 if state else -1,
        )

    async def ensure_streams(self) -> None:
        """Create the owned streams, or bring an existing one's configuration up to date."""
        assert self.js is not None
        for name in self.owned_streams:
            config = self._stream_config(name)
            try:
                await self.js.stream_info(self.stream(name))
                await self.js.update_stream(config)
            except NotFoundError:
                await self.js.add_stream(config)

    def on_stream_recreated(self, callback: StreamRecreated) -> None:
        """Call `callback(stream)` whenever this bus re-creates a lost stream it owns."""
        self._stream_recreated.append(callback)

    async def recreate_lost_streams(self) -> list[str]:
        """Re-create every owned stream that is missing (deleted by an operator, or lost
        with the server's store); returns their (unprefixed) names."""
        if self.js is None:
            return []
        recreated = []
        for name in self.owned_streams:
            try:
                await self.js.stream_info(self.stream(name))
                continue
            except NotFoundError:
                pass
            await self.js.add_stream(self._stream_config(name))
            logger.warning("stream %s was missing: re-created it", self.stream(name))
            recreated.append(name)
        for name in recreated:
            for callback in self._stream_recreated:
                # in the background: the caller may be a publish holding a transaction
                task = asyncio.create_task(self._react(callback, name), name="stream-recreated")
                self._reactions.add(task)
                task.add_done_callback(self._reactions.discard)
        return recreated

    @staticmethod
    async def _react(callback: StreamRecreated, stream: str) -> None:
        try:
            await callback(stream)
        except Exception:
            logger.exception("reacting to the re-created stream %s failed", stream)

    async def _watch_streams(self) -> None:
        while True:
            await asyncio.sleep(self.check_interval)
            if not self.is_connected:
                continue
            try:
                await self.recreate_lost_streams()
            except Exception as exc:  # NATS busy or going away: the next round tries again
                logger.info("stream check failed: %s", exc)

    async def close(self) -> None:
        for task in [self._watchdog, *self._reactions]:
            if task is not None:
                task.cancel()
                # Bounded: closing must never hang on a task that ignores its cancellation
                # or belongs to another event loop (a session-wide bus in a test run).
                with contextlib.suppress(BaseException):
                    await asyncio.wait([task], timeout=5)
        self._watchdog = None
        if self.nc is not None and not self.nc.is_closed:
            # JetStream publishes are already acknowledged, so flush + close is enough;
            # drain() would wait its whole timeout on the JetStream reply subscription.
            with contextlib.suppress(Exception):
                await self.nc.flush(timeout=2)
            with contextlib.suppress(Exception):
                await self.nc.close()
        self.nc = None
        self.js = None
        self._connected.set(0)

    @property
    def is_connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    async def check(self) -> None:
        """Readiness: connected and JetStream answering."""
        if not self.is_connected or self.js is None:
            raise ConnectionError("not connected to NATS")
        await self.js.account_info()

    async def _on_error(self, exc: Exception) -> None:
        logger.warning("NATS error: %s", exc)

    async def _on_disconnect(self) -> None:
        self._connected.set(0)
        logger.warning("NATS disconnected")

    async def _on_reconnect(self) -> None:
        self._connected.set(1)
        logger.info("NATS reconnected")

    # -- publishing -------------------------------------------------------------------------
    async def publish_raw(
        self,
        subject: str,
        payload: bytes,
        *,
        msg_id: str,
        timeout: float = 5,
        traceparent: str | None = None,
    ) -> None:
        """Publish under the prefix and wait for JetStream's ack (raises when not stored).
        A stream this bus owns that has gone missing is re-created and the publish retried."""
        if self.js is None:
            raise ConnectionError("not connected to NATS")
        headers = {"Nats-Msg-Id": msg_id}
        if traceparent:
            headers[TRACEPARENT] = traceparent
        try:
            await self.js.publish(self.subject(subject), payload, timeout=timeout, headers=headers)
        except NoStreamResponseError:
            if not await self.recreate_lost_streams():
                raise
            await self.js.publish(self.subject(subject), payload, timeout=timeout, headers=headers)

    async def publish(self, event: Event, *, timeout: float = 5) -> None:
        """Publish `event` in the current trace (its `traceparent` rides as a header)."""
        with span(f"{event.publish_subject} publish", kind="producer"):
            await self.publish_raw(
                event.publish_subject,
                event.model_dump_json().encode(),
                msg_id=str(event.event_id),
                timeout=timeout,
                traceparent=current_traceparent(),
            )

    # -- consuming --------------------------------------------------------------------------
    async def consume(
        self,
        *,
        stream: str,
        durable: str,
        filter_subject: str,
        handler: MessageHandler,
        batch: int = 10,
        ack_wait: float = 60,
        max_deliver: int = -1,
        retry_delay: float = 5,
        stop: asyncio.Event | None = None,
    ) -> None:
        """Run a durable pull consumer until `stop` is set; several processes may share it.

        `stream` and `filter_subject` are unprefixed (e.g. "AUTH", "auth.>"). Each message
        is handled in its trace; a consumer deleted meanwhile is re-created (module doc).
        """
        stop = stop or asyncio.Event()
        consumer = DurableConsumer(
            self,
            stream=stream,
            durable=durable,
            filter_subject=filter_subject,
            ack_wait=ack_wait,
            max_deliver=max_deliver,
        )
        if not await consumer.subscribe(stop):
            return
        while not stop.is_set():
            for msg in await consumer.fetch(batch, stop):
                await self._deliver(msg, handler, retry_delay)

    async def _deliver(self, msg: Msg, handler: MessageHandler, retry_delay: float) -> None:
        subject = self.unprefixed(msg.subject)
        traceparent = msg.headers.get(TRACEPARENT) if msg.headers else None
        with continue_trace(traceparent, name=f"{subject} process", kind="consumer"):
            try:
                await handler(msg, subject)
            except Exception:
                logger.exception("handler failed for %s; redelivery in %ss", subject, retry_delay)
                with contextlib.suppress(Exception):
                    await msg.nak(delay=retry_delay)

    async def delete_streams(self) -> None:
        """Remove this bus's streams (tests clean up their per-run streams with it)."""
        assert self.js is not None
        for name in STREAMS:
            with contextlib.suppress(NotFoundError):
                await self.js.delete_stream(self.stream(name))


class DurableConsumer:
    """One process's pull subscription to a durable consumer: fetches, checks every
    `bus.check_interval` seconds that the consumer still exists (exporting its backlog),
    and re-creates it where it stood when it is gone."""

    def __init__(
        self,
        bus: EventBus,
        *,
        stream: str,
        durable: str,
        filter_subject: str,
        ack_wait: float,
        max_deliver: int,
    ) -> None:
        self.bus = bus
        self.stream = stream
        self.durable = durable
        self.filter_subject = filter_subject
        self.ack_wait = ack_wait
        self.max_deliver = max_deliver
        self.sub: JetStreamContext.PullSubscription | None = None
        self.checked_at = 0.0
        self.ack_floor = 0  # stream sequence every message up to which is acknowledged
        self.stream_created: datetime | None = None  # which incarnation of the stream

    async def subscribe(self, stop: asyncio.Event, *, resume: bool = False) -> bool:
        """Subscribe (creating the consumer if needed), retrying until it works or `stop`;
        `resume`: the consumer was lost, re-create it where it stood."""
        while not stop.is_set():
            try:
                self.sub = await self._pull_subscription(resume)
                self.checked_at = time.monotonic()
                return True
            except Exception as exc:
                logger.warning("cannot subscribe %s/%s yet: %s", self.stream, self.durable, exc)
                await _sleep_or_stop(stop, 2)
        return False

    async def fetch(self, batch: int, stop: asyncio.Event) -> list[Msg]:
        """The next messages (none after a quiet second); checks the consumer when due."""
        assert self.sub is not None
        try:
            msgs = await self.sub.fetch(batch, timeout=1)
        except TimeoutError:  # nats' own, or asyncio's when the loop is slow
            msgs = []
        except Exception as exc:  # disconnected, consumer deleted...: back off and check
            logger.warning("fetch from %s/%s failed: %s", self.stream, self.durable, exc)
            await _sleep_or_stop(stop, 1)
            self.checked_at = 0.0
            msgs = []
        if time.monotonic() - self.checked_at >= (
            self.bus.check_interval or CHECK_INTERVAL_SECONDS
        ):
            await self.check(stop)
        return msgs

    async def check(self, stop: asyncio.Event) -> None:
        """Export the consumer's backlog, or re-create it if it is gone."""
        assert self.sub is not None
        self.checked_at = time.monotonic()
        try:
            info = await self.sub.consumer_info()
        except NotFoundError:
            logger.warning(
                "consumer %s on %s is gone: re-creating it after stream sequence %d",
                self.durable,
                self.bus.stream(self.stream),
                self.ack_floor,
            )
            old, self.sub = self.sub, None
            with contextlib.suppress(Exception):
                await old.unsubscribe()
            await self.subscribe(stop, resume=True)
            return
        except Exception as exc:  # NATS away: the next check tries again
            logger.info("consumer check of %s/%s failed: %s", self.stream, self.durable, exc)
            return
        self.ack_floor = info.ack_floor.stream_seq if info.ack_floor else 0
        record_consumer_info(info, consumer=self.durable)

    async def _pull_subscription(self, resume: bool) -> JetStreamContext.PullSubscription:
        js = self.bus.js
        if js is None:
            raise ConnectionError("not connected to NATS")
        config = ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self.ack_wait,
            max_deliver=self.max_deliver,
            max_ack_pending=1000,
            filter_subject=self.bus.subject(self.filter_subject),
        )
        created = await self._stream_created()
        if resume and self.ack_floor and created is not None and created == self.stream_created:
            # the same stream: deliver what was not acknowledged yet, not all history again
            config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = self.ack_floor + 1
        sub = await js.pull_subscribe(
            self.bus.subject(self.filter_subject),
            durable=self.durable,
            stream=self.bus.stream(self.stream),
            config=config,
        )
        if created != self.stream_created:
            self.ack_floor = 0
        self.stream_created = created
        return sub

    async def _stream_created(self) -> datetime | None:
        """When the stream was created (None when NATS will not say): a stream deleted and
        re-created has a new time, and its sequences start again from 1."""
        assert self.bus.js is not None
        try:
            return (await self.bus.js.stream_info(self.bus.stream(self.stream))).created
        except NotFoundError:
            raise
        except Exception:  # e.g. a server whose users predate the STREAM.INFO right
            return None


def principal_streams(name: str | None) -> tuple[str, ...]:
    """The streams a bus provisions: its principal's own, or all of them without one."""
    return tuple(STREAMS) if name is None else access.principal(name).owns


async def parse_or_drop(msg: Msg, subject: str) -> Event | None:
    """The event in `msg`, or None after terminating a message that can never parse
    (malformed or of an unknown subject): redelivering it would only block the consumer."""
    try:
        return parse_event(subject, msg.data)
    except ValueError as exc:
        logger.error("dropping unusable message on %s: %s", subject, exc)
        await msg.term()
        return None


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
