"""Delivering mail events end to end: real NATS JetStream, Redis and SMTP (aiosmtpd) servers,
the production consumer (`run_consumer`) running in-process on the test's settings."""

from __future__ import annotations

import asyncio
import email
import email.policy
import subprocess
import time
import uuid

import pytest

from videoflix_mailer.dead_letters import DeadLetterStore
from videoflix_mailer.ledger import DeliveryLedger
from videoflix_mailer.service import replay_dead_letter
from videoflix_shared.redis import create_redis
from videoflix_testing.plugin import free_port, wait_until_async

from .conftest import (
    RefusingHandler,
    user_registered,
    wait_for_messages,
    wait_until_consumer_idle,
)


async def test_one_event_sends_exactly_one_multipart_email_with_its_link(
    bus, smtp, mailbox, start_mailer, settings
):
    await smtp.start()
    start_mailer()
    event = user_registered("first.user@example.com")
    await bus.publish(event)

    [message] = await wait_for_messages(mailbox, "first.user@example.com")
    await wait_until_consumer_idle(bus)
    assert len(mailbox.list()) == 1

    assert message.to == ["first.user@example.com"]
    assert message.sender == settings.smtp_sender
    assert message.subject == "Confirm your email address for Videoflix"
    assert message.links == [event.activation_url]
    raw = mailbox.raw(message.id)
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed.defects == []
    assert parsed.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert parsed["X-MailFrom"] == "noreply@videoflix.example.com"
    assert parsed["X-RcptTo"] == "first.user@example.com"
    assert parsed["Message-ID"] == f"<{event.event_id}@videoflix.example.com>"
    assert event.activation_url in message.text
    assert "expires in 24 hours" in message.text
    assert event.activation_url.replace("&", "&amp;") in message.html


async def test_same_event_delivered_twice_sends_one_email(bus, smtp, mailbox, start_mailer):
    await smtp.start()
    start_mailer()
    event = user_registered("twice@example.com")
    payload = bus.sealed_json(event)
    # Two stream messages with the same event id (distinct JetStream message ids, so the
    # stream's own duplicate window does not hide the second one from the mailer).
    await bus.publish_raw(event.subject, payload, msg_id=f"{event.event_id}-a")
    await bus.publish_raw(event.subject, payload, msg_id=f"{event.event_id}-b")
    follow_up = user_registered("after-twice@example.com")
    await bus.publish(follow_up)

    await wait_for_messages(mailbox, "after-twice@example.com")
    info = await wait_until_consumer_idle(bus)
    assert info.delivered.stream_seq == 3  # all three were handed to the mailer
    assert len(mailbox.list(to="twice@example.com")) == 1

    # And once more after the fact: a late redelivery is still recognised as sent.
    await bus.publish_raw(event.subject, payload, msg_id=f"{event.event_id}-c")
    await wait_until_consumer_idle(bus)
    assert (await bus.js.consumer_info(bus.stream("AUTH"), "mailer")).delivered.stream_seq == 4
    assert len(mailbox.list(to="twice@example.com")) == 1


async def test_malformed_event_is_dead_lettered_and_next_good_event_is_delivered(
    bus, smtp, mailbox, start_mailer, settings
):
    await smtp.start()
    start_mailer()
    await bus.publish_raw("auth.user.registered", b"{not json", msg_id=uuid.uuid4().hex)
    await bus.publish_raw(
        "auth.password_reset.requested",
        b'{"event_id": "%s", "user_id": 1, "email": "not-an-address"}' % uuid.uuid4().hex.encode(),
        msg_id=uuid.uuid4().hex,
    )
    # Not a mail event: acknowledged and ignored, neither sent nor a dead letter.
    await bus.publish_raw("auth.user.activated", b'{"user_id": 1}', msg_id=uuid.uuid4().hex)
    good = user_registered("after-malformed@example.com")
    await bus.publish(good)

    [message] = await wait_for_messages(mailbox, "after-malformed@example.com")
    assert message.links == [good.activation_url]
    await wait_until_consumer_idle(bus)
    assert len(mailbox.list()) == 1

    redis = create_redis(settings)
    try:
        letters = await DeadLetterStore(redis, settings).list()
    finally:
        await redis.aclose()
    assert [(d.kind, d.subject) for d in letters] == [
        ("malformed", "auth.password_reset.requested"),
        ("malformed", "auth.user.registered"),
    ]
    assert letters[1].payload == b"{not json"
    assert "Invalid JSON" in letters[1].reason
    assert "email" in letters[0].reason
    assert "reset_url" in letters[0].reason


async def test_recipient_refused_with_5xx_is_dead_lettered_and_replay_delivers_it(
    bus, smtp, mailbox, start_mailer, settings
):
    refusing = await smtp.start(RefusingHandler(mailbox, rcpt="550 5.1.1 no such mailbox"))
    start_mailer()
    event = user_registered("bounced@example.com")
    await bus.publish(event)
    await wait_until_consumer_idle(bus)

    redis = create_redis(settings)
    store = DeadLetterStore(redis, settings)
    try:
        [letter] = await store.list()
        assert letter.kind == "rejected"
        assert letter.event_id == str(event.event_id)
        assert letter.recipient == "bounced@example.com"
        assert "550" in letter.reason
        assert mailbox.list() == []

        refusing.rcpt_refusal = None  # the mailbox exists now
        await replay_dead_letter(store=store, bus=bus, letter_id=letter.id)
        [message] = await wait_for_messages(mailbox, "bounced@example.com")
        assert message.links == [event.activation_url]
        await wait_until_consumer_idle(bus)
        assert await store.list() == []
        assert len(mailbox.list()) == 1
        with pytest.raises(LookupError):  # replayed once: the record is gone
            await replay_dead_letter(store=store, bus=bus, letter_id=letter.id)
    finally:
        await redis.aclose()


