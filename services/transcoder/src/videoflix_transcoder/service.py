"""The transcode job and media deletion: what happens to one video, start to finish.

A job encodes into `hls/.tmp-<id>-<generation>-<random>/` and swaps that directory into
`hls/<id>` only when it is complete, so nobody ever sees half an output; a job that dies
leaves only its temporary directory, which its retry removes. The completion event is sent
after the swap; when NATS is down the job is retried later and, finding its output in
place, only publishes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import secrets
import shutil
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from videoflix_shared.bus import EventBus
from videoflix_shared.events import Event
from videoflix_transcoder.errors import TranscodeError, invalid_source, transient
from videoflix_transcoder.events import (
    ProgressReporter,
    PublishFailed,
    completed_event,
    failed_event,
    publish_reliably,
)
from videoflix_transcoder.pipeline import EncodeResult, encode_video
from videoflix_transcoder.queue import VideoMarks
from videoflix_transcoder.settings import TranscoderSettings

logger = logging.getLogger(__name__)

DELETION_POLL_SECONDS = 2.0
MAX_BACKOFF_SECONDS = 600.0
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


class RetryLater(Exception):
    """The job should run again after `delay` seconds (a transient failure)."""

    def __init__(self, reason: str, *, delay: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


def hls_dir(media_root: Path, video_id: int) -> Path:
    return media_root / "hls" / str(video_id)


def uploads_dir(media_root: Path, video_id: int) -> Path:
    return media_root / "uploads" / str(video_id)


async def transcode_video(
    *,
    settings: TranscoderSettings,
    bus: EventBus,
    marks: VideoMarks,
    video_id: int,
    generation: int,
    source_path: str,
    attempt: int,
) -> str:
    """Run one attempt of transcode `(video_id, generation)`; returns what happened.

    Raises RetryLater for transient failures (and while NATS cannot take the outcome).
    """
    media_root = settings.media_root
    final_dir = hls_dir(media_root, video_id)
    existing = EncodeResult.load(final_dir)
    if existing is not None and existing.generation == generation:
        await _publish_or_retry(
            bus, completed_event(video_id=video_id, result=existing), attempt, settings
        )
        return "completed (output was already in place)"
    saved_reason = await marks.saved_failure(video_id, generation)
    if saved_reason is not None:
        await _publish_or_retry(
            bus,
            failed_event(video_id=video_id, generation=generation, reason=saved_reason),
            attempt,
            settings,
        )
        return "failed (reason already known)"

    remove_work_dirs(media_root, video_id, generation)
    skip = await _reason_to_skip(marks, video_id, generation, existing)
    if skip:
        logger.info("video %s generation %s: %s", video_id, generation, skip)
        return f"skipped: {skip}"
    if attempt > settings.max_attempts:
        return await _fail(
            bus,
            marks,
            settings,
            video_id=video_id,
            generation=generation,
            attempt=attempt,
            reason=(
                f"the worker stopped {attempt - 1} times in the middle of this encode "
                "(killed, restarted or out of memory); giving up"
            ),
        )

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
        source = resolve_source(media_root, source_path)
        result = await _encode_unless_deleted(
            marks,
            video_id,
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
            return "skipped: the video was deleted during the encode"
        result.save(work_dir)
        skip = await _reason_to_skip(marks, video_id, generation, EncodeResult.load(final_dir))
        if skip:
            return f"skipped: {skip}"
        replace_directory(work_dir, final_dir)
        if await marks.is_deleted(video_id):  # deleted while we were swapping in
            shutil.rmtree(final_dir, ignore_errors=True)
            return "skipped: the video was deleted"
    except Exception as error:
        # Anything else (disk full, permissions, a bug) is worth a retry, then a failure.
        exc = (
            error
            if isinstance(error, TranscodeError)
            else transient(f"{type(error).__name__}: {error}")
        )
        if await marks.is_deleted(video_id):  # its files vanished under ffmpeg: not a failure
            return "skipped: the video was deleted during the encode"
        if exc.permanent or attempt >= settings.max_attempts:
            reason = (
                exc.reason if exc.permanent else f"{exc.reason} (gave up after {attempt} attempts)"
            )
            return await _fail(
                bus,
                marks,
                settings,
                video_id=video_id,
                generation=generation,
                attempt=attempt,
                reason=reason,
            )
        logger.warning("video %s attempt %d failed, will retry: %s", video_id, attempt, exc.reason)
        raise RetryLater(exc.reason, delay=backoff_seconds(settings, attempt)) from None
    finally:
        await reporter.close()
        # After the swap this holds the previous output (or nothing): either way, garbage.
        shutil.rmtree(work_dir, ignore_errors=True)

    await _publish_or_retry(
        bus, completed_event(video_id=video_id, result=result), attempt, settings
    )
    return "completed"


async def delete_video_media(
    *, settings: TranscoderSettings, marks: VideoMarks, video_id: int
) -> None:
    """Remove every file of the video; running or queued jobs of it see the mark and stop."""
    await marks.mark_deleted(video_id)
    media_root = settings.media_root
    for path in (hls_dir(media_root, video_id), uploads_dir(media_root, video_id)):
        await asyncio.to_thread(shutil.rmtree, path, True)
    remove_work_dirs(media_root, video_id)


def resolve_source(media_root: Path, source_path: str) -> Path:
    """The upload's absolute path; refuses anything outside the media volume."""
    root = media_root.resolve()
    candidate = (root / source_path).resolve()
    if Path(source_path).is_absolute() or not candidate.is_relative_to(root):
        raise invalid_source(f"the source path {source_path!r} is not inside the media volume")
    return candidate


