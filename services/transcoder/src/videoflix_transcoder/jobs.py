"""The transcode queue as operators see it: what waits, what runs on which worker, what
failed lately (`videoflix-transcoder jobs`, the dispatcher's `GET /jobs` and its queue
metrics all read it from here).

arq keeps a job's definition (`arq:job:<id>`: function, arguments, enqueue time), its try
count (`arq:retry:<id>`), its place in the queue (a sorted set scored by when it may
start, queue.py) and, while it runs, `arq:in-progress:<id>`. Beside those, two records of
ours under the stack's prefix:
- `transcoder:running:<job id>`: who runs the job (hostname:pid), which try, since when;
  written by the worker when the job starts and renewed with the job's lease (worker.py),
  so a killed worker's record expires with its lease.
- `transcoder:failed-jobs`: the last FAILED_JOBS_KEPT failed jobs (JSON, newest first),
  kept as long as arq keeps job results (TRANSCODER_KEEP_RESULT_SECONDS).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from arq.constants import (
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)
from arq.jobs import JobResult, deserialize_job_raw, deserialize_result
from redis.asyncio import Redis

from videoflix_shared.redis import prefixed_key
from videoflix_shared.transcode_jobs import JobPriority, TranscodeJob, TranscodeJobs
from videoflix_transcoder.chunks import FilmFiles, FilmPlan
from videoflix_transcoder.queue import PRIORITY_OFFSET_MS, parse_job_id
from videoflix_transcoder.settings import TranscoderSettings

FAILED_JOBS_KEPT = 100
_PARTS = {
    "film_audio": "audio",
    "film_chunk": "chunk",
    "film_assemble": "assembly",
    "announce_failure": "cancellation",
}


def worker_identity() -> str:
    """How the job list names a worker process: `hostname:pid`."""
    return f"{socket.gethostname()}:{os.getpid()}"


def runner_key(settings: TranscoderSettings, job_id: str) -> str:
    return prefixed_key(
        settings, "transcoder", "running", job_id.removeprefix(settings.redis_key_prefix)
    )


def failed_jobs_key(settings: TranscoderSettings) -> str:
    return prefixed_key(settings, "transcoder", "failed-jobs")


def now_ms() -> float:
    return time.time() * 1000  # arq's clock: scores and enqueue times are epoch milliseconds


def priority_of(score_ms: float, at_ms: float) -> JobPriority:
    """`first` for work queued ahead of all higher-rung work (queue.enqueue(first=True))."""
    return "first" if score_ms < at_ms - PRIORITY_OFFSET_MS / 2 else "normal"


def outcome_of(result: object) -> str:
    """What a job's return value says happened: `skipped`, `failed` or `completed`."""
    text = str(result)
    if text.startswith("skipped"):
        return "skipped"
    if text.startswith("failed"):
        return "failed"
    return "completed"


@dataclass(frozen=True)
class QueueEntry:
    """One job in the queue (waiting or running), as arq and the worker recorded it."""

    job_id: str
    video_id: int
    generation: int
    score_ms: float
    running: bool
    function: str = "unknown"  # the job's definition is gone (expired): arq drops it
    kwargs: dict[str, Any] = field(default_factory=dict)
    enqueued_ms: float | None = None
    tries: int = 0  # tries started so far
    runner: dict[str, Any] | None = None  # the worker's record while it runs


async def read_queue(redis: Redis, settings: TranscoderSettings) -> list[QueueEntry]:
    """Every job of this stack in the queue, in the order arq starts them."""
    scored = await redis.zrange(settings.queue_name, 0, -1, withscores=True)
    jobs = []
    for raw, score in scored:
        job_id = raw.decode()
        parsed = parse_job_id(settings, job_id)
        if parsed is not None:
            jobs.append((job_id, parsed, float(score)))
    async with redis.pipeline(transaction=False) as pipe:
        for job_id, _, _ in jobs:
            pipe.exists(in_progress_key_prefix + job_id)
            pipe.get(job_key_prefix + job_id)
            pipe.get(retry_key_prefix + job_id)
            pipe.get(runner_key(settings, job_id))
        replies = await pipe.execute()
    return [
        _entry(job_id, parsed, score, replies[4 * i : 4 * i + 4])
        for i, (job_id, parsed, score) in enumerate(jobs)
    ]


def _entry(job_id: str, video: tuple[int, int], score: float, replies: list[Any]) -> QueueEntry:
    running, definition, tries, runner = replies
    entry = QueueEntry(
        job_id=job_id,
        video_id=video[0],
        generation=video[1],
        score_ms=score,
        running=bool(running),
        tries=int(tries or 0),
        runner=_json_or_none(runner),
    )
    if definition is None:
        return entry
    try:
        function, _, kwargs, _, enqueued_ms = deserialize_job_raw(definition)
    except Exception:  # not arq's format: shown as unknown, arq refuses it when it starts
        return entry
    return replace(entry, function=function, kwargs=kwargs, enqueued_ms=enqueued_ms)


