"""What the mailer does with one delivery of a mail event, and replaying dead letters.

`Mailer.handle` decides, without knowing about NATS, whether a delivery is acknowledged
(sent now, or sent before), retried later with exponential backoff (SMTP or Redis
unreachable, a 4xx, another instance busy with it) or dropped after being recorded as a
dead letter (malformed, its sealed links do not open, refused with a 5xx, or failing for
longer than the give-up window). Nothing is dropped unless its dead letter is stored: when
Redis is down it is retried.

Links arrive sealed (`videoflix_shared.sealing`); they are opened only to render the email.
Dead letters keep the message as received, sealed.
"""

from __future__ import annotations

import enum
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.exceptions import RedisError

from videoflix_mailer.dead_letters import DeadLetter, DeadLetterStore
from videoflix_mailer.emails import TEMPLATE_BY_SUBJECT, EmailRenderer
from videoflix_mailer.ledger import ClaimResult, DeliveryLedger
from videoflix_mailer.metrics import (
    DEAD_LETTERED,
    DUPLICATE,
    EMAIL_DELIVERIES,
    IGNORED,
    RETRIED,
    SENT,
)
from videoflix_mailer.smtp import DeliveryError, SmtpSender
from videoflix_shared.bus import EventBus
from videoflix_shared.events import Event, parse_event
from videoflix_shared.sealing import SEALED_VERSION, Sealer, SealingError, sealed_fields

logger = logging.getLogger(__name__)

SUPPORTED_EVENT_VERSIONS = (1, SEALED_VERSION)  # 1: links in clear (development only)
REDIS_ERRORS = (RedisError, OSError)

_jitter = secrets.SystemRandom()


class Verdict(enum.Enum):
    ACK = "ack"  # done: acknowledge
    RETRY = "retry"  # negative acknowledgement with `delay`
    DROP = "drop"  # dead-lettered: terminate, never redeliver


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    delay: float = 0.0


@dataclass(frozen=True)
class Delivery:
    """One delivery of a stream message, as the consumer received it."""

    subject: str  # unprefixed
    data: bytes
    attempt: int  # 1 on first delivery
    published_at: datetime
    stream_sequence: int


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float
    max_seconds: float
    give_up_seconds: float

    def delay(self, attempt: int) -> float:
        """base * 2^(attempt-1), capped; 20% jitter so many instances do not retry in step."""
        exponent = min(max(attempt - 1, 0), 32)
        return min(self.base_seconds * 2.0**exponent, self.max_seconds) * _jitter.uniform(0.8, 1.0)

    def gave_up(self, delivery: Delivery) -> bool:
        age = (datetime.now(UTC) - delivery.published_at).total_seconds()
        return age > self.give_up_seconds


class MalformedEvent(ValueError):
    pass


def read_mail_event(subject: str, data: bytes) -> Event:
    """Parse and validate a mail event; raises MalformedEvent with a readable reason."""
    try:
        event = parse_event(subject, data)
    except ValueError as exc:
        raise MalformedEvent(f"invalid {subject} payload: {exc}"[:2000]) from exc
    if event.version not in SUPPORTED_EVENT_VERSIONS:
        raise MalformedEvent(
            f"{subject} version {event.version} is not supported "
            f"(this mailer reads versions {', '.join(map(str, SUPPORTED_EVENT_VERSIONS))})"
        )
    return event


def open_mail_event(event: Event, sealer: Sealer | None) -> Event:
    """The event with its links in clear, for rendering; raises SealingError with a reason.

    A mailer holding a key mails only sealed links: a link in clear did not come from auth
    (which seals whenever it has the key), so it may be forged and is never sent."""
    if event.version == SEALED_VERSION:
        if sealer is None:
            raise SealingError("its links are sealed, but this mailer has no MAIL_TOKEN_KEY")
        return sealer.open(event)
    if sealer is not None and sealed_fields(event):
        raise SealingError(
            "its links are in clear, but this mailer holds MAIL_TOKEN_KEY and mails only "
            "links auth sealed (forged, or published by an auth without the key)"
        )
    return event


