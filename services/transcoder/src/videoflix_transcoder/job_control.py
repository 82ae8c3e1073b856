"""What an operator may do to one job (`videoflix-transcoder jobs retry|cancel <job id>`).

A job is one piece of a video generation's transcode; a film cannot finish without all of
its pieces, so both verbs act on the generation the job belongs to:

- **cancel** (a queued or running job): the generation fails with the reason "Cancelled by
  an operator", the way any failure ends it: the reason is saved (queue.VideoMarks), its
  waiting jobs leave the queue, its running ones stop within seconds the way a deletion or
  a re-transcode stops them (outcomes.unless_stale: ffmpeg killed, temporary output
  removed, nothing half-written becomes visible), and a small job makes a worker announce
  the failure to catalog (only workers publish transcoder events).
- **retry** a failed or cancelled job: its generation runs again. Pieces that finished stay
  (a film's written chunks and assembled rungs are kept); the others, and the video's first
  job, are queued again. A waiting job held back by a retry's backoff is moved to run now.
  A running job cannot be retried; a deleted or superseded video is not retried (the admin
  page's re-transcode starts a new generation).

Refusals are the domain errors NotFound (no such job) and Conflict (not in a state for it).
"""

from __future__ import annotations

from datetime import UTC, datetime

from arq.connections import ArqRedis
from arq.constants import job_key_prefix, result_key_prefix

from videoflix_shared.errors import Conflict, NotFound
from videoflix_transcoder.chunks import FilmFiles, FilmPlan
from videoflix_transcoder.jobs import (
    FailedJob,
    QueueEntry,
    forget_failures,
    job_view,
    now_ms,
    outcome_of,
    read_entry,
    read_failures,
    read_queue,
    read_result,
    record_failure,
)
from videoflix_transcoder.ledger import (
    AUDIO_PART,
    FilmLedger,
    assembly_part,
    chunk_part,
)
from videoflix_transcoder.queue import (
    TRANSCODE_FUNCTION,
    VideoMarks,
    cancel_queued_jobs,
    enqueue,
    film_job_id,
    parse_job_id,
    transcode_job_id,
)
from videoflix_transcoder.settings import TranscoderSettings

CANCELLED = "Cancelled by an operator"
ANNOUNCE_FUNCTION = "announce_failure"
ANNOUNCE_PART = "cancelled"


def full_job_id(settings: TranscoderSettings, job_id: str) -> tuple[str, int, int]:
    """The job id as arq knows it (the stack's prefix may be left out), its video and
    generation; NotFound for anything that is not one of this stack's transcode jobs."""
    job_id = job_id.strip()
    if not job_id.startswith(settings.redis_key_prefix):
        job_id = settings.redis_key_prefix + job_id
    parsed = parse_job_id(settings, job_id)
    if parsed is None:
        raise NotFound(
            f"{job_id!r} is not a transcode job id (they look like "
            f"{settings.redis_key_prefix}transcode:<video>:<generation>[:<part>])"
        )
    return job_id, parsed[0], parsed[1]


async def _not_pending(pool: ArqRedis, job_id: str, verb: str) -> Exception:
    result = await read_result(pool, job_id)
    if result is not None:
        return Conflict(
            f"{job_id} is not queued or running: it finished ({outcome_of(result.result)}); "
            f"there is nothing to {verb}"
        )
    return NotFound(
        f"no job {job_id}: it is not queued, running or recently failed "
        "(`videoflix-transcoder jobs` lists them)"
    )


# -- cancel -----------------------------------------------------------------------------


async def cancel_job(pool: ArqRedis, settings: TranscoderSettings, job_id: str) -> str:
    job_id, video_id, generation = full_job_id(settings, job_id)
    entry = await read_entry(pool, settings, job_id)
    if entry is None:
        raise await _not_pending(pool, job_id, "cancel")
    marks = VideoMarks(pool, settings)
    reason = await marks.saved_failure(video_id, generation)
    if reason is None:
        reason = f"{CANCELLED} (job {job_id.removeprefix(settings.redis_key_prefix)})."
        await marks.save_failure(video_id, generation, reason)
    await _record_cancelled(pool, settings, entry, reason)
    dropped = await cancel_queued_jobs(pool, settings, video_id, generation=generation)
    await _queue_announcement(pool, settings, video_id, generation)
    running = [
        e
        for e in await read_queue(pool, settings)
        if e.running and (e.video_id, e.generation) == (video_id, generation)
    ]
    return (
        f"cancelled video {video_id} generation {generation}: {dropped} waiting job(s) "
        f"dropped, {len(running)} running job(s) stopping; the video fails with the reason "
        f"{reason!r}"
    )


async def _record_cancelled(
    pool: ArqRedis, settings: TranscoderSettings, entry: QueueEntry, reason: str
) -> None:
    view = job_view(entry, now_ms())
    failed = view.model_copy(
        update={"state": "failed", "reason": reason, "failed_at": datetime.now(UTC)}
    )
    await record_failure(pool, settings, FailedJob(failed, dict(entry.kwargs)))


async def _queue_announcement(
    pool: ArqRedis, settings: TranscoderSettings, video_id: int, generation: int
) -> None:
    """A job for a worker: publish the generation's saved failure (worker.announce_failure)."""
    job_id = film_job_id(settings, video_id, generation, ANNOUNCE_PART)
    await pool.delete(result_key_prefix + job_id)  # a previous cancellation's
    await enqueue(
        pool,
        settings,
        ANNOUNCE_FUNCTION,
        job_id,
        first=True,
        video_id=video_id,
        generation=generation,
    )


# -- retry ------------------------------------------------------------------------------


