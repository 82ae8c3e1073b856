"""Least privilege on NATS: each process's user may publish only its own events and read
only the streams it consumes (videoflix_shared.access), against a private nats-server
running the generated users (the shared server on 4222 accepts anyone)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from videoflix_shared.access import PRINCIPALS, render_nats_authorization
from videoflix_shared.bus import EventBus
from videoflix_shared.events import (
    TranscodeProgress,
    UserRegistered,
    VideoAccessChanged,
    VideoUploaded,
    parse_event,
)
from videoflix_testing.plugin import free_port, wait_until, wait_until_async

NATS_SERVER = "/usr/sbin/nats-server"
SUBJECT_PREFIX = "vfperm."  # prefixed like a test run's, to prove the rules follow prefixes
STREAM_PREFIX = "VFPERM_"
OTHERS_THAN_MAILER = ("auth", "catalog", "streaming", "transcoder-dispatcher", "transcoder-worker")


class SecuredNats:
    """A private nats-server whose only users are the principals, with their permissions."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.passwords = {p.name: secrets.token_hex(16) for p in PRINCIPALS if p.uses_nats}
        self.operator_password = secrets.token_hex(16)
        users = render_nats_authorization(
            self.passwords, subject_prefix=SUBJECT_PREFIX, stream_prefix=STREAM_PREFIX
        )
        # plus an operator with every right (what `nats stream rm` runs as), for the tests
        # that delete streams and consumers under the services' feet
        operator = f'    {{ user: "operator", password: "{self.operator_password}" }}\n'
        users = users.replace("  users = [\n", "  users = [\n" + operator, 1)
        config = directory / "nats.conf"
        config.write_text(
            f'listen: "127.0.0.1:{self.port}"\n'
            f"jetstream {{ store_dir: {json.dumps(str(directory / 'js'))} }}\n" + users
        )
        self.process = subprocess.Popen(
            [NATS_SERVER, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until(lambda: self._answers(), timeout=15, what="secured nats-server")

    def _answers(self) -> bool:
        import socket

        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
            return True

    def bus(self, name: str, *, password: str | None = None) -> EventBus:
        return EventBus(
            url=self.url,
            subject_prefix=SUBJECT_PREFIX,
            stream_prefix=STREAM_PREFIX,
            principal=name,
            user=name,
            password=self.passwords[name] if password is None else password,
            check_interval=0.3,
        )

    async def operator(self) -> EventBus:
        bus = EventBus(
            url=self.url,
            subject_prefix=SUBJECT_PREFIX,
            stream_prefix=STREAM_PREFIX,
            user="operator",
            password=self.operator_password,
            check_interval=0,
        )
        await bus.connect(wait=False)
        return bus

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredNats]:
    server = SecuredNats(tmp_path_factory.mktemp("secured-nats"))
    yield server
    server.stop()


@pytest.fixture
async def connect(nats_server: SecuredNats) -> AsyncIterator[Callable[[str], Awaitable[EventBus]]]:
    """Connects as a principal (provisioning the streams it owns); closes them after."""
    opened: list[EventBus] = []

    async def as_principal(name: str) -> EventBus:
        bus = nats_server.bus(name)
        await asyncio.wait_for(bus.connect(wait=False), 10)
        opened.append(bus)
        return bus

    yield as_principal
    for bus in opened:
        await bus.close()


def registration() -> UserRegistered:
    return UserRegistered(
        user_id=7,
        email="admin@example.com",
        activation_url=f"http://x/activate/{uuid.uuid4().hex}",
        expires_at=datetime.now(UTC) + timedelta(hours=1),
    )


async def stored(bus: EventBus, stream: str) -> int:
    """How many messages `stream` holds, asked by its owner's bus."""
    assert bus.js is not None
    return (await bus.js.stream_info(bus.stream(stream))).state.messages


async def test_a_service_cannot_publish_another_services_events(connect) -> None:
    auth, catalog = await connect("auth"), await connect("catalog")
    worker = await connect("transcoder-worker")
    before_auth, before_catalog = await stored(auth, "AUTH"), await stored(catalog, "CATALOG")

    forged = (registration(), VideoUploaded(video_id=1, source_path="uploads/1/source.mp4"))
    attempts = [worker.publish(event, timeout=1) for event in forged]
    for name in ("mailer", "streaming", "transcoder-dispatcher", "catalog"):
        attempts.append((await connect(name)).publish(registration(), timeout=1))
    outcomes = await asyncio.gather(*attempts, return_exceptions=True)
    # refused: the server drops the message, so no JetStream ack ever comes
    assert all(isinstance(outcome, Exception) for outcome in outcomes), outcomes

    assert await stored(auth, "AUTH") == before_auth
    assert await stored(catalog, "CATALOG") == before_catalog
    # its own events still go out
    await worker.publish(TranscodeProgress(video_id=1, generation=1, percent=5))
    assert await stored(worker, "TRANSCODER") >= 1


async def test_only_the_mailer_reads_the_auth_stream(connect) -> None:
    auth = await connect("auth")
    event = registration()
    await auth.publish(event)

    others = [await connect(name) for name in OTHERS_THAN_MAILER]
    refused = await asyncio.gather(*(_try_reading_auth(bus, event) for bus in others))
    assert refused == [3] * len(OTHERS_THAN_MAILER)

    mailer = await connect("mailer")
    received = await _consume_one(mailer)
    assert received == event


async def test_no_other_service_sees_auth_messages_on_the_wire(connect) -> None:
    """Plain subscriptions to auth subjects or to anyone's inbox (where the mailer's pull
    batches arrive) deliver nothing to the others, while the mailer consumes."""
    spies = [await connect(name) for name in OTHERS_THAN_MAILER]
    overheard: list[Msg] = []

    async def overhear(msg: Msg) -> None:
        overheard.append(msg)

    for spy in spies:
        assert spy.nc is not None
        for subject in (spy.subject("auth.>"), "_INBOX.>", "_INBOX_mailer.>", ">"):
            with contextlib.suppress(Exception):
                await spy.nc.subscribe(subject, cb=overhear)
        with contextlib.suppress(Exception):
            await spy.nc.flush(timeout=2)

    auth, mailer = await connect("auth"), await connect("mailer")
    event = registration()
    await auth.publish(event)
    assert await _consume_one(mailer, want=event.event_id) == event
    await asyncio.sleep(0.5)
    assert [m.subject for m in overheard] == []


async def test_a_wrong_password_is_refused(nats_server: SecuredNats) -> None:
    bus = nats_server.bus("mailer", password="guessed")
    with pytest.raises(ConnectionError):
        await bus.connect(wait=False, attempt_timeout=3)
    await bus.close()


async def _try_reading_auth(bus: EventBus, event: UserRegistered) -> int:
    """How many of three ways to read the AUTH stream are refused (no answer comes)."""
    assert bus.js is not None
    attempts = [
        bus.js.pull_subscribe(bus.subject("auth.>"), durable=durable, stream=bus.stream("AUTH"))
        for durable in ("mailer", "spy")
    ]
    attempts.append(bus.js.get_last_msg(bus.stream("AUTH"), bus.subject(event.subject)))
    refused = 0
    for attempt in attempts:
        try:
            await asyncio.wait_for(attempt, 2)
        except Exception:
            refused += 1
    return refused


async def _consume_one(mailer: EventBus, want: uuid.UUID | None = None) -> UserRegistered:
    """Runs the mailer's durable consumer (pull, in-progress, ack) until it got `want`."""
    got: list = []
    stop = asyncio.Event()

    async def handler(msg: Msg, subject: str) -> None:
        await msg.in_progress()
        event = parse_event(subject, msg.data)
        await msg.ack()
        if want is None or event.event_id == want:
            got.append(event)
            stop.set()

    task = asyncio.create_task(
        mailer.consume(
            stream="AUTH", durable="mailer", filter_subject="auth.>", handler=handler, stop=stop
        )
    )
    try:
        await wait_until_async(lambda: got, timeout=15, what="the mailer's delivery")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert mailer.js is not None
    info = await mailer.js.consumer_info(mailer.stream("AUTH"), "mailer")
    assert info.num_ack_pending == 0  # its acks are allowed through
    return got[0]


async def test_streaming_replays_playback_states_from_access_but_reads_nothing_else(
    connect,
) -> None:
    """The rights of the catalog -> streaming flow: an ephemeral pull consumer of its own on
    ACCESS (last message per video), and no consumer on CATALOG or AUTH."""
    catalog, streaming = await connect("catalog"), await connect("streaming")
    assert streaming.js is not None
    await catalog.publish(VideoAccessChanged(video_id=5, published=True, ready=True))
    await catalog.publish(VideoAccessChanged(video_id=5, published=False, ready=True))
    sub = await streaming.js.pull_subscribe(
        streaming.subject("access.video.*"),
        stream=streaming.stream("ACCESS"),
        config=ConsumerConfig(
            ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.LAST_PER_SUBJECT
        ),
    )
    [msg] = await sub.fetch(1, timeout=5)
    state = parse_event(streaming.unprefixed(msg.subject), msg.data)
    assert (state.video_id, state.published) == (5, False), "the last state per video"
    await sub.unsubscribe()
    for stream, subjects in (("CATALOG", "catalog.video.>"), ("AUTH", "auth.>")):
        with pytest.raises(TimeoutError):  # refused: no answer to the consumer creation
            await asyncio.wait_for(
                streaming.js.subscribe(
                    streaming.subject(subjects),
                    stream=streaming.stream(stream),
                    ordered_consumer=True,
                ),
                3,
            )
    with pytest.raises(TimeoutError):  # refused: only catalog announces playback states
        await asyncio.wait_for(
            streaming.publish(VideoAccessChanged(video_id=6, published=True, ready=True)), 3
        )


async def test_catalog_reads_back_the_playback_states_it_announced(connect) -> None:
    """Catalog's start-up reconciliation (videoflix_catalog.events.announced_access) reads
    the last state per video of its own ACCESS stream with an ephemeral consumer."""
    catalog = await connect("catalog")
    assert catalog.js is not None
    await catalog.publish(VideoAccessChanged(video_id=8, published=True, ready=True))
    sub = await asyncio.wait_for(
        catalog.js.pull_subscribe(
            catalog.subject("access.video.*"),
            stream=catalog.stream("ACCESS"),
            config=ConsumerConfig(
                ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.LAST_PER_SUBJECT
            ),
        ),
        5,
    )
    messages = await sub.fetch(10, timeout=5)
    states = [parse_event(catalog.unprefixed(m.subject), m.data) for m in messages]
    assert any(s.video_id == 8 and s.published for s in states)
    await sub.unsubscribe()


async def test_lost_streams_and_consumers_come_back_within_the_services_own_rights(
    connect, nats_server: SecuredNats
) -> None:
    """The operator deletes catalog's CATALOG stream and the dispatcher's durable consumer:
    catalog re-creates the stream, the dispatcher its consumer (telling the new stream
    from the old by its STREAM.INFO right), and the next upload event reaches it."""
    catalog, dispatcher = await connect("catalog"), await connect("transcoder-dispatcher")
    got: list[int] = []
    stop = asyncio.Event()

    async def handler(msg: Msg, subject: str) -> None:
        event = parse_event(subject, msg.data)
        await msg.ack()
        if isinstance(event, VideoUploaded):
            got.append(event.video_id)

    consuming = asyncio.create_task(
        dispatcher.consume(
            stream="CATALOG",
            durable="transcoder-dispatcher",
            filter_subject="catalog.video.>",
            handler=handler,
            stop=stop,
        )
    )
    operator = await nats_server.operator()
    try:
        await catalog.publish(VideoUploaded(video_id=101, source_path="uploads/101/source.mp4"))
        await wait_until_async(lambda: 101 in got, timeout=15, what="first upload event")
        assert operator.js is not None
        stream = operator.stream("CATALOG")
        await operator.js.delete_consumer(stream, "transcoder-dispatcher")
        await operator.js.delete_stream(stream)
        await wait_until_async(
            lambda: _exists(operator, stream), timeout=15, what="CATALOG re-created by catalog"
        )
        await catalog.publish(VideoUploaded(video_id=102, source_path="uploads/102/source.mp4"))
        await wait_until_async(lambda: 102 in got, timeout=20, what="upload event after the loss")
        assert got.count(101) == 1  # the new stream holds 102 only
    finally:
        stop.set()
        await asyncio.wait_for(consuming, 10)
        await operator.close()


async def _exists(bus: EventBus, stream: str) -> bool:
    assert bus.js is not None
    try:
        await bus.js.stream_info(stream)
    except Exception:
        return False
    return True
