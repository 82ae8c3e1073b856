"""Real `videoflix-transcoder` processes: parallel workers, kill -9 mid-encode, SIGTERM."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from arq.connections import ArqRedis
from arq.jobs import Job

from videoflix_shared.bus import EventBus
from videoflix_shared.events import (
    TranscodeCompleted,
    TranscodeFailed,
    TranscodeProgress,
    VideoUploaded,
)
from videoflix_testing.plugin import wait_until_async
from videoflix_transcoder.dispatcher import CatalogEventHandler
from videoflix_transcoder.queue import transcode_job_id
from videoflix_transcoder.service import delete_video_media
from videoflix_transcoder.settings import TranscoderSettings
from videoflix_transcoder.worker import build_worker

from .conftest import Spawn, completed_events, new_video_id, place_upload

pytestmark = pytest.mark.slow

# Stands in for ffmpeg. The ladder encode (the run with -progress) of a job notes which
# process runs it ($PPID: the worker) and then waits until a second job's ladder encode has
# started too, before it runs the real ffmpeg. So each job can end only after the other
# began: both finish only when two jobs run at the same time. A job left alone for 120 s
# says so in an `alone.*` marker and goes on, so the test fails with a reason, not a hang.
BARRIER_FFMPEG = """#!/bin/sh
case " $* " in
  *" -progress "*)
    echo "$PPID" > "{barrier}/started.$$"
    waited=0
    while [ "$(ls "{barrier}" | grep -c '^started[.]')" -lt 2 ]; do
      waited=$((waited + 1))
      if [ "$waited" -gt 1200 ]; then echo "$PPID" > "{barrier}/alone.$$"; break; fi
      sleep 0.1
    done
    ;;
