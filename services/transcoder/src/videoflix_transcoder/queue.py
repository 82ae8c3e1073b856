"""The transcode queue in Redis: arq job ids and what the dispatcher tells the workers.

arq keeps its job, result and in-progress keys under fixed names (`arq:job:<job id>`), so
the job id carries the stack's REDIS_KEY_PREFIX: `<prefix>transcode:<video_id>:<generation>`.
That keeps it deterministic per attempt (a redelivered VideoUploaded never makes a second
job) while two stacks or test runs on one Redis never share a job.

A film's pieces get ids of their own, `<prefix>transcode:<video_id>:<generation>:<part>`
(films.py); work that makes a video playable is queued ahead of higher-rung work
(`enqueue(first=True)`). `queue_state` tells which videos wait (and their place) or run.

Every job carries the trace context it was queued in (the keyword `traceparent`, added by
`enqueue` and taken off again by the worker's `traced` wrapper): the upload's trace goes
on through the worker's log lines, the jobs a job queues and the events it publishes.

Beside the queue, two small facts per video let workers skip useless work: the newest
generation the dispatcher has seen, and that the video was deleted.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix
from redis.asyncio import Redis

from videoflix_shared.redis import prefixed_key
from videoflix_shared.tracing import TRACEPARENT, current_traceparent
from videoflix_transcoder.settings import TranscoderSettings

TRANSCODE_FUNCTION = "transcode_video"
MARK_TTL_SECONDS = 30 * 86400

# Raise the stored generation only when the new one is higher (events may come in any order).
_RAISE_GENERATION = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return tonumber(ARGV[1])
end
return current
"""


def transcode_job_id(settings: TranscoderSettings, video_id: int, generation: int) -> str:
    return f"{settings.redis_key_prefix}transcode:{video_id}:{generation}"


class VideoMarks:
    def __init__(self, redis: Redis, settings: TranscoderSettings) -> None:
        self.redis = redis
        self.settings = settings
        self._raise_generation = redis.register_script(_RAISE_GENERATION)  # no round trip

    def _key(self, video_id: int, what: str) -> str:
        return prefixed_key(self.settings, "transcoder", "video", video_id, what)

    async def note_generation(self, video_id: int, generation: int) -> int:
        """Remember `generation` if it is the newest; returns the newest known."""
        result = await self._raise_generation(
            keys=[self._key(video_id, "generation")], args=[generation, MARK_TTL_SECONDS]
        )
        return int(result)

    async def newest_generation(self, video_id: int) -> int:
        value = await self.redis.get(self._key(video_id, "generation"))
        return int(value) if value else 0

    async def mark_deleted(self, video_id: int) -> None:
        await self.redis.set(self._key(video_id, "deleted"), b"1", ex=MARK_TTL_SECONDS)

    async def is_deleted(self, video_id: int) -> bool:
        return bool(await self.redis.exists(self._key(video_id, "deleted")))

    async def save_failure(self, video_id: int, generation: int, reason: str) -> None:
        """Keep a failure until its event is out, so a retried publish says the same thing."""
        await self.redis.set(
            self._key(video_id, f"failed:{generation}"), reason.encode(), ex=MARK_TTL_SECONDS
        )

    async def saved_failure(self, video_id: int, generation: int) -> str | None:
        value = await self.redis.get(self._key(video_id, f"failed:{generation}"))
        return value.decode() if value else None

    async def clear_failure(self, video_id: int, generation: int) -> None:
        """An operator retries the failed generation (job_control.retry_job)."""
        await self.redis.delete(self._key(video_id, f"failed:{generation}"))


# -- priorities and film jobs -----------------------------------------------------------

# arq runs due jobs in the order of their score, the enqueue time in ms. Work that makes a
# video playable (its first job, a film's audio, lowest-rung chunks and their assembly, a
# short source's single pass) is queued with its score this far in the past: it all runs
# before any higher-rung work, first come first served within each class.
PRIORITY_OFFSET_MS = 10**11  # about three years
# A queued job not started within this time is dropped by arq; far beyond any backlog.
JOB_EXPIRES = timedelta(days=7)
_JOB_ID = re.compile(r"transcode:(\d+):(\d+)(?::|$)")


