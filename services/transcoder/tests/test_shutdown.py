"""SIGTERM to a real `videoflix-transcoder worker` in the middle of a job: what Kubernetes
does on every scale-down and rolling update. The job either finishes within
TRANSCODER_SHUTDOWN_GRACE_SECONDS or goes back to the queue without using up an attempt;
nothing is lost either way."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, result_key_prefix, retry_key_prefix
from arq.jobs import Job

from videoflix_shared.events import TranscodeFailed, TranscodeProgress, VideoUploaded
from videoflix_testing.plugin import wait_until_async
from videoflix_transcoder.dispatcher import CatalogEventHandler
from videoflix_transcoder.queue import transcode_job_id
from videoflix_transcoder.settings import TranscoderSettings

from .conftest import Spawn, completed_events, new_video_id, place_upload

pytestmark = pytest.mark.slow


async def queue_upload(
    settings: TranscoderSettings, arq_pool: ArqRedis, clip: Path, video_id: int
) -> str:
    """Queue the transcode of `clip` as the dispatcher does; returns the arq job id."""
    source_path = place_upload(settings.media_root, video_id, clip)
    await CatalogEventHandler(settings=settings, pool=arq_pool).enqueue_transcode(
        VideoUploaded(video_id=video_id, source_path=source_path)
    )
    return transcode_job_id(settings, video_id, 1)


async def wait_for_encode(read: Callable[..., Any], video_id: int) -> None:
    async def encoding() -> bool:
        events = await read(video_id)
        return any(isinstance(e, TranscodeProgress) and e.percent < 90 for e in events)

    await wait_until_async(encoding, timeout=90, what="encode in progress")


async def test_sigterm_mid_encode_hands_the_job_back_without_using_an_attempt(
    spawn: Spawn,
    make_settings: Callable[..., TranscoderSettings],
    redis_prefix: str,
    arq_pool: ArqRedis,
    event_reader: Callable[..., Any],
    make_clip: Callable[..., Path],
    video_id: int,
) -> None:
    prefix = f"{redis_prefix}handback:"
    # One attempt only: had the stop cost one, the next worker would fail the video.
    settings = make_settings(REDIS_KEY_PREFIX=prefix, TRANSCODER_MAX_ATTEMPTS="1")
    worker = spawn(
        "worker",
        redis_prefix=prefix,
        TRANSCODER_MAX_ATTEMPTS="1",
        TRANSCODER_X264_PRESET="medium",  # slow: the signal surely lands mid-encode
        TRANSCODER_SHUTDOWN_GRACE_SECONDS="0",
    )
    clip = make_clip("handback720.mp4", size="1280x720", seconds=20)
    job_id = await queue_upload(settings, arq_pool, clip, video_id)
    await wait_for_encode(event_reader, video_id)
    encoders = [p for p in psutil.Process(worker.pid).children() if p.name() == "ffmpeg"]
    assert encoders, "no ffmpeg under the worker"

    worker.terminate()
    assert worker.wait(timeout=30) == 0

    psutil.wait_procs(encoders, timeout=10)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in encoders)
    hls = settings.media_root / "hls"
    assert not (hls / str(video_id)).exists()
    assert not list(hls.glob(f".tmp-{video_id}-*")), "the cancelled encode left its output"
    # Back in the queue, not running, no result, and its try given back.
    assert await arq_pool.zscore(settings.queue_name, job_id) is not None
    assert not await arq_pool.exists(in_progress_key_prefix + job_id)
    assert not await arq_pool.exists(result_key_prefix + job_id)
    assert int(await arq_pool.get(retry_key_prefix + job_id)) == 0

    spawn("worker", redis_prefix=prefix, TRANSCODER_MAX_ATTEMPTS="1")
    await wait_until_async(
        lambda: completed_events(event_reader, video_id), timeout=120, what="completed"
    )
    assert (hls / str(video_id) / "master.m3u8").is_file()
    assert not [e for e in await event_reader(video_id) if isinstance(e, TranscodeFailed)]
    result = await Job(job_id, arq_pool, _queue_name=settings.queue_name).result_info()
    assert result is not None
    assert result.success
    assert result.job_try == 1


async def test_sigterm_lets_the_running_job_finish_and_takes_no_new_one(
    spawn: Spawn,
    make_settings: Callable[..., TranscoderSettings],
    redis_prefix: str,
    arq_pool: ArqRedis,
    event_reader: Callable[..., Any],
    make_clip: Callable[..., Path],
    video_id: int,
) -> None:
    prefix = f"{redis_prefix}drain:"
    settings = make_settings(REDIS_KEY_PREFIX=prefix)
    worker = spawn("worker", redis_prefix=prefix, TRANSCODER_SHUTDOWN_GRACE_SECONDS="120")
    clip = make_clip("drain480.mp4", size="854x480", seconds=12)
    job_id = await queue_upload(settings, arq_pool, clip, video_id)
    await wait_for_encode(event_reader, video_id)

    worker.terminate()
    later_video = new_video_id()
    later_job = await queue_upload(settings, arq_pool, clip, later_video)
    assert worker.wait(timeout=120) == 0

    # The running job finished in the grace period, on its first try...
    assert await completed_events(event_reader, video_id)
    result = await Job(job_id, arq_pool, _queue_name=settings.queue_name).result_info()
    assert result is not None
    assert result.success
    assert result.job_try == 1
    # ...and the job queued after SIGTERM waits for another worker, untouched.
    assert await arq_pool.zscore(settings.queue_name, later_job) is not None
    assert not await arq_pool.exists(retry_key_prefix + later_job)
    assert not await completed_events(event_reader, later_video)
