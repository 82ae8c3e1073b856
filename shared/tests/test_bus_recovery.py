"""Lost and found on JetStream: a stream or a durable consumer deleted by an operator (with
the JetStream management API, as `nats stream rm` does) while publisher and consumer run
is re-created without a restart and events flow again; and the bus's gauges tell the
connection and the consumer's backlog."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from nats.aio.msg import Msg
from prometheus_client import REGISTRY

from videoflix_shared.bus import DurableConsumer, EventBus
from videoflix_shared.events import VideoDeleted, parse_event
from videoflix_testing.plugin import NATS_URL, wait_until_async

CHECK_SECONDS = 0.3


@pytest.fixture
async def names(run_id: str) -> dict[str, str]:
    tag = uuid.uuid4().hex[:6]
    return {
        "subject_prefix": f"vft{run_id}rc{tag}.",
        "stream_prefix": f"VFT{run_id}RC{tag.upper()}_",
    }


@pytest.fixture
async def open_bus(names: dict[str, str]) -> AsyncIterator[Callable[..., EventBus]]:
    """Buses on this test's own streams (connected by the test), closed and cleaned after."""
    opened: list[EventBus] = []

    def factory(**kwargs: object) -> EventBus:
        bus = EventBus(url=NATS_URL, **{"check_interval": CHECK_SECONDS, **names, **kwargs})
        opened.append(bus)
        return bus

    yield factory
    for bus in opened:  # first, so that no owner re-creates what the cleanup deletes
        await bus.close()
    cleanup = EventBus(url=NATS_URL, check_interval=0, **names)
    await cleanup.connect(wait=False)
    await cleanup.delete_streams()
    await cleanup.close()


class Handled:
    """A durable consumer of CATALOG running in the background; the video ids it handled."""

    def __init__(self, bus: EventBus, durable: str) -> None:
        self.video_ids: list[int] = []
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(
            bus.consume(
                stream="CATALOG",
                durable=durable,
                filter_subject="catalog.>",
                handler=self.handle,
                stop=self.stop,
            )
        )

    async def handle(self, msg: Msg, subject: str) -> None:
        event = parse_event(subject, msg.data)
        assert isinstance(event, VideoDeleted)
        self.video_ids.append(event.video_id)
        await msg.ack()

    async def wait_for(self, video_id: int) -> None:
        await wait_until_async(
            lambda: video_id in self.video_ids, timeout=20, what=f"video {video_id} handled"
        )

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 10)


async def test_a_deleted_stream_is_recreated_by_its_owner_and_consumers_carry_on(open_bus):
    # the reader owns no stream (the dispatcher's principal): only the owner re-creates
    owner, reader = open_bus(), open_bus(principal="transcoder-dispatcher")
    operator = open_bus(check_interval=0)
    for bus in (owner, reader, operator):
        await bus.connect(wait=False)
    recreated: list[str] = []

    async def note(stream: str) -> None:
        recreated.append(stream)

    owner.on_stream_recreated(note)
    handled = Handled(reader, "lost-stream")
    try:
        await owner.publish(VideoDeleted(video_id=1))
        await handled.wait_for(1)

        assert operator.js is not None
        await operator.js.delete_stream(operator.stream("CATALOG"))
        await wait_until_async(lambda: "CATALOG" in recreated, timeout=10, what="re-creation")
        await operator.js.stream_info(operator.stream("CATALOG"))  # there again

        await owner.publish(VideoDeleted(video_id=2))
        await handled.wait_for(2)  # the consumer came back on the new stream, from its start
        assert handled.video_ids == [1, 2]
    finally:
        await handled.close()


async def test_a_deleted_consumer_is_recreated_where_it_stood(open_bus):
    owner, reader = open_bus(), open_bus(principal="transcoder-dispatcher")
    operator = open_bus(check_interval=0)
    for bus in (owner, reader, operator):
        await bus.connect(wait=False)
    handled = Handled(reader, "lost-consumer")
    try:
        for video_id in (1, 2):
            await owner.publish(VideoDeleted(video_id=video_id))
        await handled.wait_for(2)
        await asyncio.sleep(2.5)  # a check (after a fetch of up to 1 s) saw both acknowledged

        assert operator.js is not None
        await operator.js.delete_consumer(operator.stream("CATALOG"), "lost-consumer")
        await owner.publish(VideoDeleted(video_id=3))
        await handled.wait_for(3)
        info = await operator.js.consumer_info(operator.stream("CATALOG"), "lost-consumer")
        assert info.num_ack_pending == 0
        # after the acknowledged ones: nothing handled twice
        assert handled.video_ids == [1, 2, 3]
    finally:
        await handled.close()


async def test_a_publish_into_a_deleted_stream_recreates_it_at_once(open_bus):
    owner, operator = open_bus(check_interval=0), open_bus(check_interval=0)
    await owner.connect(wait=False)
    await operator.connect(wait=False)
    assert operator.js is not None
    await operator.js.delete_stream(operator.stream("CATALOG"))

    await owner.publish(VideoDeleted(video_id=9))  # no watchdog: the publish itself recovers

    info = await operator.js.stream_info(operator.stream("CATALOG"))
    assert info.state.messages == 1


async def test_the_consumer_check_exports_pending_and_redelivered_messages(open_bus):
    owner = open_bus(check_interval=0)
    await owner.connect(wait=False)
    stop = asyncio.Event()
    consumer = DurableConsumer(
        owner,
        stream="CATALOG",
        durable="backlog",
        filter_subject="catalog.>",
        ack_wait=30,
        max_deliver=-1,
    )
    assert await consumer.subscribe(stop)
    for video_id in (1, 2, 3, 4):
        await owner.publish(VideoDeleted(video_id=video_id))
    [first] = await consumer.fetch(1, stop)
    await first.nak()
    fetched = [first]
    while fetched[-1].metadata.num_delivered < 2:  # until the nak'ed one comes again
        fetched += await consumer.fetch(1, stop)
    delivered = {msg.metadata.sequence.stream for msg in fetched}  # none acknowledged

    await consumer.check(stop)

    labels = {"stream": owner.stream("CATALOG"), "consumer": "backlog"}
    pending = REGISTRY.get_sample_value("videoflix_jetstream_consumer_pending_messages", labels)
    redelivered = REGISTRY.get_sample_value(
        "videoflix_jetstream_consumer_redelivered_messages", labels
    )
    assert (pending, redelivered) == (4 - len(delivered), 1)


async def test_the_connection_gauge_follows_the_bus(open_bus):
    bus = open_bus(principal="catalog", check_interval=0)

    def connected() -> float | None:
        return REGISTRY.get_sample_value("videoflix_nats_connected", {"service": "catalog"})

    assert connected() == 0
    await bus.connect(wait=False)
    assert connected() == 1
    await bus.close()
    assert connected() == 0
