"""The outbox relay and the event bus, against real PostgreSQL and NATS JetStream."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from videoflix_shared.bus import AUTH_STREAM_MAX_AGE_SECONDS, EventBus
from videoflix_shared.db import Base, create_engine, create_session_factory
from videoflix_shared.events import PasswordResetRequested, UserRegistered, parse_event
from videoflix_shared.outbox import OutboxMessage, OutboxRelay, add_event
from videoflix_shared.sealing import SEALED_VERSION, Sealer, new_key
from videoflix_shared.settings import CommonSettings
from videoflix_testing.plugin import NATS_URL, free_port, wait_until_async

SEALER = Sealer.from_text(new_key())


@pytest.fixture(scope="module")
async def session_factory(make_database):
    engine = create_engine(make_database("shared_outbox"))
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    factory = create_session_factory(engine)
    factory.configure(info={"outbox_sealer": SEALER})
    yield factory
    await engine.dispose()


@pytest.fixture(scope="module")
async def own_bus(run_id):
    """Streams of this module only: other suites of the same run publish auth events too."""
    bus = EventBus(url=NATS_URL, subject_prefix=f"vft{run_id}sh.", stream_prefix=f"VFT{run_id}SH_")
    await bus.connect(wait=False)
    yield bus
    await bus.delete_streams()
    await bus.close()


def registered(email: str = "new@example.com") -> UserRegistered:
    return UserRegistered(
        user_id=1,
        email=email,
        activation_url="http://x/activate",
        expires_at=datetime.now(UTC) + timedelta(hours=24),
    )


async def _collect(bus: EventBus, durable: str, want: int, timeout: float = 15) -> list:
    seen: list = []
    stop = asyncio.Event()

    async def handler(msg, subject):
        seen.append(parse_event(subject, msg.data))
        await msg.ack()
        if len(seen) >= want:
            stop.set()

    task = asyncio.create_task(
        bus.consume(
            stream="AUTH", durable=durable, filter_subject="auth.>", handler=handler, stop=stop
        )
    )
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout)
    stop.set()
    await task
    return seen


async def test_event_committed_with_state_is_published_once(session_factory, own_bus):
    event_bus = own_bus
    event = registered("once@example.com")
    async with session_factory() as session, session.begin():
        add_event(session, event)
    relay = OutboxRelay(session_factory, event_bus)
    assert await relay.publish_pending() >= 1
    # a second publish of the same row (e.g. a relay crash before marking) is dropped by JetStream
    await event_bus.publish(event)
    seen = await _collect(event_bus, f"t-{uuid.uuid4().hex[:6]}", want=2, timeout=1.5)
    assert [e.event_id for e in seen].count(event.event_id) == 1


async def test_rolled_back_transaction_publishes_nothing(session_factory):
    event = registered("rollback@example.com")

    async def change_state_and_fail() -> None:
        async with session_factory() as session, session.begin():
            add_event(session, event)
            await session.flush()
            raise RuntimeError("the state change failed")

    with pytest.raises(RuntimeError, match="the state change failed"):
        await change_state_and_fail()
    async with session_factory() as session:
        count = await session.scalar(select(func.count()).where(OutboxMessage.id == event.event_id))
    assert count == 0


async def test_events_wait_in_the_outbox_while_nats_is_down_then_go_out(
    session_factory, nats_names, tmp_path
):
    port = free_port()
    bus = EventBus(
        url=f"nats://127.0.0.1:{port}",
        **{k.lower().removeprefix("nats_"): v for k, v in nats_names.items()},
    )
    event = PasswordResetRequested(
        user_id=2,
        email="down@example.com",
        reset_url="http://x/reset",
        expires_at=datetime.now(UTC),
    )
    async with session_factory() as session, session.begin():
        add_event(session, event)
    relay = OutboxRelay(session_factory, bus, poll_interval=0.1)
    relay.start()
    connecting = asyncio.create_task(bus.connect())  # NATS is not there yet
    await asyncio.sleep(1.0)
    async with session_factory() as session:
        row = await session.get(OutboxMessage, event.event_id)
        assert row is not None
        assert row.published_at is None
    server = subprocess.Popen(
        ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(tmp_path)]
    )
    try:
        await asyncio.wait_for(connecting, 20)

        async def published() -> bool:
            async with session_factory() as session:
                return await session.get(OutboxMessage, event.event_id) is None

        await wait_until_async(published, timeout=20, what="outbox row published and deleted")
        seen = await _collect(bus, "after-outage", want=1)
        assert event.event_id in [e.event_id for e in seen]
    finally:
        await relay.stop()
        await bus.close()
        server.terminate()
        server.wait(10)


async def test_consumer_handler_failure_is_redelivered(own_bus):
    event_bus = own_bus
    event = registered("retry@example.com")
    await event_bus.publish(event)
    attempts: list[int] = []
    stop = asyncio.Event()

    async def flaky(msg, subject):
        if parse_event(subject, msg.data).event_id != event.event_id:
            await msg.ack()
            return
        attempts.append(msg.metadata.num_delivered)
        if len(attempts) == 1:
            raise RuntimeError("transient")
        await msg.ack()
        stop.set()

    task = asyncio.create_task(
        event_bus.consume(
            stream="AUTH",
            durable="flaky",
            filter_subject="auth.>",
            handler=flaky,
            retry_delay=0.2,
            stop=stop,
        )
    )
    await asyncio.wait_for(stop.wait(), 15)
    await task
    assert attempts == [1, 2]


async def test_connect_without_waiting_fails_fast_when_nats_is_unreachable():
    bus = EventBus(url=f"nats://127.0.0.1:{free_port()}")
    started = asyncio.get_running_loop().time()
    with pytest.raises(ConnectionError):
        await bus.connect(wait=False, attempt_timeout=2)
    assert asyncio.get_running_loop().time() - started < 5


async def test_published_rows_leave_the_outbox_and_mail_links_are_sealed_in_it(
    session_factory, own_bus
):
    event = registered("sealed-row@example.com")
    async with session_factory() as session, session.begin():
        add_event(session, event)
    async with session_factory() as session:
        row = await session.get(OutboxMessage, event.event_id)
        assert row.payload["version"] == SEALED_VERSION
        assert "http://x/activate" not in str(row.payload)
    assert await OutboxRelay(session_factory, own_bus).publish_pending() >= 1
    async with session_factory() as session:
        assert await session.get(OutboxMessage, event.event_id) is None
    [published] = [
        e
        for e in await _collect(own_bus, "sealed", want=50, timeout=1.5)
        if e.event_id == event.event_id
    ]
    assert SEALER.open(published).activation_url == "http://x/activate"


async def test_rows_an_older_relay_kept_after_publishing_are_purged(session_factory, own_bus):
    event = registered("kept@example.com")
    async with session_factory() as session, session.begin():
        add_event(session, event)
        await session.flush()
        (await session.get(OutboxMessage, event.event_id)).published_at = datetime.now(UTC)
    await OutboxRelay(session_factory, own_bus).purge_published()
    async with session_factory() as session:
        assert await session.get(OutboxMessage, event.event_id) is None


async def test_a_session_without_a_sealer_refuses_a_mail_event(make_database):
    engine = create_engine(make_database("shared_outbox_unsealed"))
    try:
        async with create_session_factory(engine)() as session:
            with pytest.raises(RuntimeError, match="outbox_sealer"):
                add_event(session, registered("clear@example.com"))
    finally:
        await engine.dispose()


async def test_auth_stream_keeps_events_hours_and_an_existing_stream_gets_it(run_id):
    names = {"subject_prefix": f"vft{run_id}age.", "stream_prefix": f"VFT{run_id}AGE_"}
    old = EventBus(url=NATS_URL, max_age={"AUTH": 14 * 24 * 3600}, **names)
    await old.connect(wait=False)
    try:
        info = await old.js.stream_info(old.stream("AUTH"))
        assert info.config.max_age == 14 * 24 * 3600  # as an older auth left it
        new = EventBus(url=NATS_URL, **names)  # today's default
        await new.connect(wait=False)
        await new.close()
        assert AUTH_STREAM_MAX_AGE_SECONDS == 6 * 3600
        info = await old.js.stream_info(old.stream("AUTH"))
        assert info.config.max_age == 6 * 3600
        other = await old.js.stream_info(old.stream("CATALOG"))
        assert other.config.max_age == 14 * 24 * 3600  # other streams keep their days

        configured = EventBus.from_settings(
            CommonSettings(
                NATS_URL=NATS_URL,
                NATS_SUBJECT_PREFIX=names["subject_prefix"],
                NATS_STREAM_PREFIX=names["stream_prefix"],
            ),
            max_age={"AUTH": 1800},  # what auth passes from AUTH_STREAM_MAX_AGE_SECONDS
        )
        await configured.connect(wait=False)
        await configured.close()
        info = await old.js.stream_info(old.stream("AUTH"))
        assert info.config.max_age == 1800
    finally:
        await old.delete_streams()
        await old.close()
