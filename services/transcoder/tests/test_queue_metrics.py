"""The queue's metrics and job list against a real dispatcher, worker, Redis, NATS and
ffmpeg: they move as jobs are queued, run and fail."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from arq.connections import ArqRedis

from videoflix_shared.events import VideoUploaded
from videoflix_testing.plugin import free_port, wait_until
from videoflix_transcoder.dispatcher import CatalogEventHandler
from videoflix_transcoder.jobs import list_jobs
from videoflix_transcoder.queue import TRANSCODE_FUNCTION, enqueue, transcode_job_id
from videoflix_transcoder.settings import TranscoderSettings

from .conftest import Spawn, new_video_id, place_upload
from .queue_helpers import gated_ffmpeg, promtool_lint, scrape, value

pytestmark = pytest.mark.slow

DEPTH = "videoflix_transcode_queue_depth"
OLDEST = "videoflix_transcode_queue_oldest_age_seconds"
RUNNING = "videoflix_transcode_jobs_running"
JOBS = "videoflix_transcode_jobs_total"
SPEED_COUNT = "videoflix_transcode_speed_ratio_count"


@pytest.fixture
def queue_settings(
    make_settings: Callable[..., TranscoderSettings], redis_prefix: str
) -> TranscoderSettings:
    return make_settings(REDIS_KEY_PREFIX=f"{redis_prefix}qm{new_video_id()}:")


def queue_gauges(port: int, queue: str) -> dict[str, float | None]:
    _, samples = scrape(port)
    return {
        "first": value(samples, DEPTH, queue=queue, priority="first"),
        "normal": value(samples, DEPTH, queue=queue, priority="normal"),
        "oldest_first": value(samples, OLDEST, queue=queue, priority="first"),
        "oldest_normal": value(samples, OLDEST, queue=queue, priority="normal"),
        "running": value(samples, RUNNING, queue=queue),
    }


def lint_problems(text: str) -> list[str]:
    return [line for line in promtool_lint(text).splitlines() if "videoflix_transcode" in line]


async def test_queue_metrics_and_the_job_list_follow_jobs_as_they_are_queued_run_and_fail(
    spawn: Spawn,
    queue_settings: TranscoderSettings,
    arq_pool: ArqRedis,
    make_clip: Callable[..., Path],
    tmp_path: Path,
) -> None:
    settings, queue = queue_settings, queue_settings.queue_name
    dispatcher_port = free_port()
    spawn("dispatcher", redis_prefix=settings.redis_key_prefix, port=dispatcher_port)
    text, _ = scrape(dispatcher_port)
    assert lint_problems(text) == []
    assert queue_gauges(dispatcher_port, queue) == {
        "first": 0,
        "normal": 0,
        "oldest_first": 0,
        "oldest_normal": 0,
        "running": 0,
    }

    # Two uploads queued as the dispatcher queues them (playable first), one of them no
    # video at all, and a third job of normal priority behind them.
    clip = make_clip("queue-metrics.mp4", seconds=2)
    good, bad, later = new_video_id(), new_video_id(), new_video_id()
    handler = CatalogEventHandler(settings=settings, pool=arq_pool)
    for video_id, source in ((good, clip), (bad, tmp_path / "not-a-video.mp4")):
        if not source.exists():
            source.write_bytes(b"this is not a video" * 100)
        source_path = place_upload(settings.media_root, video_id, source)
        await handler.enqueue_transcode(VideoUploaded(video_id=video_id, source_path=source_path))
    await enqueue(
        arq_pool,
        settings,
        TRANSCODE_FUNCTION,
        transcode_job_id(settings, later, 1),
        first=False,
        video_id=later,
        generation=1,
        source_path=place_upload(settings.media_root, later, clip),
    )
    await asyncio.sleep(1.2)
    gauges = queue_gauges(dispatcher_port, queue)
    assert (gauges["first"], gauges["normal"], gauges["running"]) == (2, 1, 0)
    assert 1.0 <= (gauges["oldest_first"] or 0) < 30
    assert 1.0 <= (gauges["oldest_normal"] or 0) < 30

    # A worker takes the first job; its encode waits at the gate: one runs, two wait.
    ffmpeg, gate = gated_ffmpeg(tmp_path)
    worker_port = free_port()
    worker = spawn(
        "worker",
        redis_prefix=settings.redis_key_prefix,
        port=worker_port,
        TRANSCODER_FFMPEG=str(ffmpeg),
    )
    wait_until(lambda: queue_gauges(dispatcher_port, queue)["running"] == 1, what="the job running")
    gauges = queue_gauges(dispatcher_port, queue)
    assert (gauges["first"], gauges["normal"]) == (1, 1)
    listing = await list_jobs(arq_pool, settings)
    assert [(j.video_id, j.worker, j.attempt) for j in listing.running] == [
        (good, f"{socket.gethostname()}:{worker.pid}", 1)
    ]
    assert [(j.video_id, j.priority) for j in listing.queued] == [
        (bad, "first"),
        (later, "normal"),
    ]

    gate.touch()
    wait_until(
        lambda: (
            queue_gauges(dispatcher_port, queue)
            == {"first": 0, "normal": 0, "oldest_first": 0, "oldest_normal": 0, "running": 0}
        ),
        timeout=120,
        what="the queue worked off",
    )
    text, samples = scrape(worker_port)
    assert lint_problems(text) == []
    outcomes = {o: value(samples, JOBS, outcome=o) for o in ("completed", "failed", "retried")}
    assert outcomes == {"completed": 2, "failed": 1, "retried": 0}
    assert value(samples, SPEED_COUNT, rung="480p") == 2
    failed = (await list_jobs(arq_pool, settings)).failed
    assert [(f.video_id, f.worker, f.attempt) for f in failed] == [
        (bad, f"{socket.gethostname()}:{worker.pid}", 1)
    ]
    assert "not a readable video file" in (failed[0].reason or "")
