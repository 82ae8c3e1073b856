"""What the mailer counts for operators: emails sent, retried and dead-lettered, and the dead
letters waiting now (read from Redis at every scrape, so a replay or a deletion by the CLI
shows at once), on the consumer's own `/metrics`."""

from __future__ import annotations

import asyncio

from videoflix_mailer.app import run_consumer
from videoflix_mailer.dead_letters import DeadLetterStore
from videoflix_shared.app import create_service_app
from videoflix_shared.redis import create_redis
from videoflix_testing.clients import asgi_client
from videoflix_testing.metrics import Scrape
from videoflix_testing.plugin import wait_until_async

from .conftest import RefusingHandler, user_registered, wait_for_messages, wait_until_consumer_idle

DELIVERIES = "videoflix_email_deliveries_total"
DEAD_LETTERS = "videoflix_email_dead_letters"
SUBJECT = "auth.user.registered"


def counted(before: Scrape, after: Scrape, outcome: str) -> float:
    labels = {"subject": SUBJECT, "outcome": outcome}
    return after.value(DELIVERIES, labels) - before.value(DELIVERIES, labels)


async def test_sent_retried_and_dead_lettered_emails_and_waiting_dead_letters(
    bus, smtp, mailbox, settings
):
    refusing = await smtp.start(RefusingHandler(mailbox, rcpt="550 5.1.1 unknown user"))
    app = create_service_app(service="mailer-consume", settings=settings)
    stop = asyncio.Event()
    consumer = asyncio.create_task(run_consumer(app, stop))
    redis = create_redis(settings)
    try:
        async with asgi_client(app) as client:

            async def scrape() -> Scrape:
                return Scrape((await client.get("/metrics")).text)

            before = await scrape()
            assert before.value(DEAD_LETTERS) == 0
            await bus.publish(user_registered("refused@example.com"))  # 550: a dead letter
            await wait_until_consumer_idle(bus)
            refused = await scrape()
            assert counted(before, refused, "dead_lettered") == 1
            assert refused.value(DEAD_LETTERS) == 1

            refusing.rcpt_refusal = None
            refusing.data_refusal = "451 4.3.0 try again later"  # retried, then sent
            await bus.publish(user_registered("greylisted@example.com"))
            await wait_until_async(lambda: refusing.refused_at, timeout=15, what="a 451")
            refusing.data_refusal = None
            await wait_for_messages(mailbox, "greylisted@example.com")
            await wait_until_consumer_idle(bus)
            delivered = await scrape()
            assert counted(before, delivered, "retried") == len(refusing.refused_at)
            assert counted(before, delivered, "sent") == 1

            store = DeadLetterStore(redis, settings)
            [letter] = await store.list()
            assert await store.remove(letter.id)  # what `dead-letters delete` does
            assert (await scrape()).value(DEAD_LETTERS) == 0
    finally:
        stop.set()
        await asyncio.wait_for(consumer, 15)
        await redis.aclose()
