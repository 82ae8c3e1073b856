"""The events the mailer consumes: the durable JetStream consumer "mailer" on the AUTH
stream, shared by every mailer instance (JetStream hands each message to one of them), and
the translation of the service's verdict into ack / nak(delay) / term."""

from __future__ import annotations

import asyncio

from nats.aio.msg import Msg

from videoflix_mailer.service import Delivery, Mailer, Verdict
from videoflix_mailer.settings import MailerSettings
from videoflix_shared.bus import EventBus
from videoflix_shared.events import AUTH_STREAM, STREAMS

DURABLE = "mailer"
FILTER_SUBJECT = STREAMS[AUTH_STREAM]  # non-mail auth events are acknowledged and ignored


async def consume_mail_events(
    *, bus: EventBus, mailer: Mailer, settings: MailerSettings, stop: asyncio.Event
) -> None:
    async def handle(msg: Msg, subject: str) -> None:
        metadata = msg.metadata
        delivery = Delivery(
            subject=subject,
            data=msg.data,
            attempt=metadata.num_delivered,
            published_at=metadata.timestamp,
            stream_sequence=metadata.sequence.stream,
        )
        outcome = await mailer.handle(delivery=delivery, keep_alive=msg.in_progress)
        if outcome.verdict is Verdict.ACK:
            await msg.ack()
        elif outcome.verdict is Verdict.RETRY:
            await msg.nak(delay=outcome.delay)
        else:
            await msg.term()

    await bus.consume(
        stream=AUTH_STREAM,
        durable=DURABLE,
        filter_subject=FILTER_SUBJECT,
        handler=handle,
        ack_wait=settings.ack_wait_seconds,
        retry_delay=settings.retry_base_seconds,
        stop=stop,
    )
