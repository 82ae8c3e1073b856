"""How a transcode job ends, shared by the single-pass job (service.py) and the film jobs
(films.py): skipped (deleted or superseded), retried later, failed with a reason, or its
output swapped into place atomically; and where a video's files live.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from videoflix_shared.bus import EventBus
from videoflix_shared.events import Event
from videoflix_transcoder.errors import TranscodeError, invalid_source, transient
from videoflix_transcoder.events import PublishFailed, failed_event, publish_reliably
from videoflix_transcoder.pipeline import EncodeResult
from videoflix_transcoder.queue import VideoMarks
from videoflix_transcoder.settings import TranscoderSettings

logger = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 600.0
STALE_POLL_SECONDS = 2.0
T = TypeVar("T")
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


def resolve_source(media_root: Path, source_path: str) -> Path:
    """The upload's absolute path; refuses anything outside the media volume."""
    root = media_root.resolve()
    candidate = (root / source_path).resolve()
    if Path(source_path).is_absolute() or not candidate.is_relative_to(root):
        raise invalid_source(f"the source path {source_path!r} is not inside the media volume")
    return candidate


def remove_work_dirs(media_root: Path, video_id: int, generation: int | None = None) -> None:
    """Remove the video's work directories: with `generation`, what killed attempts of it
    left (`.tmp-<id>-<generation>-*`) and everything of older generations, which a newer
    one supersedes (a failed film's pieces are kept for a retry of their own generation
    only); without it, every one (films' included: the video is deleted)."""
    hls_root = media_root / "hls"
    if not hls_root.is_dir():
        return
    for pattern in (f".tmp-{video_id}-*", f".film-{video_id}-*"):
        for leftover in hls_root.glob(pattern):
            if (
                generation is None
                or _work_generation(leftover.name) < generation
                or leftover.name.startswith(f".tmp-{video_id}-{generation}-")
            ):
                shutil.rmtree(leftover, ignore_errors=True)


def _work_generation(name: str) -> int:
    """The generation in `.tmp-<id>-<generation>-<random>` or `.film-<id>-<generation>`."""
    part = name.split("-")[2] if name.count("-") >= 2 else ""
    return int(part) if part.isdigit() else 0


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


async def reason_to_skip(
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


async def fail(
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
    await publish_or_retry(bus, event, attempt, settings)
    return "failed"


async def publish_or_retry(
    bus: EventBus, event: Event, attempt: int, settings: TranscoderSettings
) -> None:
    try:
        await publish_reliably(bus, event)
    except PublishFailed as exc:
        raise RetryLater(str(exc), delay=backoff_seconds(settings, attempt)) from None


@dataclass(frozen=True)
class JobOutcome:
    """How an attempt of one (video, generation) that went wrong ends."""

    bus: EventBus
    marks: VideoMarks
    settings: TranscoderSettings
    video_id: int
    generation: int
    attempt: int

    async def give_up(self) -> str:
        return await self._fail(
            f"the worker stopped {self.attempt - 1} times in the middle of this encode "
            "(killed, restarted or out of memory); giving up"
        )

    async def settle(self, error: Exception) -> str:
        """Fail at once (permanent, or out of attempts) or raise RetryLater with backoff;
        files vanishing because the video was deleted is no failure at all."""
        # Anything else (disk full, permissions, a bug) is worth a retry, then a failure.
        exc = (
            error
            if isinstance(error, TranscodeError)
            else transient(f"{type(error).__name__}: {error}")
        )
        if await self.marks.is_deleted(self.video_id):
            return "skipped: the video was deleted during the encode"
        if exc.permanent or self.attempt >= self.settings.max_attempts:
            reason = (
                exc.reason
                if exc.permanent
                else f"{exc.reason} (gave up after {self.attempt} attempts)"
            )
            return await self._fail(reason)
        logger.warning(
            "video %s attempt %d failed, will retry: %s", self.video_id, self.attempt, exc.reason
        )
        raise RetryLater(exc.reason, delay=backoff_seconds(self.settings, self.attempt))

    async def _fail(self, reason: str) -> str:
        return await fail(
            self.bus,
            self.marks,
            self.settings,
            video_id=self.video_id,
            generation=self.generation,
            attempt=self.attempt,
            reason=reason,
        )


async def unless_stale(
    marks: VideoMarks, video_id: int, generation: int, work: Coroutine[Any, Any, T]
) -> T | None:
    """Run `work`, but stop it (None) as soon as the video is deleted, a newer generation
    of it was queued or this generation failed (another piece of a film failed, or an
    operator cancelled it: job_control.py): a re-transcode, a deletion or a cancellation
    stops running encodes within seconds."""
    task = asyncio.create_task(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=STALE_POLL_SECONDS)
            if done:
                return task.result()
            with contextlib.suppress(Exception):  # Redis hiccup: keep encoding
                if await marks.is_deleted(video_id):
                    logger.info("video %s was deleted: stopping its encode", video_id)
                    return None
                if await marks.newest_generation(video_id) > generation:
                    logger.info("video %s was re-transcoded: stopping its encode", video_id)
                    return None
                if await marks.saved_failure(video_id, generation) is not None:
                    logger.info("video %s failed or was cancelled: stopping its encode", video_id)
                    return None
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
