"""The arq worker: runs transcode jobs from the queue, one at a time per process by default.

More worker processes (on this host or others sharing Redis) = more throughput. A job
holds arq's in-progress key only as a short lease that it keeps renewing, so when a
worker is killed (-9, OOM, host lost) its job is picked up again within
TRANSCODER_JOB_LEASE_SECONDS by any worker instead of after the job timeout.

Every job function runs inside job_observer.observed (its outcome and encode speed on this
process's /metrics, its failure on the `jobs` list) and records which worker runs it with
its lease; `announce_failure` publishes a generation an operator cancelled (docs/QUEUE.md).
Each job runs in the trace it was queued in (`traced`: the `traceparent` keyword that
queue.enqueue adds), so its log lines and the events it publishes belong to the upload.
On SIGTERM (a scale-down, a rolling update, `docker compose stop`) a worker takes no new
job and gives the running ones TRANSCODER_SHUTDOWN_GRACE_SECONDS to finish; what still runs
then is cancelled (ffmpeg killed, partial output removed) and handed back to the queue.
A hand-back gives back the try arq counted when the job started: an orderly stop is not
the job's fault and must not bring it closer to TRANSCODER_MAX_ATTEMPTS, which exists
for workers that die in the middle of it (killed, out of memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import shutil
import signal
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import timedelta
from typing import Any

from arq import Retry
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, retry_key_prefix
from arq.worker import Worker, func
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from videoflix_shared.bus import EventBus
from videoflix_shared.redis import prefixed_key
from videoflix_shared.tracing import TRACEPARENT, continue_trace
from videoflix_transcoder.connections import run_connected
from videoflix_transcoder.events import (
    PROGRESS_PUBLISH_TIMEOUT,
    failed_event,
    queue_state_event,
)
from videoflix_transcoder.films import (
    ASSEMBLY_WAIT_SECONDS,
    FilmJob,
    WaitForLowerRung,
    assemble_film_group,
    encode_film_audio,
    encode_film_chunk,
)
from videoflix_transcoder.job_control import ANNOUNCE_FUNCTION
from videoflix_transcoder.job_observer import ObservedWorker, observed
from videoflix_transcoder.jobs import note_running
from videoflix_transcoder.metrics import WorkerMetrics
from videoflix_transcoder.outcomes import (
    JobOutcome,
    publish_or_retry,
    reason_to_skip,
    unless_stale,
)
from videoflix_transcoder.queue import TRANSCODE_FUNCTION, VideoMarks, queue_state
from videoflix_transcoder.service import RetryLater, backoff_seconds, transcode_video
from videoflix_transcoder.settings import TranscoderSettings

logger = logging.getLogger(__name__)

RESTART_DELAY_SECONDS = 2.0
DRAIN_POLL_SECONDS = 0.2
# arq counts a job's tries in arq:retry:<job id> (INCR when the job starts); a handed-back
# job's count goes back down by one, unless the job finished meanwhile (key gone).
_GIVE_BACK_TRY = """
if redis.call('exists', KEYS[1]) == 1 then
  return redis.call('decr', KEYS[1])
end
return nil
"""

JobFunction = Callable[..., Coroutine[Any, Any, str]]


def traced(function: JobFunction) -> JobFunction:
    """The arq job `function`, run in the trace its enqueuer was in (a job queued before
    jobs carried one starts a trace of its own)."""

    @functools.wraps(function)
    async def in_trace(ctx: dict[str, Any], **kwargs: Any) -> str:
        traceparent = kwargs.pop(TRACEPARENT, None)
        with continue_trace(traceparent, name=f"job {ctx['job_id']}", kind="consumer"):
            return await function(ctx, **kwargs)

    return in_trace


async def transcode_job(
    ctx: dict[str, Any], *, video_id: int, generation: int, source_path: str
) -> str:
    """arq entry point; `ctx` carries the worker's settings, bus and Redis pool."""
    settings: TranscoderSettings = ctx["settings"]
    redis: ArqRedis = ctx["redis"]
    async with _leased(ctx):
        try:
            return await transcode_video(
                settings=settings,
                bus=ctx["bus"],
                marks=VideoMarks(redis, settings),
                video_id=video_id,
                generation=generation,
                source_path=source_path,
                attempt=ctx["job_try"],
                film_queue=redis,
            )
        except RetryLater as exc:
            raise Retry(defer=timedelta(seconds=exc.delay)) from exc
        except Exception as exc:
            # E.g. Redis or the media volume away for a moment: arq must not drop the job.
            logger.exception("transcode job %s crashed; retrying", ctx["job_id"])
            delay = backoff_seconds(settings, ctx["job_try"])
            raise Retry(defer=timedelta(seconds=delay)) from exc