def remove_work_dirs(media_root: Path, video_id: int, generation: int | None = None) -> None:
    """Remove temporary encode directories left by killed attempts of this video."""
    pattern = f".tmp-{video_id}-{generation}-*" if generation is not None else f".tmp-{video_id}-*"
    hls_root = media_root / "hls"
    if hls_root.is_dir():
        for leftover in hls_root.glob(pattern):
            shutil.rmtree(leftover, ignore_errors=True)


def replace_directory(new: Path, target: Path) -> None:
    """Put `new` at `target` in one step; the previous `target` (if any) ends up at `new`.

    On Linux renameat2(RENAME_EXCHANGE) swaps both atomically, so `target` never vanishes
    while a player reads it; elsewhere two renames leave a gap of microseconds.
    """
    if not target.exists():
        os.rename(new, target)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is not None:
        done = renameat2(
            _AT_FDCWD, os.fsencode(new), _AT_FDCWD, os.fsencode(target), _RENAME_EXCHANGE
        )
        if done == 0:
            return
    old = target.with_name(f".old-{target.name}-{secrets.token_hex(4)}")
    os.rename(target, old)
    os.rename(new, target)
    shutil.rmtree(old, ignore_errors=True)


def backoff_seconds(settings: TranscoderSettings, attempt: int) -> float:
    return min(MAX_BACKOFF_SECONDS, settings.retry_backoff_seconds * 2.0 ** (attempt - 1))


async def _reason_to_skip(
    marks: VideoMarks, video_id: int, generation: int, existing: EncodeResult | None
) -> str | None:
    if await marks.is_deleted(video_id):
        return "the video was deleted"
    newest = await marks.newest_generation(video_id)
    if existing is not None and existing.generation > newest:
        newest = existing.generation
    if newest > generation:
        return f"superseded by generation {newest}"
    return None


async def _encode_unless_deleted(
    marks: VideoMarks, video_id: int, encoding: Coroutine[Any, Any, EncodeResult]
) -> EncodeResult | None:
    encode = asyncio.create_task(encoding)
    try:
        while True:
            done, _ = await asyncio.wait({encode}, timeout=DELETION_POLL_SECONDS)
            if done:
                return encode.result()
            with contextlib.suppress(Exception):  # Redis hiccup: keep encoding
                if await marks.is_deleted(video_id):
                    logger.info("video %s was deleted: stopping its encode", video_id)
                    return None
    finally:
        if not encode.done():
            encode.cancel()
            with contextlib.suppress(BaseException):
                await encode


async def _fail(
    bus: EventBus,
    marks: VideoMarks,
    settings: TranscoderSettings,
    *,
    video_id: int,
    generation: int,
    attempt: int,
    reason: str,
) -> str:
    logger.warning("video %s generation %s failed: %s", video_id, generation, reason)
    await marks.save_failure(video_id, generation, reason)
    event = failed_event(video_id=video_id, generation=generation, reason=reason)
    await _publish_or_retry(bus, event, attempt, settings)
    return "failed"


async def _publish_or_retry(
    bus: EventBus, event: Event, attempt: int, settings: TranscoderSettings
) -> None:
    try:
        await publish_reliably(bus, event)
    except PublishFailed as exc:
        raise RetryLater(str(exc), delay=backoff_seconds(settings, attempt)) from None