def _json_or_none(raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    with contextlib.suppress(ValueError):
        value = json.loads(raw)
        if isinstance(value, dict):
            return value
    return None


async def read_entry(redis: Redis, settings: TranscoderSettings, job_id: str) -> QueueEntry | None:
    """The job if it is in the queue (waiting or running)."""
    if await redis.zscore(settings.queue_name, job_id) is None:
        return None
    return next((e for e in await read_queue(redis, settings) if e.job_id == job_id), None)


async def read_result(redis: Redis, job_id: str) -> JobResult | None:
    """arq's kept result of a finished job, if any."""
    raw = await redis.get(result_key_prefix + job_id)
    if raw is None:
        return None
    try:
        return deserialize_result(raw)
    except Exception:
        return None


# -- the records the worker keeps -------------------------------------------------------


async def note_running(
    redis: Redis, settings: TranscoderSettings, job_id: str, *, attempt: int
) -> str:
    """Record that this process runs `job_id` (renewed with the lease); returns the key."""
    key = runner_key(settings, job_id)
    record = {"worker": worker_identity(), "attempt": attempt, "started_at": time.time()}
    await redis.set(key, json.dumps(record), px=int(settings.job_lease_seconds * 1000))
    return key


@dataclass(frozen=True)
class FailedJob:
    """A failed job as the list shows it, and the arguments it ran with (for `retry`)."""

    job: TranscodeJob
    kwargs: dict[str, Any]

    def dumps(self) -> str:
        return json.dumps({"job": self.job.model_dump(mode="json"), "kwargs": self.kwargs})

    @classmethod
    def loads(cls, raw: bytes) -> FailedJob | None:
        try:
            data = json.loads(raw)
            return cls(TranscodeJob.model_validate(data["job"]), dict(data["kwargs"]))
        except (ValueError, KeyError, TypeError):
            return None


async def record_failure(redis: Redis, settings: TranscoderSettings, failed: FailedJob) -> None:
    key = failed_jobs_key(settings)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.lpush(key, failed.dumps())
        pipe.ltrim(key, 0, FAILED_JOBS_KEPT - 1)
        pipe.expire(key, max(1, settings.keep_result_seconds))
        await pipe.execute()


async def _raw_failures(redis: Redis, settings: TranscoderSettings) -> list[bytes]:
    # A pipeline: redis-py types its results plainly (a bare LRANGE is typed as maybe-sync).
    async with redis.pipeline(transaction=False) as pipe:
        pipe.lrange(failed_jobs_key(settings), 0, FAILED_JOBS_KEPT - 1)
        (raws,) = await pipe.execute()
    return list(raws)


async def read_failures(redis: Redis, settings: TranscoderSettings) -> list[FailedJob]:
    loaded = map(FailedJob.loads, await _raw_failures(redis, settings))
    return [f for f in loaded if f is not None]


async def forget_failures(
    redis: Redis, settings: TranscoderSettings, video_id: int, generation: int
) -> None:
    """Take the video generation's failures off the list (it is being retried)."""
    async with redis.pipeline(transaction=False) as pipe:
        for raw in await _raw_failures(redis, settings):
            failed = FailedJob.loads(raw)
            if failed is not None and (failed.job.video_id, failed.job.generation) == (
                video_id,
                generation,
            ):
                pipe.lrem(failed_jobs_key(settings), 0, raw.decode())
        await pipe.execute()


# -- views ------------------------------------------------------------------------------


class FilmPlans:
    """The plans of the films in the list (which rungs a piece's group holds), read once."""

    def __init__(self, settings: TranscoderSettings) -> None:
        self.settings = settings
        self._plans: dict[tuple[int, int], FilmPlan | None] = {}

    def rungs(self, video_id: int, generation: int, kwargs: dict[str, Any]) -> list[str]:
        group = kwargs.get("group")
        if not isinstance(group, int):
            return []
        if (video_id, generation) not in self._plans:
            files = FilmFiles.of(self.settings.media_root, video_id, generation)
            self._plans[(video_id, generation)] = FilmPlan.load(files.plan)
        plan = self._plans[(video_id, generation)]
        return list(plan.groups[group]) if plan and group < len(plan.groups) else []


def _epoch(ms: float | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


def job_view(entry: QueueEntry, at_ms: float, plans: FilmPlans | None = None) -> TranscodeJob:
    runner = entry.runner or {}
    started = runner.get("started_at")
    chunk = entry.kwargs.get("chunk")
    part = _PARTS.get(entry.function)
    return TranscodeJob(
        job_id=entry.job_id,
        state="running" if entry.running else "queued",
        function=entry.function,
        video_id=entry.video_id,
        generation=entry.generation,
        part=f"chunk {chunk}" if part == "chunk" else part,
        chunk=chunk if isinstance(chunk, int) else None,
        rungs=plans.rungs(entry.video_id, entry.generation, entry.kwargs) if plans else [],
        priority=priority_of(entry.score_ms, at_ms),
        attempt=int(runner.get("attempt", entry.tries)) if entry.running else entry.tries + 1,
        enqueued_at=_epoch(entry.enqueued_ms),
        age_seconds=round(max(0.0, at_ms - (entry.enqueued_ms or at_ms)) / 1000, 1),
        due_in_seconds=(
            round((entry.score_ms - at_ms) / 1000, 1)
            if not entry.running and entry.score_ms > at_ms
            else None
        ),
        worker=runner.get("worker") if entry.running else None,
        started_at=_epoch(started * 1000) if isinstance(started, int | float) else None,
    )


def _aged(job: TranscodeJob, at_ms: float) -> TranscodeJob:
    if job.enqueued_at is None:
        return job
    age = max(0.0, at_ms / 1000 - job.enqueued_at.timestamp())
    return job.model_copy(update={"age_seconds": round(age, 1)})


async def list_jobs(redis: Redis, settings: TranscoderSettings) -> TranscodeJobs:
    """Queued (in start order), running and recently failed jobs."""
    entries = await read_queue(redis, settings)
    failures = await read_failures(redis, settings)
    at = now_ms()
    plans = FilmPlans(settings)
    views = [job_view(entry, at, plans) for entry in entries]
    return TranscodeJobs(
        queue=settings.queue_name,
        generated_at=datetime.now(UTC),
        queued=[v for v in views if v.state == "queued"],
        running=[v for v in views if v.state == "running"],
        failed=[_aged(f.job, at) for f in failures],
    )
