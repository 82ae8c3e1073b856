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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from videoflix_shared import access
from videoflix_shared.events import AUTH_STREAM, STATE_STREAMS, STREAMS, Event, parse_event
from videoflix_shared.settings import CommonSettings

logger = logging.getLogger(__name__)

DEFAULT_MAX_AGE_SECONDS = 14 * 24 * 3600
AUTH_STREAM_MAX_AGE_SECONDS = 6 * 3600

MessageHandler = Callable[[Msg, str], Awaitable[None]]  # (message, unprefixed subject)


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
    ) -> None:
        """`principal` None (tests, tools): provisions every stream, shared inbox prefix.
        `max_age`: retention in seconds per (unprefixed) stream name, overriding the defaults."""
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
        await self.ensure_streams()

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

    async def ensure_streams(self) -> None:
        assert self.js is not None
        for name in self.owned_streams:
            subjects = STREAMS[name]
            state = name in STATE_STREAMS  # the last message per subject, kept for good
            stream_name = self.stream(name)
            config = StreamConfig(
                name=stream_name,
                subjects=[self.subject(subjects)],
                storage=StorageType.FILE,
                duplicate_window=120,
                max_age=0 if state else self.max_age.get(name, DEFAULT_MAX_AGE_SECONDS),
                max_msgs_per_subject=1 if state else -1,
            )
            try:
                await self.js.stream_info(stream_name)
                await self.js.update_stream(config)
            except NotFoundError:
                await self.js.add_stream(config)

    async def close(self) -> None:
        if self.nc is not None and not self.nc.is_closed:
            # JetStream publishes are already acknowledged, so flush + close is enough;
            # drain() would wait its whole timeout on the JetStream reply subscription.
            with contextlib.suppress(Exception):
                await self.nc.flush(timeout=2)
            with contextlib.suppress(Exception):
                await self.nc.close()
        self.nc = None
        self.js = None

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
        logger.warning("NATS disconnected")

    async def _on_reconnect(self) -> None:
        logger.info("NATS reconnected")

    # -- publishing -------------------------------------------------------------------------
    async def publish_raw(
        self, subject: str, payload: bytes, *, msg_id: str, timeout: float = 5
    ) -> None:
        """Publish under the prefix and wait for JetStream's ack (raises when not stored)."""
        if self.js is None:
            raise ConnectionError("not connected to NATS")
        await self.js.publish(
            self.subject(subject), payload, timeout=timeout, headers={"Nats-Msg-Id": msg_id}
        )

    async def publish(self, event: Event, *, timeout: float = 5) -> None:
        await self.publish_raw(
            event.publish_subject,
            event.model_dump_json().encode(),
            msg_id=str(event.event_id),
            timeout=timeout,
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

        `stream` and `filter_subject` are unprefixed (e.g. "AUTH", "auth.>").
        """
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                sub = await self._pull_subscription(
                    stream, durable, filter_subject, ack_wait, max_deliver
                )
                break
            except Exception as exc:
                logger.warning("cannot subscribe %s/%s yet: %s", stream, durable, exc)
                await _sleep_or_stop(stop, 2)
        else:
            return
        while not stop.is_set():
            try:
                msgs = await sub.fetch(batch, timeout=1)
            except TimeoutError:  # nats' own, or asyncio's when the loop is slow
                continue
            except Exception as exc:  # disconnected, stream recreated...: back off and retry
                logger.warning("fetch from %s/%s failed: %s", stream, durable, exc)
                await _sleep_or_stop(stop, 1)
                continue
            for msg in msgs:
                try:
                    await handler(msg, self.unprefixed(msg.subject))
                except Exception:
                    logger.exception(
                        "handler failed for %s; redelivery in %ss", msg.subject, retry_delay
                    )
                    with contextlib.suppress(Exception):
                        await msg.nak(delay=retry_delay)

    async def _pull_subscription(
        self, stream: str, durable: str, filter_subject: str, ack_wait: float, max_deliver: int
    ) -> JetStreamContext.PullSubscription:
        if self.js is None:
            raise ConnectionError("not connected to NATS")
        config = ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=ack_wait,
            max_deliver=max_deliver,
            max_ack_pending=1000,
            filter_subject=self.subject(filter_subject),
        )
        return await self.js.pull_subscribe(
            self.subject(filter_subject), durable=durable, stream=self.stream(stream), config=config
        )

    async def delete_streams(self) -> None:
        """Remove this bus's streams (tests clean up their per-run streams with it)."""
        assert self.js is not None
        for name in STREAMS:
            with contextlib.suppress(NotFoundError):
                await self.js.delete_stream(self.stream(name))


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