async def retry_job(pool: ArqRedis, settings: TranscoderSettings, job_id: str) -> str:
    job_id, video_id, generation = full_job_id(settings, job_id)
    entry = await read_entry(pool, settings, job_id)
    if entry is not None:
        return await _run_now(pool, settings, entry)
    marks = VideoMarks(pool, settings)
    failures = [
        f
        for f in await read_failures(pool, settings)
        if (f.job.video_id, f.job.generation) == (video_id, generation)
    ]
    failed_reason = await marks.saved_failure(video_id, generation)
    if failed_reason is None and not any(f.job.job_id == job_id for f in failures):
        raise await _not_pending(pool, job_id, "retry")
    if await marks.is_deleted(video_id):
        raise Conflict(f"video {video_id} was deleted; there is nothing to retry")
    newest = await marks.newest_generation(video_id)
    if newest > generation:
        raise Conflict(
            f"video {video_id} generation {generation} was superseded by generation {newest}"
        )
    if any(
        e.running and (e.video_id, e.generation) == (video_id, generation)
        for e in await read_queue(pool, settings)
    ):
        raise Conflict(
            f"jobs of video {video_id} generation {generation} are still stopping; "
            "try again in a few seconds"
        )
    plan = FilmPlan.load(FilmFiles.of(settings.media_root, video_id, generation).plan)
    source_path = await _source_path(pool, settings, video_id, generation, failures, plan)
    # A cancellation not yet announced needs no announcing any more.
    announcement = film_job_id(settings, video_id, generation, ANNOUNCE_PART)
    await pool.zrem(settings.queue_name, announcement)
    await pool.delete(job_key_prefix + announcement)
    requeued = await _requeue_generation(
        pool, settings, video_id, generation, source_path=source_path, plan=plan
    )
    await forget_failures(pool, settings, video_id, generation)
    return (
        f"retrying video {video_id} generation {generation}: {requeued} job(s) queued; "
        "what had finished is kept. (The admin page shows the video failed until its "
        "first rendition is ready again.)"
    )


async def _run_now(pool: ArqRedis, settings: TranscoderSettings, entry: QueueEntry) -> str:
    if entry.running:
        raise Conflict(f"{entry.job_id} is running; wait for it, or cancel it first")
    now = now_ms()
    if entry.score_ms <= now:
        return f"{entry.job_id} is waiting already: it starts when a worker is free"
    # XX: only while it is still queued (a worker may have taken it meanwhile)
    await pool.zadd(settings.queue_name, {entry.job_id: int(now)}, xx=True)
    return f"{entry.job_id} no longer waits for its retry's backoff: it runs next"


async def _source_path(
    pool: ArqRedis,
    settings: TranscoderSettings,
    video_id: int,
    generation: int,
    failures: list[FailedJob],
    plan: FilmPlan | None,
) -> str:
    """The upload the generation transcodes, from what recorded it."""
    first = transcode_job_id(settings, video_id, generation)
    for failed in failures:
        if failed.job.job_id == first and isinstance(failed.kwargs.get("source_path"), str):
            return str(failed.kwargs["source_path"])
    result = await read_result(pool, first)
    if result is not None and isinstance(result.kwargs.get("source_path"), str):
        return str(result.kwargs["source_path"])
    if plan is not None:
        return plan.source_path
    raise Conflict(
        f"video {video_id} generation {generation} cannot be retried: the records of its "
        "upload have expired; re-transcode it from the admin page"
    )


def _film_parts(plan: FilmPlan | None) -> list[str]:
    if plan is None:
        return []
    parts = [AUDIO_PART] if plan.has_audio else []
    groups = range(len(plan.groups))
    parts += [chunk_part(c.index, g) for g in groups for c in plan.chunks]
    return parts + [assembly_part(g) for g in groups]


async def _requeue_generation(
    pool: ArqRedis,
    settings: TranscoderSettings,
    video_id: int,
    generation: int,
    *,
    source_path: str,
    plan: FilmPlan | None,
) -> int:
    """Forget the results of every job of the generation that did not complete (arq queues a
    job id only once while its result is kept), clear the failure, and queue the video's
    first job again: for a film it re-queues every piece without a result (films.start_film),
    reusing the plan. An assembly is queued by the piece that completes its group; one whose
    group is complete already is queued here (the rule of films._queue_ready_assemblies)."""
    first = transcode_job_id(settings, video_id, generation)
    parts = _film_parts(plan)
    ids = {part: film_job_id(settings, video_id, generation, part) for part in parts}
    forgotten = {first}
    for piece_id in ids.values():
        result = await read_result(pool, piece_id)
        if result is not None and not (result.success and outcome_of(result.result) == "completed"):
            forgotten.add(piece_id)
    await pool.delete(*(result_key_prefix + i for i in forgotten))
    await VideoMarks(pool, settings).clear_failure(video_id, generation)
    queued = int(
        await enqueue(
            pool,
            settings,
            TRANSCODE_FUNCTION,
            first,
            first=True,
            video_id=video_id,
            generation=generation,
            source_path=source_path,
        )
    )
    if plan is None:
        return queued
    ledger = await FilmLedger(pool, settings, video_id, generation).read()
    for group in range(len(plan.groups)):
        part = assembly_part(group)
        lowest_done = group == 0 or assembly_part(0) in ledger.done
        if part in ledger.done or not ledger.group_ready(plan, group) or not lowest_done:
            continue
        queued += await enqueue(
            pool,
            settings,
            "film_assemble",
            ids[part],
            first=group == 0,
            video_id=video_id,
            generation=generation,
            group=group,
        )
    return queued
