"""Events that carry state rather than history (`VideoAccessChanged` on `access.video.<id>`):
one subject per key, a stream that keeps only the latest message per subject for good, and
an outbox that publishes them in the order they were committed."""

from __future__ import annotations

import uuid

import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from sqlalchemy import func, select

from videoflix_shared.bus import EventBus
from videoflix_shared.db import Base, create_engine, create_session_factory
from videoflix_shared.events import VideoAccessChanged, VideoDeleted, parse_event
from videoflix_shared.outbox import RELAY_LOCK_KEY, OutboxRelay, add_event
from videoflix_testing.plugin import NATS_URL


@pytest.fixture(scope="module")
async def session_factory(make_database):
    engine = create_engine(make_database("shared_state_events"))
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield create_session_factory(engine)
    await engine.dispose()


@pytest.fixture(scope="module")
async def bus(run_id):
    bus = EventBus(url=NATS_URL, subject_prefix=f"vft{run_id}st.", stream_prefix=f"VFT{run_id}ST_")
    await bus.connect(wait=False)
    yield bus
    await bus.delete_streams()
    await bus.close()


def access(video_id: int, *, published: bool, ready: bool = True) -> VideoAccessChanged:
    return VideoAccessChanged(video_id=video_id, published=published, ready=ready)


async def latest_per_video(bus: EventBus) -> dict[int, VideoAccessChanged]:
    """What a streaming process replays: the last announcement of every video."""
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.LAST_PER_SUBJECT
    )
    sub = await bus.js.pull_subscribe(
        bus.subject("access.video.*"), stream=bus.stream("ACCESS"), config=config
    )
    found: dict[int, VideoAccessChanged] = {}
    pending = (await sub.consumer_info()).num_pending
    while pending:
        for msg in await sub.fetch(min(pending, 100), timeout=5):
            event = parse_event(bus.unprefixed(msg.subject), msg.data)
            found[event.video_id] = event
            pending = msg.metadata.num_pending
    await sub.unsubscribe()
    return found


def test_a_per_video_event_is_published_on_its_own_subject_and_parsed_back():
    event = access(42, published=True)
    assert VideoAccessChanged.subject == "access.video.*"
    assert event.publish_subject == "access.video.42"
    assert parse_event("access.video.42", event.model_dump_json().encode()) == event
    assert VideoDeleted(video_id=1).publish_subject == "catalog.video.deleted"


@pytest.mark.parametrize("subject", ["access.video.43", "access.video.", "access.video.42.x"])
def test_a_payload_on_another_videos_subject_is_refused(subject):
    with pytest.raises(ValueError, match=r"VideoAccessChanged for|no event type"):
        parse_event(subject, access(42, published=True).model_dump_json().encode())


async def test_the_access_stream_keeps_the_last_state_per_video_and_never_ages_it(bus):
    info = await bus.js.stream_info(bus.stream("ACCESS"))
    assert info.config.max_msgs_per_subject == 1
    assert not info.config.max_age  # 0: kept until replaced
    for published in (True, False, True, False):
        await bus.publish(access(7, published=published))
    await bus.publish(access(8, published=True))
    states = await latest_per_video(bus)
    assert states[7].published is False
    assert states[8].published is True
    info = await bus.js.stream_info(bus.stream("ACCESS"))
    assert info.state.messages == 2


async def test_only_one_relay_publishes_at_a_time_so_events_keep_their_order(session_factory, bus):
    video_id = 900 + uuid.uuid4().int % 1000
    async with session_factory() as session, session.begin():
        for published in (True, False, True, False):
            add_event(session, access(video_id, published=published))
    relay = OutboxRelay(session_factory, bus, batch_size=1)  # one row per batch: max overlap
    async with session_factory() as holder, holder.begin():
        # Another relay (another catalog process) is mid-batch: this one must not overtake it.
        assert await holder.scalar(select(func.pg_try_advisory_xact_lock(RELAY_LOCK_KEY)))
        assert await relay.publish_pending() == 0
    while await relay.publish_pending():
        pass
    assert (await latest_per_video(bus))[video_id].published is False
