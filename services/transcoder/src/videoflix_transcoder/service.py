"""The transcode job and media deletion: what happens to one video, start to finish.

A job encodes into `hls/.tmp-<id>-<generation>-<random>/` and swaps that directory into
`hls/<id>` only when it is complete, so nobody ever sees half an output; a job that dies
leaves only its temporary directory, which its retry removes. The completion event is sent
after the swap; when NATS is down the job is retried later and, finding its output in
place, only publishes again.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
from pathlib import Path

from arq.connections import ArqRedis

from videoflix_shared.bus import EventBus
from videoflix_transcoder.events import ProgressReporter, completed_event, failed_event
from videoflix_transcoder.films import FilmJob, is_film, start_film
from videoflix_transcoder.outcomes import (
    JobOutcome,
    RetryLater,
    backoff_seconds,
    hls_dir,
    publish_or_retry,
    reason_to_skip,
    remove_work_dirs,
    replace_directory,
    resolve_source,
    unless_stale,
    uploads_dir,
)
from videoflix_transcoder.pipeline import EncodeResult, encode_video
from videoflix_transcoder.probe import probe_source
from videoflix_transcoder.queue import VideoMarks, cancel_queued_jobs
from videoflix_transcoder.settings import TranscoderSettings

logger = logging.getLogger(__name__)

__all__ = ["RetryLater", "backoff_seconds", "delete_video_media", "transcode_video"]


async def transcode_video(
    *,
    settings: TranscoderSettings,
    bus: EventBus,
    marks: VideoMarks,
    video_id: int,
    generation: int,
    source_path: str,
    attempt: int,
    film_queue: ArqRedis | None = None,
) -> str:
    """Run one attempt of transcode `(video_id, generation)`; returns what happened.

    A source longer than TRANSCODER_FILM_THRESHOLD_SECONDS is planned and queued as a film
    (films.py) when `film_queue` is given; everything else is encoded here in one pass.
    Raises RetryLater for transient failures (and while NATS cannot take the outcome).
    """
    media_root = settings.media_root
    final_dir = hls_dir(media_root, video_id)
    existing = EncodeResult.load(final_dir)
    known = await _publish_known_outcome(
        bus,
        marks,
        settings,
        video_id=video_id,
        generation=generation,
        existing=existing,
        attempt=attempt,
    )
    if known:
        return known
    remove_work_dirs(media_root, video_id, generation)
    skip = await reason_to_skip(marks, video_id, generation, existing)
    if skip:
        logger.info("video %s generation %s: %s", video_id, generation, skip)
        return f"skipped: {skip}"
    outcome = JobOutcome(bus, marks, settings, video_id, generation, attempt)
    if attempt > settings.max_attempts:
        return await outcome.give_up()
    try:
        source = resolve_source(media_root, source_path)
        if film_queue is not None:
            info = await probe_source(source, ffprobe_bin=settings.ffprobe_bin)
            if is_film(info, settings):
                job = FilmJob(settings, bus, film_queue, video_id, generation)
                return await start_film(job, source=source, source_path=source_path, info=info)
        result = await _encode_single_pass(
            settings, bus, marks, video_id=video_id, generation=generation, source=source
        )
    except Exception as error:
        return await outcome.settle(error)
    if isinstance(result, str):
        return result
    await publish_or_retry(
        bus, completed_event(video_id=video_id, result=result), attempt, settings
    )
    return "completed"


async def _publish_known_outcome(
    bus: EventBus,
    marks: VideoMarks,
    settings: TranscoderSettings,
    *,
    video_id: int,
    generation: int,
    existing: EncodeResult | None,
    attempt: int,
) -> str | None:
    """A retry whose outcome is already known only publishes it again."""
    if existing is not None and existing.generation == generation and existing.complete:
        await publish_or_retry(
            bus, completed_event(video_id=video_id, result=existing), attempt, settings
        )
        return "completed (output was already in place)"
    saved_reason = await marks.saved_failure(video_id, generation)
    if saved_reason is not None:
        await publish_or_retry(
            bus,
            failed_event(video_id=video_id, generation=generation, reason=saved_reason),
            attempt,
            settings,
        )
        return "failed (reason already known)"
    return None


async def _encode_single_pass(
    settings: TranscoderSettings,
    bus: EventBus,
    marks: VideoMarks,
    *,
    video_id: int,
    generation: int,
    source: Path,
) -> EncodeResult | str:
    """Today's path for a short source: one ffmpeg for the whole ladder into a temporary
    directory, swapped into place; a string says why nothing was swapped in."""
    media_root = settings.media_root
    final_dir = hls_dir(media_root, video_id)
    work_dir = media_root / "hls" / f".tmp-{video_id}-{generation}-{secrets.token_hex(4)}"
    reporter = ProgressReporter(
        bus,
        video_id=video_id,
        generation=generation,
        step_percent=settings.progress_step_percent,
        interval_seconds=settings.progress_interval_seconds,
    )
    try:
        work_dir.mkdir(parents=True)
        result = await unless_stale(
            marks,
            video_id,
            generation,
            encode_video(
                source=source,
                output_dir=work_dir,
                generation=generation,
                settings=settings,
                on_progress=reporter,
            ),
        )
        await reporter.close()
        if result is None:
            return "skipped: the video was deleted, re-transcoded or cancelled during the encode"
        result.save(work_dir)
        skip = await reason_to_skip(marks, video_id, generation, EncodeResult.load(final_dir))
        if skip:
            return f"skipped: {skip}"
        replace_directory(work_dir, final_dir)
        if await marks.is_deleted(video_id):  # deleted while we were swapping in
            shutil.rmtree(final_dir, ignore_errors=True)
            return "skipped: the video was deleted"
        return result
    finally:
        await reporter.close()
        # After the swap this holds the previous output (or nothing): either way, garbage.
        shutil.rmtree(work_dir, ignore_errors=True)


async def delete_video_media(
    *, settings: TranscoderSettings, marks: VideoMarks, video_id: int
) -> None:
    """Remove every file of the video; running or queued jobs of it see the mark and stop."""
    await marks.mark_deleted(video_id)
    media_root = settings.media_root
    for path in (hls_dir(media_root, video_id), uploads_dir(media_root, video_id)):
        await asyncio.to_thread(shutil.rmtree, path, True)
    remove_work_dirs(media_root, video_id)
    await cancel_queued_jobs(marks.redis, settings, video_id)