def film_job_id(settings: TranscoderSettings, video_id: int, generation: int, part: str) -> str:
    """`<prefix>transcode:<video_id>:<generation>:<part>`, e.g. `...:12:1:chunk:3:g0`."""
    return f"{transcode_job_id(settings, video_id, generation)}:{part}"


async def enqueue(
    pool: ArqRedis,
    settings: TranscoderSettings,
    function: str,
    job_id: str,
    *,
    first: bool,
    **kwargs: Any,
) -> bool:
    """Queue a job once (its id is deterministic); `first`: ahead of all higher-rung work.
    False when the job is already queued, running, or its result is kept."""
    ahead = None
    if first:
        ahead = datetime.fromtimestamp((time.time() * 1000 - PRIORITY_OFFSET_MS) / 1000, UTC)
    traceparent = current_traceparent()
    if traceparent is not None:
        kwargs[TRACEPARENT] = traceparent
    job = await pool.enqueue_job(
        function,
        _job_id=job_id,
        _queue_name=settings.queue_name,
        _expires=JOB_EXPIRES,  # explicit: arq derives it from the score otherwise
        _defer_until=ahead,
        **kwargs,
    )
    return job is not None


async def enqueue_film_job(
    pool: ArqRedis,
    settings: TranscoderSettings,
    function: str,
    video_id: int,
    generation: int,
    part: str,
    *,
    first: bool,
    **kwargs: Any,
) -> bool:
    return await enqueue(
        pool,
        settings,
        function,
        film_job_id(settings, video_id, generation, part),
        first=first,
        video_id=video_id,
        generation=generation,
        **kwargs,
    )


def parse_job_id(settings: TranscoderSettings, job_id: str) -> tuple[int, int] | None:
    """(video_id, generation) of one of this stack's transcode jobs."""
    if not job_id.startswith(settings.redis_key_prefix):
        return None
    match = _JOB_ID.match(job_id, len(settings.redis_key_prefix))
    return (int(match.group(1)), int(match.group(2))) if match else None


async def cancel_queued_jobs(
    redis: Redis,
    settings: TranscoderSettings,
    video_id: int,
    *,
    below_generation: int = 0,
    generation: int = 0,
) -> int:
    """Drop the video's waiting jobs (of generations below `below_generation`, or of
    `generation` only; all when both are 0). Running ones see the deletion, the newer
    generation or the generation's failure themselves and stop (outcomes.unless_stale)."""
    cancelled = 0
    for raw in await redis.zrange(settings.queue_name, 0, -1):
        job_id = raw.decode()
        parsed = parse_job_id(settings, job_id)
        if parsed is None or parsed[0] != video_id:
            continue
        if below_generation and parsed[1] >= below_generation:
            continue
        if generation and parsed[1] != generation:
            continue
        if await redis.exists(in_progress_key_prefix + job_id):
            continue
        await redis.zrem(settings.queue_name, job_id)
        await redis.delete(job_key_prefix + job_id)
        cancelled += 1
    return cancelled


@dataclass(frozen=True)
class QueuedVideo:
    video_id: int
    generation: int
    running: bool  # a job of it is running now
    place: int | None  # 1 = next to start; None when nothing of it waits
    waiting_jobs: int


async def queue_state(redis: Redis, settings: TranscoderSettings) -> list[QueuedVideo]:
    """Every video with work in the queue, in the order its waiting work will start."""
    job_ids = [raw.decode() for raw in await redis.zrange(settings.queue_name, 0, -1)]
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.exists(in_progress_key_prefix + job_id)
        running_flags = await pipe.execute()
    running: set[tuple[int, int]] = set()
    waiting: dict[tuple[int, int], int] = {}  # insertion order = queue order
    for job_id, is_running in zip(job_ids, running_flags, strict=True):
        parsed = parse_job_id(settings, job_id)
        if parsed is None:
            continue
        if is_running:
            running.add(parsed)
        else:
            waiting[parsed] = waiting.get(parsed, 0) + 1
    places = {video: place for place, video in enumerate(waiting, start=1)}
    return [
        QueuedVideo(
            video_id=video[0],
            generation=video[1],
            running=video in running,
            place=places.get(video),
            waiting_jobs=waiting.get(video, 0),
        )
        for video in sorted(running | set(waiting), key=lambda v: places.get(v, 0))
    ]
