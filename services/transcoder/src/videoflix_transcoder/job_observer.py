"""What each try of a transcode job leaves for operators, around the job functions of
worker.py: which worker runs it (jobs.note_running, renewed with its lease), how it ended
(metrics.WorkerMetrics), how fast it encoded, and, when it failed, a record for the
`jobs` list. Best effort throughout: none of it may fail or slow down a job.

The encode speed is seconds of media per second of wall time: for a film's chunk or audio
the time the ledger noted for its ffmpeg run (ledger.py; a piece found already written
encoded nothing and is not counted); for a short source's single pass the whole try
(probe, thumbnail, content check and the one-pass ladder), once per rung it produced.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from arq import Retry
from arq.jobs import deserialize_result
from arq.typing import WorkerCoroutine
from arq.worker import Worker
from redis.asyncio import Redis

from videoflix_shared.transcode_jobs import TranscodeJob
from videoflix_transcoder.chunks import FilmFiles, FilmPlan
from videoflix_transcoder.job_control import CANCELLED
from videoflix_transcoder.jobs import (
    FailedJob,
    QueueEntry,
    job_view,
    now_ms,
    outcome_of,
    record_failure,
    worker_identity,
)
from videoflix_transcoder.ledger import AUDIO_PART, FilmLedger, chunk_part
from videoflix_transcoder.metrics import WorkerMetrics
from videoflix_transcoder.outcomes import hls_dir
from videoflix_transcoder.pipeline import EncodeResult
from videoflix_transcoder.queue import TRANSCODE_FUNCTION, VideoMarks, parse_job_id
from videoflix_transcoder.settings import TranscoderSettings

logger = logging.getLogger(__name__)

JobFunction = Callable[..., Awaitable[str]]
ENCODED = "completed"  # what service.transcode_video returns after a single pass it encoded


def observed(function_name: str, job: JobFunction) -> WorkerCoroutine:
    """`job` (an arq job function registered as `function_name`) with its outcome counted,
    its encode speed measured and its failure recorded."""

    @functools.wraps(job)
    async def run(ctx: dict[str, Any], **kwargs: Any) -> str:
        metrics: WorkerMetrics = ctx["metrics"]
        started = time.monotonic()
        try:
            result = await job(ctx, **kwargs)
        except Retry:
            metrics.count("retried")
            raise
        except asyncio.CancelledError:
            metrics.count("cancelled")  # the worker stops: the job runs again elsewhere
            raise
        except Exception as exc:  # arq records the job as failed and drops it
            metrics.count("failed")
            await _quietly(_record(ctx, function_name, kwargs, f"{type(exc).__name__}: {exc}"))
            raise
        outcome = await _outcome(ctx, kwargs, result)
        metrics.count(outcome)
        if outcome == "failed":
            await _quietly(_record(ctx, function_name, kwargs, None))
        elif outcome == "completed":
            elapsed = time.monotonic() - started
            await _quietly(_observe_speed(ctx, function_name, kwargs, result, elapsed))
        return result

    return run


async def _quietly(work: Awaitable[None]) -> None:
    try:
        await work
    except Exception as exc:  # Redis or the media volume away: the job's outcome stands
        logger.info("job record not written (%s)", exc)


async def _outcome(ctx: dict[str, Any], kwargs: dict[str, Any], result: str) -> str:
    outcome = outcome_of(result)
    if outcome == "skipped":
        marks = VideoMarks(ctx["redis"], ctx["settings"])
        with contextlib.suppress(Exception):
            reason = await marks.saved_failure(kwargs["video_id"], kwargs["generation"])
            if reason is not None and reason.startswith(CANCELLED):
                return "cancelled"
    return outcome


async def _record(
    ctx: dict[str, Any], function_name: str, kwargs: dict[str, Any], error: str | None
) -> None:
    settings: TranscoderSettings = ctx["settings"]
    redis: Redis = ctx["redis"]
    video_id, generation = kwargs["video_id"], kwargs["generation"]
    reason = error or await VideoMarks(redis, settings).saved_failure(video_id, generation)
    entry = QueueEntry(
        job_id=ctx["job_id"],
        video_id=video_id,
        generation=generation,
        score_ms=float(ctx["score"]),
        running=True,
        function=function_name,
        kwargs=kwargs,
        enqueued_ms=ctx["enqueue_time"].timestamp() * 1000,
        tries=ctx["job_try"],
        runner={"worker": worker_identity()},
    )
    await record_failure(redis, settings, FailedJob(_failed(entry, reason), kwargs))


def _failed(entry: QueueEntry, reason: str | None) -> TranscodeJob:
    return job_view(entry, now_ms()).model_copy(
        update={
            "state": "failed",
            "reason": reason or "failed",
            "failed_at": datetime.now(UTC),
            "started_at": None,
            "due_in_seconds": None,
        }
    )


async def _observe_speed(
    ctx: dict[str, Any], function_name: str, kwargs: dict[str, Any], result: str, elapsed: float
) -> None:
    settings: TranscoderSettings = ctx["settings"]
    metrics: WorkerMetrics = ctx["metrics"]
    video_id, generation = kwargs["video_id"], kwargs["generation"]
    if function_name == TRANSCODE_FUNCTION:
        if result != ENCODED:  # a film planned, or an output found in place: no encode
            return
        output = EncodeResult.load(hls_dir(settings.media_root, video_id))
        if output is not None and output.generation == generation and output.complete:
            metrics.observe_speed(output.renditions, output.duration_seconds, elapsed)
        return
    if function_name not in ("film_chunk", "film_audio"):
        return
    plan = FilmPlan.load(FilmFiles.of(settings.media_root, video_id, generation).plan)
    if plan is None:
        return
    ledger = await FilmLedger(ctx["redis"], settings, video_id, generation).read()
    if function_name == "film_audio":
        metrics.observe_speed(["audio"], plan.duration_seconds, ledger.done.get(AUDIO_PART, 0))
        return
    chunk, group = kwargs["chunk"], kwargs["group"]
    took = ledger.done.get(chunk_part(chunk, group), 0)
    media = plan.chunks[chunk].seconds(plan.duration_seconds)
    metrics.observe_speed(plan.groups[group], media, took)


class ObservedWorker(Worker):
    """arq's worker, recording the jobs arq itself gives up on (its tries exhausted, expired
    in the queue) as failed, which no job function sees.

    arq marks a job in progress for its whole timeout before the job function runs; every
    job function holds that mark as a lease it renews (worker.py), so the mark starts with
    the lease's length too: a worker killed before its job's lease began frees the job as
    soon as one killed later does, not hours later."""

    def __init__(
        self, *args: Any, metrics: WorkerMetrics, lease_seconds: float, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.metrics = metrics
        self.in_progress_timeout_s = lease_seconds

    async def finish_failed_job(self, job_id: str, result_data: bytes | None) -> None:
        await super().finish_failed_job(job_id, result_data)
        self.metrics.count("failed")
        await _quietly(self._record_given_up(job_id, result_data))

    async def _record_given_up(self, job_id: str, result_data: bytes | None) -> None:
        settings: TranscoderSettings = self.ctx["settings"]
        parsed = parse_job_id(settings, job_id)
        if parsed is None or result_data is None:
            return
        result = deserialize_result(result_data)
        entry = QueueEntry(
            job_id=job_id,
            video_id=parsed[0],
            generation=parsed[1],
            score_ms=now_ms(),
            running=True,
            function=result.function,
            kwargs=dict(result.kwargs),
            enqueued_ms=result.enqueue_time.timestamp() * 1000,
            tries=result.job_try,
            runner={"worker": worker_identity()},
        )
        reason = f"the queue gave up on it: {result.result}"
        await record_failure(self.pool, settings, FailedJob(_failed(entry, reason), entry.kwargs))
