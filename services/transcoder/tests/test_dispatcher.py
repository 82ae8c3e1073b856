"""The dispatcher against real NATS JetStream and Redis: events in, exactly one job out."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.jobs import Job, JobStatus
from redis.exceptions import ConnectionError as RedisConnectionError

from videoflix_shared.app import create_service_app
from videoflix_shared.bus import EventBus
from videoflix_shared.events import VideoDeleted, VideoUploaded
from videoflix_shared.tracing import continue_trace, parse_traceparent
from videoflix_testing.plugin import wait_until_async
from videoflix_transcoder import dispatcher
from videoflix_transcoder.queue import VideoMarks, transcode_job_id
from videoflix_transcoder.settings import TranscoderSettings

UPLOAD_TRACE = "0af7651916cd43dd8448eb211c80319c"
UPLOAD_TRACEPARENT = f"00-{UPLOAD_TRACE}-b7ad6b7169203331-01"


@pytest.fixture(scope="module")
def dispatch_settings(
    make_settings: Callable[..., TranscoderSettings], redis_prefix: str
) -> TranscoderSettings:
    # A queue of its own: no worker of the other tests takes these jobs.
    return make_settings(REDIS_KEY_PREFIX=f"{redis_prefix}dispatch:")


@pytest.fixture(scope="module")
async def running_dispatcher(dispatch_settings: TranscoderSettings) -> AsyncIterator[None]:
    app = create_service_app(service="transcoder-dispatcher", settings=dispatch_settings)
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(app, stop))
    yield
    stop.set()
    await asyncio.wait_for(task, timeout=15)


@pytest.fixture(scope="module")
async def arq_pool(dispatch_settings: TranscoderSettings) -> AsyncIterator[ArqRedis]:
    pool = await create_pool(
        RedisSettings.from_dsn(dispatch_settings.redis_url),
        default_queue_name=dispatch_settings.queue_name,
    )
    yield pool
    await pool.aclose()


async def consumer_is_idle(event_bus: EventBus) -> bool:
    assert event_bus.js is not None
    info = await event_bus.js.consumer_info(event_bus.stream("CATALOG"), dispatcher.DURABLE)
    return info.num_pending == 0 and info.num_ack_pending == 0


@pytest.mark.usefixtures("running_dispatcher")
async def test_redelivered_upload_event_queues_exactly_one_job_and_is_acked(
    dispatch_settings: TranscoderSettings,
    arq_pool: ArqRedis,
    event_bus: EventBus,
    video_id: int,
) -> None:
    uploaded = VideoUploaded(
        video_id=video_id, generation=1, source_path=f"uploads/{video_id}/source.mp4"
    )
    with continue_trace(UPLOAD_TRACEPARENT, name="upload"):  # as catalog's relay does
        await event_bus.publish(uploaded)
    # The catalog's outbox relay may publish again (new message, same video and generation).
    await event_bus.publish(uploaded.model_copy(update={"event_id": uuid.uuid4()}))
    job_id = transcode_job_id(dispatch_settings, video_id, 1)

    job = Job(job_id, arq_pool, _queue_name=dispatch_settings.queue_name)
    await wait_until_async(lambda: _status_is(job, JobStatus.queued), timeout=20, what="job queued")
    await wait_until_async(lambda: consumer_is_idle(event_bus), timeout=20, what="acks")

    queued = [j for j in await arq_pool.queued_jobs() if str(video_id) in (j.job_id or "")]
    assert [j.job_id for j in queued] == [job_id]
    kwargs = dict(queued[0].kwargs)
    job_trace = parse_traceparent(kwargs.pop("traceparent"))
    assert kwargs == {
        "video_id": video_id,
        "generation": 1,
        "source_path": f"uploads/{video_id}/source.mp4",
    }
    assert job_trace is not None
    assert job_trace.trace_id == UPLOAD_TRACE, "the job goes on in the upload's trace"
    assert job_id.startswith(dispatch_settings.redis_key_prefix)
    marks = VideoMarks(arq_pool, dispatch_settings)
    assert await marks.newest_generation(video_id) == 1


@pytest.mark.usefixtures("running_dispatcher")
async def test_new_generation_is_a_new_job_and_becomes_the_newest(
    dispatch_settings: TranscoderSettings,
    arq_pool: ArqRedis,
    event_bus: EventBus,
    video_id: int,
) -> None:
    for generation in (2, 1):  # out of order on purpose
        await event_bus.publish(
            VideoUploaded(video_id=video_id, generation=generation, source_path="uploads/x.mp4")
        )
    await wait_until_async(lambda: consumer_is_idle(event_bus), timeout=20, what="acks")

    queued = {j.job_id for j in await arq_pool.queued_jobs()}
    assert transcode_job_id(dispatch_settings, video_id, 1) in queued
    assert transcode_job_id(dispatch_settings, video_id, 2) in queued
    assert await VideoMarks(arq_pool, dispatch_settings).newest_generation(video_id) == 2


@pytest.mark.usefixtures("running_dispatcher")
async def test_deleted_event_removes_the_videos_media(
    dispatch_settings: TranscoderSettings,
    arq_pool: ArqRedis,
    event_bus: EventBus,
    video_id: int,
) -> None:
    media = dispatch_settings.media_root
    paths = [
        media / "hls" / str(video_id) / "480p" / "seg_00000.ts",
        media / "uploads" / str(video_id) / "source.mp4",
        media / "hls" / f".tmp-{video_id}-1-abcd" / "master.m3u8",
    ]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    neighbour = media / "hls" / str(video_id + 10_000) / "master.m3u8"
    neighbour.parent.mkdir(parents=True, exist_ok=True)
    neighbour.write_text("#EXTM3U\n")

    await event_bus.publish(VideoDeleted(video_id=video_id))

    await wait_until_async(
        lambda: not any(Path(p).exists() for p in (media / "hls" / str(video_id), paths[1])),
        timeout=20,
        what="media removed",
    )
    await wait_until_async(lambda: consumer_is_idle(event_bus), timeout=20, what="acks")
    assert not paths[2].parent.exists()
    assert neighbour.exists()
    assert await VideoMarks(arq_pool, dispatch_settings).is_deleted(video_id)


@pytest.mark.usefixtures("running_dispatcher")
async def test_malformed_message_is_dropped_without_blocking_the_next(
    dispatch_settings: TranscoderSettings,
    arq_pool: ArqRedis,
    event_bus: EventBus,
    video_id: int,
) -> None:
    await event_bus.publish_raw("catalog.video.uploaded", b'{"video_id": "nope"}', msg_id="bad-1")
    await event_bus.publish(VideoUploaded(video_id=video_id, source_path="uploads/y.mp4"))

    job = Job(
        transcode_job_id(dispatch_settings, video_id, 1),
        arq_pool,
        _queue_name=dispatch_settings.queue_name,
    )
    await wait_until_async(lambda: _status_is(job, JobStatus.queued), timeout=20, what="job")
    await wait_until_async(lambda: consumer_is_idle(event_bus), timeout=20, what="acks")


async def _status_is(job: Job, status: JobStatus) -> bool:
    return await job.status() == status


async def test_upload_event_stays_unacknowledged_while_redis_is_down(
    dispatch_settings: TranscoderSettings,
    arq_pool: ArqRedis,
    event_bus: EventBus,
    video_id: int,
) -> None:
    assert event_bus.js is not None
    await event_bus.publish(VideoUploaded(video_id=video_id, source_path="uploads/z.mp4"))
    subscription = await event_bus.js.pull_subscribe(
        event_bus.subject("catalog.video.uploaded"), stream=event_bus.stream("CATALOG")
    )
    messages = await subscription.fetch(1000, timeout=5)
    message = next(m for m in messages if f'"video_id":{video_id}' in m.data.decode())
    redis_down = ArqRedis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)

    with pytest.raises(RedisConnectionError):
        await dispatcher.CatalogEventHandler(settings=dispatch_settings, pool=redis_down)(
            message, "catalog.video.uploaded"
        )
    info = await subscription.consumer_info()
    assert info.num_ack_pending == len(messages)  # not acked: JetStream will redeliver it

    # Redis is back: the redelivered message queues the job and is acknowledged.
    await dispatcher.CatalogEventHandler(settings=dispatch_settings, pool=arq_pool)(
        message, "catalog.video.uploaded"
    )
    queued = {j.job_id for j in await arq_pool.queued_jobs()}
    assert transcode_job_id(dispatch_settings, video_id, 1) in queued
    await subscription.unsubscribe()
