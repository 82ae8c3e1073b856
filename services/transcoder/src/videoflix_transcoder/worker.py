"""The arq worker: runs transcode jobs from the queue, one at a time per process by default.

More worker processes (on this host or others sharing Redis) = more throughput. A job
holds arq's in-progress key only as a short lease that it keeps renewing, so when a
worker is killed (-9, OOM, host lost) its job is picked up again within
TRANSCODER_JOB_LEASE_SECONDS by any worker instead of after the job timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from datetime import timedelta
from typing import Any

from arq import Retry
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix
from arq.worker import Worker, func
from fastapi import FastAPI

from videoflix_shared.bus import EventBus
from videoflix_transcoder.connections import run_connected
from videoflix_transcoder.queue import TRANSCODE_FUNCTION, VideoMarks
from videoflix_transcoder.service import RetryLater, backoff_seconds, transcode_video
from videoflix_transcoder.settings import TranscoderSettings

logger = logging.getLogger(__name__)

RESTART_DELAY_SECONDS = 2.0


async def transcode_job(
    ctx: dict[str, Any], *, video_id: int, generation: int, source_path: str
) -> str:
    """arq entry point; `ctx` carries the worker's settings, bus and Redis pool."""
    settings: TranscoderSettings = ctx["settings"]
    redis: ArqRedis = ctx["redis"]
    lease = asyncio.create_task(
        hold_lease(redis, in_progress_key_prefix + ctx["job_id"], settings.job_lease_seconds)
    )
    try:
        return await transcode_video(
            settings=settings,
            bus=ctx["bus"],
            marks=VideoMarks(redis, settings),
            video_id=video_id,
            generation=generation,
            source_path=source_path,
            attempt=ctx["job_try"],
        )
    except RetryLater as exc:
        raise Retry(defer=timedelta(seconds=exc.delay)) from exc
    except Exception as exc:
        # E.g. Redis or the media volume away for a moment: arq must not drop the job.
        logger.exception("transcode job %s crashed; retrying", ctx["job_id"])
        delay = backoff_seconds(settings, ctx["job_try"])
        raise Retry(defer=timedelta(seconds=delay)) from exc
    finally:
        lease.cancel()
        with contextlib.suppress(BaseException):
            await lease


async def hold_lease(redis: ArqRedis, in_progress_key: str, lease_seconds: float) -> None:
    """Keep the job's in-progress key alive for `lease_seconds` past the last renewal."""
    while True:
        with contextlib.suppress(Exception):  # Redis briefly away: the lease has slack
            await redis.pexpire(in_progress_key, int(lease_seconds * 1000))
        await asyncio.sleep(lease_seconds / 3)


def build_worker(settings: TranscoderSettings, pool: ArqRedis, bus: EventBus) -> Worker:
    return Worker(
        functions=[func(transcode_job, name=TRANSCODE_FUNCTION)],
        redis_pool=pool,
        queue_name=settings.queue_name,
        max_jobs=settings.max_jobs,
        # The real limit is derived from each video's duration (pipeline.encode_timeout);
        # this is only arq's outer bound.
        job_timeout=settings.max_job_seconds,
        keep_result=settings.keep_result_seconds,
        max_tries=settings.max_tries,
        poll_delay=0.5,
        handle_signals=False,
        health_check_interval=30,
        ctx={"settings": settings, "bus": bus},
    )


async def run(app: FastAPI, stop: asyncio.Event) -> None:
    """`videoflix-transcoder worker`: process jobs until SIGTERM; a running job is
    cancelled (ffmpeg killed, temp output removed) and left in the queue for another worker."""
    settings: TranscoderSettings = app.state.settings

    async def work_off_the_queue(bus: EventBus, pool: ArqRedis) -> None:
        while not stop.is_set():
            worker = build_worker(settings, pool, bus)
            running = asyncio.create_task(worker.async_run())
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            await _stop_worker(worker, running)
            if not stop.is_set():
                # arq's loop ends when Redis goes away; start over once it answers again.
                logger.warning("arq worker stopped (%r); restarting", running.exception())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), RESTART_DELAY_SECONDS)

    await run_connected(app, stop, principal="transcoder-worker", work=work_off_the_queue)


async def _stop_worker(worker: Worker, running: asyncio.Task[None]) -> None:
    worker.handle_sig(signal.SIGINT)  # cancels running jobs: they go back to the queue for a retry
    with contextlib.suppress(BaseException):
        await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
    with contextlib.suppress(BaseException):
        await running