class Mailer:
    def __init__(
        self,
        *,
        renderer: EmailRenderer,
        sender: SmtpSender,
        ledger: DeliveryLedger,
        dead_letters: DeadLetterStore,
        retry: RetryPolicy,
        sealer: Sealer | None = None,
    ) -> None:
        self.sealer = sealer
        self.renderer = renderer
        self.sender = sender
        self.ledger = ledger
        self.dead_letters = dead_letters
        self.retry = retry

    async def handle(
        self,
        *,
        delivery: Delivery,
        keep_alive: Callable[[], Awaitable[None]] | None = None,
    ) -> Outcome:
        """Send the email of one delivery at most once across all instances (see module doc).

        `keep_alive` is awaited right before talking to SMTP (it tells JetStream the message
        is still being worked on, so a slow server does not cause a redelivery meanwhile).
        """
        subject = delivery.subject
        if subject not in TEMPLATE_BY_SUBJECT:
            logger.debug("ignoring %s: not a mail event", subject)
            EMAIL_DELIVERIES.labels(subject, IGNORED).inc()
            return Outcome(Verdict.ACK)
        try:
            event = read_mail_event(subject, delivery.data)
        except MalformedEvent as exc:
            return await self._dead_letter(delivery, kind="malformed", reason=str(exc))
        event_id = str(event.event_id)
        try:
            clear = open_mail_event(event, self.sealer)
        except SealingError as exc:
            return await self._dead_letter(
                delivery, kind="unsealable", reason=f"sealed links: {exc}", event=event
            )

        try:
            claim, token = await self.ledger.claim(event_id)
        except REDIS_ERRORS as exc:
            # Without the ledger we cannot know whether it was sent: wait, never guess.
            return self._retry(delivery, f"delivery ledger (Redis) unreachable: {exc}")
        if claim is ClaimResult.SENT:
            logger.info("event %s (%s) was already sent; acknowledging", event_id, subject)
            EMAIL_DELIVERIES.labels(subject, DUPLICATE).inc()
            return Outcome(Verdict.ACK)
        if claim is ClaimResult.BUSY:
            return self._retry(delivery, f"event {event_id} is being sent by another instance")
        return await self._send_claimed(delivery, clear, token, keep_alive)

    async def _send_claimed(
        self,
        delivery: Delivery,
        event: Event,
        token: str,
        keep_alive: Callable[[], Awaitable[None]] | None,
    ) -> Outcome:
        """Render and send an event this instance holds the claim of; record the result."""
        event_id = str(event.event_id)
        try:
            message = self.renderer.render(event)
        except Exception as exc:  # template error for these values: no retry will fix it
            await self._release(event_id, token)
            return await self._dead_letter(
                delivery, kind="malformed", reason=f"cannot render: {exc!r}", event=event
            )

        if keep_alive is not None:
            try:
                await keep_alive()
            except Exception as exc:  # NATS away: send anyway, the ledger covers a redelivery
                logger.warning("could not extend the ack deadline of %s: %s", event_id, exc)
        try:
            await self.sender.send(message)
        except DeliveryError as exc:
            await self._release(event_id, token)
            if exc.permanent:
                return await self._dead_letter(
                    delivery, kind="rejected", reason=exc.reason, event=event
                )
            if self.retry.gave_up(delivery):
                return await self._dead_letter(
                    delivery,
                    kind="expired",
                    reason=f"still failing after {self.retry.give_up_seconds:.0f}s: {exc.reason}",
                    event=event,
                )
            return self._retry(delivery, f"SMTP delivery of {event_id} failed: {exc.reason}")

        try:
            await self.ledger.mark_sent(event_id)
        except REDIS_ERRORS as exc:
            # The email is out; acknowledging stops redelivery. Our claim still guards the
            # event until it expires. Only a redelivery after that could repeat it.
            logger.error("sent %s but could not record it in Redis: %s", event_id, exc)
        logger.info("sent %s for event %s to %s", delivery.subject, event_id, message["To"])
        EMAIL_DELIVERIES.labels(delivery.subject, SENT).inc()
        return Outcome(Verdict.ACK)

    def _retry(self, delivery: Delivery, reason: str) -> Outcome:
        delay = self.retry.delay(delivery.attempt)
        logger.warning("%s (attempt %d); retrying in %.1fs", reason, delivery.attempt, delay)
        EMAIL_DELIVERIES.labels(delivery.subject, RETRIED).inc()
        return Outcome(Verdict.RETRY, delay=delay)

    async def _release(self, event_id: str, token: str) -> None:
        try:
            await self.ledger.release(event_id, token)
        except REDIS_ERRORS as exc:  # the claim expires on its own
            logger.warning("could not release the claim on %s: %s", event_id, exc)

    async def _dead_letter(
        self, delivery: Delivery, *, kind: str, reason: str, event: Event | None = None
    ) -> Outcome:
        letter = DeadLetter(
            id=DeadLetter.make_id(
                subject=delivery.subject,
                stream_sequence=delivery.stream_sequence,
                published_at=delivery.published_at,
            ),
            kind=kind,
            reason=reason,
            subject=delivery.subject,
            payload=delivery.data,
            event_id=str(event.event_id) if event else "",
            recipient=str(getattr(event, "email", "")),
            deliveries=delivery.attempt,
            stream_sequence=delivery.stream_sequence,
            failed_at=datetime.now(UTC),
        )
        try:
            await self.dead_letters.add(letter)
        except REDIS_ERRORS as exc:
            return self._retry(delivery, f"cannot store dead letter ({kind}: {reason}): {exc}")
        logger.error(
            "dead letter %s: %s %s (event %s): %s",
            letter.id,
            kind,
            delivery.subject,
            letter.event_id or "?",
            reason,
        )
        EMAIL_DELIVERIES.labels(delivery.subject, DEAD_LETTERED).inc()
        return Outcome(Verdict.DROP)


async def replay_dead_letter(
    *, store: DeadLetterStore, bus: EventBus, letter_id: str
) -> DeadLetter:
    """Publish a dead letter's original payload to its subject again, then forget it.

    The event keeps its event id (the ledger still says it was never sent), but the
    JetStream message id is new: the stream's duplicate window would drop a second copy.
    Raises LookupError for an unknown id; the record stays when publishing fails.
    """
    letter = await store.get(letter_id)
    if letter is None:
        raise LookupError(f"no dead letter {letter_id!r}")
    replay_id = f"replay-{letter.id}-{secrets.token_hex(6)}"
    await bus.publish_raw(letter.subject, letter.payload, msg_id=replay_id)
    await store.remove(letter.id)
    logger.info("replayed dead letter %s (%s) as %s", letter.id, letter.subject, replay_id)
    return letter
