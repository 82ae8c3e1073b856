"""Links travel sealed: the mailer opens them only to render the email, keeps them sealed in
dead letters, and turns a link it cannot open (tampered, moved from another event, sealed
with a key it does not hold, or forged in clear) into a dead letter with a reason instead of
mailing it or retrying it forever."""

from __future__ import annotations

import pytest

from videoflix_mailer.app import build_mailer
from videoflix_mailer.dead_letters import DeadLetterStore
from videoflix_mailer.settings import MailerSettings
from videoflix_shared.redis import create_redis
from videoflix_shared.sealing import MissingMailTokenKey, Sealer, new_key

from .conftest import RefusingHandler, user_registered, wait_for_messages, wait_until_consumer_idle


async def dead_letters(settings: MailerSettings) -> list:
    redis = create_redis(settings)
    try:
        return await DeadLetterStore(redis, settings).list()
    finally:
        await redis.aclose()


def flip_one_character(sealed: str) -> str:
    position = len(sealed) // 2
    replacement = "A" if sealed[position] != "A" else "B"
    return sealed[:position] + replacement + sealed[position + 1 :]


async def test_unopenable_links_become_dead_letters_with_a_reason_and_the_next_email_goes_out(
    bus, smtp, mailbox, start_mailer, settings
):
    await smtp.start()
    start_mailer()
    tampered = user_registered("tampered@example.com")
    sealed = bus.sealer.seal(tampered)
    payload = sealed.model_copy(
        update={"activation_url": flip_one_character(sealed.activation_url)}
    )
    await bus.publish_raw(tampered.subject, payload.model_dump_json().encode(), msg_id="tampered")

    # A sealed link copied into another event (the victim's address) does not open there.
    donor = bus.sealer.seal(user_registered("attacker@example.com"))
    moved = bus.sealer.seal(user_registered("victim@example.com")).model_copy(
        update={"activation_url": donor.activation_url}
    )
    await bus.publish_raw(moved.subject, moved.model_dump_json().encode(), msg_id="moved")

    other_key = Sealer.from_text(new_key()).seal(user_registered("other-key@example.com"))
    await bus.publish_raw(other_key.subject, other_key.model_dump_json().encode(), msg_id="key")

    # A link in clear never came from auth (it seals whenever it holds the key): forged.
    forged = user_registered("forged@example.com", activation_url="https://evil.example/x")
    await bus.publish_raw(forged.subject, forged.model_dump_json().encode(), msg_id="forged")

    good = user_registered("after-tampering@example.com")
    await bus.publish(good)
    [message] = await wait_for_messages(mailbox, "after-tampering@example.com")
    assert message.links == [good.activation_url]
    await wait_until_consumer_idle(bus)
    assert len(mailbox.list()) == 1  # nothing else was mailed

    letters = {letter.recipient: letter for letter in await dead_letters(settings)}
    assert set(letters) == {
        "tampered@example.com",
        "victim@example.com",
        "other-key@example.com",
        "forged@example.com",
    }
    assert {letter.kind for letter in letters.values()} == {"unsealable"}
    assert letters["tampered@example.com"].deliveries == 1  # dead at once, no retry loop
    assert "tampered or misplaced" in letters["tampered@example.com"].reason
    assert "tampered or misplaced" in letters["victim@example.com"].reason
    assert "does not hold" in letters["other-key@example.com"].reason
    assert "in clear" in letters["forged@example.com"].reason
    assert letters["tampered@example.com"].payload == payload.model_dump_json().encode()


async def test_dead_letter_keeps_the_link_sealed(bus, smtp, mailbox, start_mailer, settings):
    await smtp.start(RefusingHandler(mailbox, rcpt="550 5.1.1 no such mailbox"))
    start_mailer()
    event = user_registered("bounced-sealed@example.com")
    await bus.publish(event)
    await wait_until_consumer_idle(bus)

    [letter] = await dead_letters(settings)
    assert letter.kind == "rejected"
    token = event.activation_url.rpartition("token=")[2]
    assert token.encode() not in letter.payload
    assert event.activation_url.encode() not in letter.payload
    assert token not in letter.reason


async def test_previous_key_still_opens_links_during_a_rotation(
    bus, smtp, mailbox, start_mailer, mail_env
):
    await smtp.start()
    rotated = {
        "MAIL_TOKEN_KEY": new_key(),
        "MAIL_TOKEN_KEYS_PREVIOUS": f"{new_key()},{mail_env['MAIL_TOKEN_KEY']}",
    }
    start_mailer(MailerSettings(**{**mail_env, **rotated}))
    event = user_registered("rotated@example.com")
    await bus.publish(event)  # sealed with the old key, like an event auth made before
    [message] = await wait_for_messages(mailbox, "rotated@example.com")
    assert message.links == [event.activation_url]


async def test_mailer_refuses_to_start_in_production_without_a_key(mail_env):
    settings = MailerSettings(**{**mail_env, "ENVIRONMENT": "production", "MAIL_TOKEN_KEY": ""})
    with pytest.raises(MissingMailTokenKey, match="MAIL_TOKEN_KEY"):
        build_mailer(settings, redis=None)  # type: ignore[arg-type]