async def test_4xx_reply_is_retried_with_backoff_until_accepted(bus, smtp, mailbox, start_mailer):
    refusing = await smtp.start(RefusingHandler(mailbox, data="451 4.3.0 try again later"))
    start_mailer()  # retry base 0.5 s: redelivered after >= 0.4 s, then >= 0.8 s (jitter -20%)
    event = user_registered("greylisted@example.com")
    await bus.publish(event)

    await wait_until_async(lambda: len(refusing.refused_at) >= 3, timeout=15, what="three 451s")
    refusing.data_refusal = None
    await wait_for_messages(mailbox, "greylisted@example.com")
    await wait_until_consumer_idle(bus)
    assert len(mailbox.list()) == 1

    first, second, third = refusing.refused_at[:3]
    assert second - first >= 0.4
    assert third - second >= 0.8


async def test_event_claimed_by_another_instance_waits_and_is_not_sent_twice(
    bus, smtp, mailbox, start_mailer, settings
):
    """While one instance holds the claim (it is mid-send), another backs off."""
    await smtp.start()
    event = user_registered("claimed@example.com")
    redis = create_redis(settings)
    ledger = DeliveryLedger(redis, settings, claim_seconds=3, sent_ttl_seconds=60)
    try:
        await ledger.claim(str(event.event_id))  # "another instance" is sending it
        start_mailer()
        await bus.publish(event)
        await asyncio.sleep(1.5)
        assert mailbox.list() == []  # held off while claimed
        # The claim expires (that instance died): this instance takes it over and sends.
        await wait_for_messages(mailbox, "claimed@example.com", timeout=15)
        await wait_until_consumer_idle(bus)
        assert await ledger.was_sent(str(event.event_id))
        assert len(mailbox.list()) == 1
    finally:
        await redis.aclose()


async def test_smtp_down_for_30_seconds_then_up_delivers_exactly_once(
    bus, smtp, mailbox, start_mailer
):
    start_mailer()  # SMTP_PORT: nothing listens there yet
    event = user_registered("patient@example.com")
    await bus.publish(event)
    published = time.monotonic()

    await asyncio.sleep(30)
    info = await bus.js.consumer_info(bus.stream("AUTH"), "mailer")
    assert info.num_redelivered >= 1  # it kept trying (nak with backoff) meanwhile
    assert info.num_ack_pending == 1  # and still holds the message: nothing lost
    await smtp.start()

    [message] = await wait_for_messages(mailbox, "patient@example.com", timeout=20)
    arrived_after = time.monotonic() - published
    await wait_until_consumer_idle(bus)
    assert len(mailbox.list()) == 1
    assert message.links == [event.activation_url]
    print(f"SMTP down 30 s: delivered {arrived_after:.1f}s after publishing")


async def test_redis_down_means_no_email_until_the_ledger_answers(
    bus, smtp, mailbox, start_mailer, settings, tmp_path
):
    """Without the ledger the mailer cannot know whether an event was sent: it sends
    nothing and retries; once Redis answers, the email goes out once. (A private
    redis-server on a free port plays the Redis that is down, then up.)"""
    redis_port = free_port()
    settings.redis_url = f"redis://127.0.0.1:{redis_port}/0"
    await smtp.start()
    start_mailer()
    event = user_registered("ledger-down@example.com")
    await bus.publish(event)

    await wait_until_async(
        lambda: _redelivered(bus), timeout=15, what="a retry while Redis is down"
    )
    assert mailbox.list() == []

    redis_server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        [message] = await wait_for_messages(mailbox, "ledger-down@example.com", timeout=20)
        await wait_until_consumer_idle(bus)
        assert len(mailbox.list()) == 1
        assert message.links == [event.activation_url]
    finally:
        redis_server.terminate()
        redis_server.wait(timeout=10)


async def _redelivered(bus) -> bool:
    info = await bus.js.consumer_info(bus.stream("AUTH"), "mailer")
    return info.num_redelivered >= 1


@pytest.mark.usefixtures("mailbox")
async def test_email_still_failing_after_the_give_up_window_becomes_a_dead_letter(
    bus, start_mailer, settings
):
    settings.retry_give_up_seconds = 2
    start_mailer()  # nothing listens on SMTP_PORT
    event = user_registered("unreachable@example.com")
    await bus.publish(event)

    redis = create_redis(settings)
    store = DeadLetterStore(redis, settings)
    try:
        [letter] = await wait_until_async(store.list, timeout=20, what="a dead letter")
        await wait_until_consumer_idle(bus)  # terminated, no longer redelivered
    finally:
        await redis.aclose()
    assert letter.kind == "expired"
    assert letter.event_id == str(event.event_id)
    assert letter.deliveries >= 2
    assert "still failing after 2s" in letter.reason