async def film_chunk_job(
    ctx: dict[str, Any], *, video_id: int, generation: int, chunk: int, group: int
) -> str:
    return await _run_film_piece(
        ctx,
        video_id,
        generation,
        lambda job: encode_film_chunk(job, chunk_index=chunk, group=group),
    )


async def film_audio_job(ctx: dict[str, Any], *, video_id: int, generation: int) -> str:
    return await _run_film_piece(ctx, video_id, generation, encode_film_audio)


async def film_assemble_job(
    ctx: dict[str, Any], *, video_id: int, generation: int, group: int
) -> str:
    return await _run_film_piece(
        ctx, video_id, generation, lambda job: assemble_film_group(job, group=group)
    )


async def _run_film_piece(
    ctx: dict[str, Any],
    video_id: int,
    generation: int,
    piece: Callable[[FilmJob], Coroutine[Any, Any, str]],
) -> str:
    """One piece of a film (films.py) with the single pass's rules: skipped when the video
    is deleted, re-transcoded or failed already; stopped when that happens meanwhile;
    permanent errors fail the video at once, transient ones retry with backoff."""
    settings: TranscoderSettings = ctx["settings"]
    redis: ArqRedis = ctx["redis"]
    marks = VideoMarks(redis, settings)
    job = FilmJob(settings, ctx["bus"], redis, video_id, generation, attempt=ctx["job_try"])
    outcome = JobOutcome(ctx["bus"], marks, settings, video_id, generation, ctx["job_try"])
    async with _leased(ctx):
        skip = await reason_to_skip(marks, video_id, generation, None)
        if skip is None and await marks.saved_failure(video_id, generation) is not None:
            skip = "the video failed already"
        if skip:
            if skip.startswith("superseded"):
                shutil.rmtree(job.files.root, ignore_errors=True)
            return f"skipped: {skip}"
        try:
            done = await unless_stale(marks, video_id, generation, piece(job))
            if await marks.is_deleted(video_id):  # deleted while an assembly swapped in
                shutil.rmtree(settings.media_root / "hls" / str(video_id), ignore_errors=True)
                shutil.rmtree(job.files.root, ignore_errors=True)
            if done is None:
                return "skipped: deleted, re-transcoded or cancelled meanwhile"
            return done
        except WaitForLowerRung:
            raise Retry(defer=timedelta(seconds=ASSEMBLY_WAIT_SECONDS)) from None
        except RetryLater as exc:
            raise Retry(defer=timedelta(seconds=exc.delay)) from exc
        except Exception as error:
            try:
                return await outcome.settle(error)
            except RetryLater as exc:
                raise Retry(defer=timedelta(seconds=exc.delay)) from exc


@contextlib.asynccontextmanager
async def _leased(ctx: dict[str, Any]) -> AsyncIterator[None]:
    """Hold the running job's in-progress key as a lease (see the module docstring), and
    the record of which worker runs it (jobs.note_running) with it."""
    settings: TranscoderSettings = ctx["settings"]
    redis: ArqRedis = ctx["redis"]
    keys = [in_progress_key_prefix + ctx["job_id"]]
    with contextlib.suppress(Exception):  # the `jobs` list shows no worker then, that is all
        keys.append(await note_running(redis, settings, ctx["job_id"], attempt=ctx["job_try"]))
    lease = asyncio.create_task(hold_lease(redis, keys, settings.job_lease_seconds))
    try:
        yield
    finally:
        lease.cancel()
        with contextlib.suppress(BaseException):
            await lease
        with contextlib.suppress(Exception):  # else it expires with the lease
            await redis.delete(*keys[1:])


async def hold_lease(redis: ArqRedis, keys: list[str], lease_seconds: float) -> None:
    """Keep the job's `keys` alive for `lease_seconds` past the last renewal."""
    while True:
        with contextlib.suppress(Exception):  # Redis briefly away: the lease has slack
            async with redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.pexpire(key, int(lease_seconds * 1000))
                await pipe.execute()
        await asyncio.sleep(lease_seconds / 3)


async def announce_failure_job(ctx: dict[str, Any], *, video_id: int, generation: int) -> str:
    """Publish the saved failure of a generation an operator cancelled (job_control.py)."""
    settings: TranscoderSettings = ctx["settings"]
    marks = VideoMarks(ctx["redis"], settings)
    async with _leased(ctx):
        reason = await marks.saved_failure(video_id, generation)
        if reason is None:
            return "nothing to announce: retried meanwhile"
        try:
            await publish_or_retry(
                ctx["bus"],
                failed_event(video_id=video_id, generation=generation, reason=reason),
                ctx["job_try"],
                settings,
            )
        except RetryLater as exc:
            raise Retry(defer=timedelta(seconds=exc.delay)) from exc
        return f"announced: {reason}"