esac
exec ffmpeg "$@"
"""


def barrier_ffmpeg(directory: Path) -> Path:
    barrier = directory / "barrier"
    barrier.mkdir()
    script = directory / "ffmpeg-barrier.sh"
    script.write_text(BARRIER_FFMPEG.format(barrier=barrier))
    script.chmod(0o755)
    return script


def markers(directory: Path, kind: str) -> list[int]:
    """The worker pids that left a `<kind>.*` marker in the barrier directory."""
    return [int(p.read_text()) for p in sorted((directory / "barrier").glob(f"{kind}.*"))]


async def test_two_workers_transcode_two_uploads_at_the_same_time(
    spawn: Spawn,
    make_settings: Callable[..., TranscoderSettings],
    redis_prefix: str,
    arq_pool: ArqRedis,
    event_bus: EventBus,
    event_reader: Callable[..., object],
    make_clip: Callable[..., Path],
    tmp_path: Path,
) -> None:
    prefix = f"{redis_prefix}pair:"
    settings = make_settings(REDIS_KEY_PREFIX=prefix)
    ffmpeg = barrier_ffmpeg(tmp_path)
    spawn("dispatcher", redis_prefix=prefix)
    workers = [
        spawn("worker", redis_prefix=prefix, TRANSCODER_FFMPEG=str(ffmpeg)) for _ in range(2)
    ]
    clip = make_clip("pair.mp4", size="854x480", seconds=6)
    video_ids = [new_video_id(), new_video_id()]
    for video_id in video_ids:
        source_path = place_upload(settings.media_root, video_id, clip)
        await event_bus.publish(VideoUploaded(video_id=video_id, source_path=source_path))

    for video_id in video_ids:
        await wait_until_async(
            lambda v=video_id: completed_events(event_reader, v), timeout=240, what="completed"
        )

    results = [
        await Job(
            transcode_job_id(settings, v, 1), arq_pool, _queue_name=settings.queue_name
        ).result_info()
        for v in video_ids
    ]
    assert all(r is not None and r.success for r in results)
    # Each job waited for the other to start (no job went on alone), and each worker (one
    # job at a time, TRANSCODER_MAX_JOBS=1) ran one of them.
    assert markers(tmp_path, "alone") == []
    assert sorted(markers(tmp_path, "started")) == sorted(w.pid for w in workers)

    # SIGTERM: each worker stops promptly and cleanly.
    for worker in workers:
        worker.terminate()
    assert [worker.wait(timeout=15) for worker in workers] == [0, 0]


async def test_worker_killed_mid_encode_leaves_nothing_visible_and_the_video_still_completes(
    spawn: Spawn,
    make_settings: Callable[..., TranscoderSettings],
    redis_prefix: str,
    arq_pool: ArqRedis,
    event_reader: Callable[..., object],
    make_clip: Callable[..., Path],
    video_id: int,
) -> None:
    prefix = f"{redis_prefix}kill:"
    settings = make_settings(REDIS_KEY_PREFIX=prefix)
    # A slow preset so the kill surely lands in the middle of the encode.
    worker = spawn("worker", redis_prefix=prefix, TRANSCODER_X264_PRESET="medium")
    source_path = place_upload(
        settings.media_root, video_id, make_clip("long720.mp4", size="1280x720", seconds=20)
    )
    await CatalogEventHandler(settings=settings, pool=arq_pool).enqueue_transcode(
        VideoUploaded(video_id=video_id, source_path=source_path)
    )

    async def encoding() -> bool:
        events = await event_reader(video_id)
        return any(isinstance(e, TranscodeProgress) and e.percent < 90 for e in events)

    await wait_until_async(encoding, timeout=60, what="encode in progress")
    encoders = [p for p in psutil.Process(worker.pid).children() if p.name() == "ffmpeg"]
    assert encoders, "no ffmpeg under the worker"

    worker.kill()
    worker.wait(timeout=10)

    # ffmpeg dies with its worker, and no half-written output is visible.
    psutil.wait_procs(encoders, timeout=10)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in encoders)
    output = settings.media_root / "hls" / str(video_id)
    assert not output.exists()
    assert list((settings.media_root / "hls").glob(f".tmp-{video_id}-1-*"))

    spawn("worker", redis_prefix=prefix)  # the restarted worker takes the job over

    await wait_until_async(
        lambda: completed_events(event_reader, video_id), timeout=120, what="completed"
    )
    assert (output / "master.m3u8").is_file()
    assert not list((settings.media_root / "hls").glob(f".tmp-{video_id}-*"))
    result = await Job(
        transcode_job_id(settings, video_id, 1), arq_pool, _queue_name=settings.queue_name
    ).result_info()
    assert result is not None
    assert result.success
    assert result.job_try == 2


FILM_ENV = {
    "TRANSCODER_FILM_THRESHOLD_SECONDS": "10",
    "TRANSCODER_CHUNK_SECONDS": "6",
    "TRANSCODER_SEGMENT_SECONDS": "2",
}


async def queue_film(
    settings: TranscoderSettings, arq_pool: ArqRedis, make_clip: Callable[..., Path], video_id: int
) -> CatalogEventHandler:
    """Upload a 30 s 720p clip (a film of five chunks here) and queue it as the dispatcher does."""
    source_path = place_upload(
        settings.media_root, video_id, make_clip("film30.mp4", size="1280x720", seconds=30)
    )
    handler = CatalogEventHandler(settings=settings, pool=arq_pool)
    await handler.enqueue_transcode(VideoUploaded(video_id=video_id, source_path=source_path))
    return handler


async def running_chunk(
    arq_pool: ArqRedis, settings: TranscoderSettings, video_id: int
) -> str | None:
    """The id of a chunk job of the video that a worker is running now."""
    for raw in await arq_pool.zrange(settings.queue_name, 0, -1):
        job_id = raw.decode()
        if f":{video_id}:1:chunk:" in job_id and await arq_pool.exists(f"arq:in-progress:{job_id}"):
            return job_id
    return None


async def test_worker_killed_mid_chunk_costs_only_that_chunk(
    spawn: Spawn,
    make_settings: Callable[..., TranscoderSettings],
    redis_prefix: str,
    arq_pool: ArqRedis,
    event_reader: Callable[..., object],
    make_clip: Callable[..., Path],
    video_id: int,
) -> None:
    prefix = f"{redis_prefix}filmkill:"
    settings = make_settings(REDIS_KEY_PREFIX=prefix, **FILM_ENV)
    env = {**FILM_ENV, "TRANSCODER_X264_PRESET": "medium"}  # slow: the kill lands mid-chunk
    worker = spawn("worker", redis_prefix=prefix, **env)
    await queue_film(settings, arq_pool, make_clip, video_id)
    work = settings.media_root / "hls" / f".film-{video_id}-1"

    async def a_later_chunk_running() -> str | None:
        if not list(work.glob("480p/chunk_*.mp4")):
            return None  # at least one chunk finished before the kill
        return await running_chunk(arq_pool, settings, video_id)

    killed_job = await wait_until_async(a_later_chunk_running, timeout=120, what="chunk running")
    worker.kill()
    worker.wait(timeout=10)
    assert list(work.glob("*/chunk_*.mp4"))  # some chunks had finished before the kill

    spawn("worker", redis_prefix=prefix, **env)
    await wait_until_async(
        lambda: completed_events(event_reader, video_id), timeout=300, what="completed"
    )
    output = settings.media_root / "hls" / str(video_id)
    assert (output / "720p" / "index.m3u8").is_file()
    # Only the chunk that was running ran again; what had finished was kept.
    killed = await Job(killed_job, arq_pool, _queue_name=settings.queue_name).result_info()
    assert killed is not None
    assert killed.success
    assert killed.job_try == 2
    first = await Job(
        f"{transcode_job_id(settings, video_id, 1)}:chunk:0:g0",
        arq_pool,
        _queue_name=settings.queue_name,
    ).result_info()
    assert first is not None
    assert first.job_try == 1
    assert not work.exists()  # removed after the last assembly


async def test_deleting_a_film_mid_chunk_cancels_its_remaining_jobs(
    spawn: Spawn,
    make_settings: Callable[..., TranscoderSettings],
    redis_prefix: str,
    arq_pool: ArqRedis,
    event_reader: Callable[..., object],
    make_clip: Callable[..., Path],
    video_id: int,
) -> None:
    prefix = f"{redis_prefix}filmdel:"
    settings = make_settings(REDIS_KEY_PREFIX=prefix, **FILM_ENV)
    spawn("worker", redis_prefix=prefix, **FILM_ENV, TRANSCODER_X264_PRESET="medium")
    handler = await queue_film(settings, arq_pool, make_clip, video_id)
    await wait_until_async(
        lambda: running_chunk(arq_pool, settings, video_id), timeout=120, what="chunk running"
    )

    await delete_video_media(settings=settings, marks=handler.marks, video_id=video_id)

    async def queue_empty() -> bool:
        return await arq_pool.zcard(settings.queue_name) == 0

    await wait_until_async(queue_empty, timeout=30, what="remaining chunk jobs cancelled")
    hls = settings.media_root / "hls"
    assert not (hls / str(video_id)).exists()
    assert not list(hls.glob(f".film-{video_id}-*"))
    events = await event_reader(video_id)  # type: ignore[operator]
    assert not [e for e in events if isinstance(e, TranscodeCompleted | TranscodeFailed)]


async def test_a_job_claimed_by_a_worker_that_dies_before_running_it_is_free_within_the_lease(
    make_settings: Callable[..., TranscoderSettings], redis_prefix: str, arq_pool: ArqRedis
) -> None:
    """arq marks a job in progress before the job function (and its lease) starts; a worker
    killed in that moment must hold the job no longer than the lease, not for arq's job
    timeout (seen under load: a film's chunk never ran again after kill -9)."""
    settings = make_settings(REDIS_KEY_PREFIX=f"{redis_prefix}claim{new_video_id()}:")
    job = await arq_pool.enqueue_job(
        "film_chunk", video_id=1, generation=1, chunk=0, group=0, _queue_name=settings.queue_name
    )
    assert job is not None
    worker = build_worker(settings, arq_pool, EventBus(url=settings.nats_url))

    async def dies_before_the_function_runs(_job_id: str, _score: int) -> None:
        return None

    worker.run_job = dies_before_the_function_runs  # type: ignore[method-assign]
    await worker.start_jobs([job.job_id.encode()])
    claim = f"arq:in-progress:{job.job_id}"
    assert await arq_pool.exists(claim)  # claimed, as arq does before running anything
    assert 0 < await arq_pool.pttl(claim) <= settings.job_lease_seconds * 1000
    await wait_until_async(
        lambda: _claim_gone(arq_pool, claim), timeout=settings.job_lease_seconds + 2, what="free"
    )


async def _claim_gone(redis: ArqRedis, key: str) -> bool:
    return not await redis.exists(key)