async def announce_queue_state(
    settings: TranscoderSettings, bus: EventBus, redis: ArqRedis, stop: asyncio.Event
) -> None:
    """Every TRANSCODER_QUEUE_STATE_INTERVAL_SECONDS one worker (whoever takes the round's
    lock) publishes which videos wait in the queue and which run: catalog's heartbeat of
    the whole transcoder, and how it tells queued from stuck."""
    interval = settings.queue_state_interval_seconds
    lock = prefixed_key(settings, "transcoder", "queue-state-lock")
    while not stop.is_set():
        try:
            if await redis.set(lock, b"1", nx=True, px=int(interval * 900)):
                event = queue_state_event(await queue_state(redis, settings))
                await bus.publish(event, timeout=PROGRESS_PUBLISH_TIMEOUT)
        except Exception as exc:  # NATS or Redis away: the next round tries again
            logger.info("queue state not announced (%s)", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


def build_worker(
    settings: TranscoderSettings,
    pool: ArqRedis,
    bus: EventBus,
    metrics: WorkerMetrics | None = None,
) -> Worker:
    """arq's worker with the transcoder's job functions; `metrics`: the process's (its
    health port serves them), by default a set of its own that nothing serves."""
    chunk_timeout = settings.chunk_job_seconds
    metrics = metrics or WorkerMetrics(CollectorRegistry())
    return ObservedWorker(
        functions=[
            func(traced(observed(TRANSCODE_FUNCTION, transcode_job)), name=TRANSCODE_FUNCTION),
            func(
                traced(observed("film_chunk", film_chunk_job)),
                name="film_chunk",
                timeout=chunk_timeout,
            ),
            func(traced(observed("film_audio", film_audio_job)), name="film_audio"),
            func(traced(observed("film_assemble", film_assemble_job)), name="film_assemble"),
            func(traced(announce_failure_job), name=ANNOUNCE_FUNCTION),
        ],
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
        ctx={"settings": settings, "bus": bus, "metrics": metrics},
        metrics=metrics,
        lease_seconds=settings.job_lease_seconds,
    )


async def run(app: FastAPI, stop: asyncio.Event) -> None:
    """`videoflix-transcoder worker`: process jobs until SIGTERM; then a running job gets
    TRANSCODER_SHUTDOWN_GRACE_SECONDS to finish, or is cancelled (ffmpeg killed, temp output
    removed) and handed back to the queue for another worker (module docstring)."""
    settings: TranscoderSettings = app.state.settings
    metrics = WorkerMetrics()

    async def work_off_the_queue(bus: EventBus, pool: ArqRedis) -> None:
        announcing = asyncio.create_task(announce_queue_state(settings, bus, pool, stop))
        try:
            await _work(bus, pool)
        finally:
            announcing.cancel()
            with contextlib.suppress(BaseException):
                await announcing

    async def _work(bus: EventBus, pool: ArqRedis) -> None:
        while not stop.is_set():
            worker = build_worker(settings, pool, bus, metrics)
            running = asyncio.create_task(worker.async_run())
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if stop.is_set():
                await drain(worker, settings.shutdown_grace_seconds)
                await hand_back(pool, list(worker.job_tasks))
            await _stop_worker(worker, running)
            if not stop.is_set():
                # arq's loop ends when Redis goes away; start over once it answers again.
                logger.warning("arq worker stopped (%r); restarting", running.exception())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), RESTART_DELAY_SECONDS)

    await run_connected(app, stop, principal="transcoder-worker", work=work_off_the_queue)


async def drain(worker: Worker, grace_seconds: float) -> None:
    """Take no new job and wait up to `grace_seconds` for the running ones to finish."""
    worker.allow_pick_jobs = False
    deadline = asyncio.get_running_loop().time() + grace_seconds
    while any(not task.done() for task in worker.tasks.values()):
        if asyncio.get_running_loop().time() >= deadline:
            logger.info("shutdown: %d job(s) still running, handing them back", len(worker.tasks))
            return
        await asyncio.sleep(DRAIN_POLL_SECONDS)


async def hand_back(pool: ArqRedis, job_ids: list[str]) -> None:
    """Give back the try arq counted for each job about to be cancelled by a shutdown.

    Called while the jobs still hold their in-progress lease, so no other worker can have
    started them again yet; the cancellation then puts them back in the queue."""
    give_back = pool.register_script(_GIVE_BACK_TRY)
    for job_id in job_ids:
        try:
            await give_back(keys=[retry_key_prefix + job_id])
        except Exception as exc:  # Redis away: the job still goes back, one try poorer
            logger.warning("could not give back the try of job %s (%s)", job_id, exc)


async def _stop_worker(worker: Worker, running: asyncio.Task[None]) -> None:
    worker.handle_sig(signal.SIGINT)  # cancels running jobs: they go back to the queue for a retry
    with contextlib.suppress(BaseException):
        await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
    with contextlib.suppress(BaseException):
        await running
