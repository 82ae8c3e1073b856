"""Catalog business logic: videos, categories, transcoding state and the stuck-job sweeper.

No HTTP here: functions take a session and keyword arguments, return models (the API
builds the response bodies), raise domain errors (`videoflix_shared.errors`) for anything
a client did wrong, and stage events in the outbox in the same transaction as the change
they announce. Callers invalidate the public list cache after commit.

An upload ends the same way however its bytes arrived (one multipart request, or a
resumable upload): `check_upload_metadata_so_far` refuses bad metadata early,
`parse_upload_metadata` validates it completely, and `record_upload` probes the staged
file and creates the video with its events.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from videoflix_catalog.metrics import UPLOAD_TO_PLAYABLE, UPLOAD_TO_READY
from videoflix_catalog.models import Category, TranscoderHeartbeat, Video, VideoStatus
from videoflix_catalog.probe import ProbeResult, probe_video
from videoflix_catalog.schemas import UploadForm, UploadFormSoFar, VideoUpdate
from videoflix_shared.errors import Conflict, InvalidInput, NotFound
from videoflix_shared.events import (
    Event,
    TranscodeCompleted,
    TranscodeFailed,
    TranscodeProgress,
    TranscodeQueueState,
    TranscodeRenditionReady,
    VideoAccessChanged,
    VideoDeleted,
    VideoUploaded,
    utcnow,
)
from videoflix_shared.outbox import add_event

logger = logging.getLogger(__name__)

IN_FLIGHT = (VideoStatus.UPLOADED.value, VideoStatus.PROCESSING.value)


def not_found(what: str = "Video") -> NotFound:
    return NotFound(f"{what} not found.")


# -- reading ---------------------------------------------------------------------------


async def list_playable_videos(session: AsyncSession) -> list[Video]:
    """What the public list shows: published and ready, newest first."""
    rows = await session.scalars(
        select(Video)
        .where(Video.published.is_(True), Video.status == VideoStatus.READY.value)
        .order_by(Video.created_at.desc(), Video.id.desc())
    )
    return list(rows)


async def list_videos(session: AsyncSession) -> list[Video]:
    return list(await session.scalars(select(Video).order_by(Video.created_at.desc())))


async def get_video(session: AsyncSession, *, video_id: int, for_update: bool = False) -> Video:
    query = select(Video).where(Video.id == video_id)
    if for_update:
        query = query.with_for_update(of=Video)
    video = await session.scalar(query)
    if video is None:
        raise not_found()
    return video


# -- categories ------------------------------------------------------------------------


async def resolve_category(session: AsyncSession, *, ref: int | str) -> Category:
    """A category by id, or by name (case-insensitive); InvalidInput on `category` if none."""
    category = None
    if isinstance(ref, str):
        category = await session.scalar(
            select(Category).where(func.lower(Category.name) == ref.strip().lower())
        )
        if category is None and ref.strip().isdigit():
            ref = int(ref.strip())
    if category is None and isinstance(ref, int) and -(2**31) <= ref < 2**31:
        category = await session.get(Category, ref)
    if category is None:
        raise InvalidInput("Unknown category.", field="category")
    return category


@dataclass(frozen=True)
class CategoryUsage:
    category: Category
    video_count: int


async def list_categories(session: AsyncSession) -> list[CategoryUsage]:
    counts = (
        select(Video.category_id, func.count().label("n")).group_by(Video.category_id).subquery()
    )
    rows = await session.execute(
        select(Category, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.category_id == Category.id)
        .order_by(Category.name)
    )
    return [CategoryUsage(category, count) for category, count in rows]


async def _check_name_free(session: AsyncSession, name: str, *, except_id: int | None) -> None:
    existing = await session.scalar(
        select(Category).where(func.lower(Category.name) == name.lower())
    )
    if existing is not None and existing.id != except_id:
        raise InvalidInput("A category with this name already exists.", field="name")


async def create_category(session: AsyncSession, *, name: str) -> Category:
    await _check_name_free(session, name, except_id=None)
    category = Category(name=name)
    session.add(category)
    await _commit_or_conflict(session)
    return category


async def rename_category(session: AsyncSession, *, category_id: int, name: str) -> CategoryUsage:
    category = await session.get(Category, category_id, with_for_update=True)
    if category is None:
        raise not_found("Category")
    await _check_name_free(session, name, except_id=category_id)
    category.name = name
    count = await session.scalar(
        select(func.count()).select_from(Video).where(Video.category_id == category_id)
    )
    await _commit_or_conflict(session)
    return CategoryUsage(category, count or 0)


async def delete_category(session: AsyncSession, *, category_id: int) -> None:
    category = await session.get(Category, category_id, with_for_update=True)
    if category is None:
        raise not_found("Category")
    used = await session.scalar(
        select(func.count()).select_from(Video).where(Video.category_id == category_id)
    )
    if used:
        raise Conflict(f"The category is used by {used} video(s); move or delete them first.")
    await session.delete(category)
    await _commit_or_conflict(session)


async def _commit_or_conflict(session: AsyncSession) -> None:
    try:
        await session.commit()
    except IntegrityError as exc:  # a concurrent request won a unique/foreign-key race
        await session.rollback()
        raise Conflict("Conflicting change; reload and try again.") from exc


# -- uploads and edits -----------------------------------------------------------------


@dataclass(frozen=True)
class VideoMetadata:
    title: str
    description: str
    category: Category
    publish_when_ready: bool = True


@dataclass(frozen=True)
class StagedSource:
    """A complete source file on the media volume under a temporary name, on the same
    filesystem as `uploads/<id>/` (so recording it is a rename, never a copy)."""

    path: Path
    size: int
    extension: str  # for `source.<ext>`: see `safe_extension`


def safe_extension(filename: str) -> str:
    """A safe extension for `source.<ext>` from the client's file name ("bin" if none)."""
    suffix = Path(filename).suffix.lower().lstrip(".")
    return suffix if re.fullmatch(r"[a-z0-9]{1,8}", suffix) else "bin"


UNEXPECTED_FIELDS = "Unexpected form field(s): {}."
FIELD_REQUIRED = "This field is required."
Form = TypeVar("Form", bound=BaseModel)


def _validated_form(form: type[Form], fields: Mapping[str, str]) -> Form:
    """`fields` as `form`, or InvalidInput naming every field at fault (unknown ones under
    `detail`)."""
    errors: dict[str, list[str]] = {}
    valid = None
    try:
        valid = form.model_validate({k: v for k, v in fields.items() if k in form.model_fields})
    except ValidationError as exc:
        for error in exc.errors():
            message = FIELD_REQUIRED if error["type"] == "missing" else error["msg"]
            errors.setdefault(str(error["loc"][0]), []).append(message)
    unknown = sorted(set(fields) - set(form.model_fields))
    if unknown:
        errors["detail"] = [UNEXPECTED_FIELDS.format(", ".join(unknown))]
    if errors or valid is None:
        raise InvalidInput.for_fields(errors)
    return valid


async def check_upload_metadata_so_far(session: AsyncSession, fields: Mapping[str, str]) -> None:
    """Refuse bad metadata sent ahead of the file, before the file is read: the fields
    present must be valid (missing ones may still come)."""
    form = _validated_form(UploadFormSoFar, fields)
    if form.category is not None:
        await resolve_category(session, ref=form.category)


async def parse_upload_metadata(session: AsyncSession, fields: Mapping[str, str]) -> VideoMetadata:
    """An upload's complete metadata (title, description, category, publish_when_ready)
    from its text fields, with the category resolved; InvalidInput otherwise."""
    form = _validated_form(UploadForm, fields)
    return VideoMetadata(
        title=form.title,
        description=form.description,
        category=await resolve_category(session, ref=form.category),
        publish_when_ready=form.publish_when_ready,
    )


async def record_upload(
    session: AsyncSession,
    *,
    fields: Mapping[str, str],
    source: StagedSource,
    media_root: Path,
    ffprobe_bin: str,
    probe_timeout: float,
) -> Video:
    """The end of every upload, once all its bytes are staged: validate the metadata, probe
    the file (`Unsupported` unless it is a video), and record the video with its events.

    The staged file is renamed into place on success; on failure the caller discards it.
    """
    metadata = await parse_upload_metadata(session, fields)
    probe = await probe_video(source.path, ffprobe_bin=ffprobe_bin, timeout=probe_timeout)
    return await create_video(
        session, metadata=metadata, source=source, probe=probe, media_root=media_root
    )


async def create_video(
    session: AsyncSession,
    *,
    metadata: VideoMetadata,
    source: StagedSource,
    probe: ProbeResult,
    media_root: Path,
) -> Video:
    """Record an uploaded video and its upload event in one transaction.

    The file moves from its temporary name to `uploads/<id>/source.<ext>` before commit; if
    the commit fails the file is removed again, so nothing is left behind either way.
    """
    now = utcnow()
    video = Video(
        title=metadata.title,
        description=metadata.description,
        category=metadata.category,
        status=VideoStatus.UPLOADED.value,
        progress=0.0,
        generation=1,
        sweep_retries=0,
        source_path="",
        source_size=source.size,
        width=probe.width,
        height=probe.height,
        duration_seconds=probe.duration_seconds,
        published=False,
        publish_when_ready=metadata.publish_when_ready,
        created_at=now,
        updated_at=now,
        last_activity_at=now,
    )
    session.add(video)
    await session.flush()  # assigns the id
    video.source_path = f"uploads/{video.id}/source.{source.extension}"
    target = media_root / video.source_path
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source.path, target)
    add_event(
        session,
        VideoUploaded(
            video_id=video.id, generation=video.generation, source_path=video.source_path
        ),
    )
    announce_access(session, video)
    try:
        await session.commit()
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(target.parent)
        raise
    logger.info("video %s uploaded (%d bytes): transcode requested", video.id, source.size)
    return video


async def update_video(session: AsyncSession, *, video_id: int, changes: VideoUpdate) -> Video:
    video = await get_video(session, video_id=video_id, for_update=True)
    if changes.title is not None:
        video.title = changes.title
    if changes.description is not None:
        video.description = changes.description
    if changes.category is not None:
        video.category = await resolve_category(session, ref=changes.category)
    if changes.publish_when_ready is not None:
        video.publish_when_ready = changes.publish_when_ready
    if changes.published is not None:
        if not changes.published:
            video.publish_when_ready = False  # an explicit "not now" wins over the default
        if changes.published != video.published:
            video.published = changes.published
            announce_access(session, video)
    video.updated_at = utcnow()
    await session.commit()
    return video


async def delete_video(session: AsyncSession, *, video_id: int) -> None:
    """Delete the record; the transcoder removes the media when it sees the event."""
    video = await get_video(session, video_id=video_id, for_update=True)
    await session.delete(video)
    add_event(session, VideoDeleted(video_id=video_id))
    announce_access(session, video, deleted=True)
    await session.commit()


def _start_new_generation(session: AsyncSession, video: Video, *, now: datetime) -> None:
    was_ready = video.status == VideoStatus.READY.value
    video.generation += 1
    video.status = VideoStatus.UPLOADED.value
    video.progress = 0.0
    video.failure_reason = None
    video.last_activity_at = now
    video.updated_at = now
    add_event(
        session,
        VideoUploaded(
            video_id=video.id, generation=video.generation, source_path=video.source_path
        ),
    )
    if was_ready:  # its files are about to be replaced: not playable until the new ones
        announce_access(session, video)


async def retranscode_video(session: AsyncSession, *, video_id: int, media_root: Path) -> Video:
    """Transcode the stored source again as a new generation (older events are ignored)."""
    video = await get_video(session, video_id=video_id, for_update=True)
    if not (media_root / video.source_path).is_file():
        raise Conflict("The source file of this video is gone; upload it again.")
    _start_new_generation(session, video, now=utcnow())
    video.sweep_retries = 0
    await session.commit()
    return video


# -- playback access ------------------------------------------------------------------


def access_event(video: Video, *, deleted: bool = False) -> VideoAccessChanged:
    return VideoAccessChanged(
        video_id=video.id,
        published=video.published and not deleted,
        ready=video.status == VideoStatus.READY.value and not deleted,
        deleted=deleted,
    )


def announce_access(session: AsyncSession, video: Video, *, deleted: bool = False) -> None:
    """Stage the video's playback state for streaming, in the transaction that changes it.

    Callers hold the video's row lock (or created the row), so the announcements of one
    video are created, committed and (one relay at a time) published in order.
    """
    add_event(session, access_event(video, deleted=deleted))


async def reconcile_access(
    session: AsyncSession,
    *,
    announced: dict[int, VideoAccessChanged],
    batch_size: int = 1000,
) -> int:
    """Announce every video whose playback state the ACCESS stream does not show (catalog's
    start-up backfill); `announced` is the stream's last announcement per video.

    Makes an upgraded installation, whose videos predate the stream, playable, and rebuilds
    a lost stream; a restart with the stream intact stages nothing. Rows are read FOR SHARE,
    so no change commits between reading a state and staging it, and a video the stream
    still shows but the database no longer has gets its tombstone. Staging one state twice
    (two processes starting together, an announcement still in the outbox) is harmless:
    the same state again, in commit order. Returns how many were staged.
    """
    staged = 0
    last_id = 0
    existing: set[int] = set()
    while True:
        videos = (
            await session.scalars(
                select(Video)
                .where(Video.id > last_id)
                .order_by(Video.id)
                .limit(batch_size)
                .with_for_update(of=Video, read=True)
            )
        ).all()
        if not videos:
            break
        for video in videos:
            existing.add(video.id)
            if not _same_state(announced.get(video.id), access_event(video)):
                announce_access(session, video)
                staged += 1
        last_id = videos[-1].id
    for video_id, known in announced.items():
        if video_id not in existing and not known.deleted:
            add_event(
                session,
                VideoAccessChanged(video_id=video_id, published=False, ready=False, deleted=True),
            )
            staged += 1
    await session.commit()
    return staged


def _same_state(known: VideoAccessChanged | None, current: VideoAccessChanged) -> bool:
    return known is not None and (known.published, known.ready, known.deleted) == (
        current.published,
        current.ready,
        current.deleted,
    )


# -- transcoder events -----------------------------------------------------------------


TranscoderOutcome = (
    TranscodeProgress | TranscodeCompleted | TranscodeFailed | TranscodeRenditionReady
)


async def apply_transcoder_event(session: AsyncSession, *, event: Event) -> bool:
    """Apply a transcoder event idempotently; True when a video changed.

    Events for unknown (deleted) videos or another generation are ignored. Within a
    generation `failed` is final for progress, and `ready` for progress of the status (a
    film's progress still moves its per-rung figures). A completion or a ready rendition
    of the current generation wins over a failure: the output is there and plays (the
    sweeper may have given up on a video whose events were only late).
    """
    if isinstance(event, TranscodeQueueState):
        return await record_queue_state(session, event=event)
    if not isinstance(event, TranscoderOutcome):
        return False
    video = await session.scalar(
        select(Video).where(Video.id == event.video_id).with_for_update(of=Video)
    )
    if video is None or video.generation != event.generation:
        logger.info(
            "ignoring %s for video %s generation %s (current: %s)",
            event.subject,
            event.video_id,
            event.generation,
            None if video is None else video.generation,
        )
        await session.rollback()
        return False
    was_playable = video.status == VideoStatus.READY.value
    changed = _apply_outcome(session, video, event)
    if not changed:
        await session.rollback()
        return False
    now = utcnow()
    video.queue_place = None
    video.last_activity_at = now
    video.updated_at = now
    await session.commit()
    _observe_upload_timings(video, event, was_playable=was_playable)
    if not isinstance(event, TranscodeProgress):  # progress would flood the log
        logger.info(
            "video %s generation %s: %s applied, status %s",
            video.id,
            video.generation,
            event.subject,
            video.status,
        )
    return True


def _observe_upload_timings(video: Video, event: TranscoderOutcome, *, was_playable: bool) -> None:
    """Upload → first playable and → ready (metrics.py), when `event` made the video so and
    its current transcode began with its upload (sweeper retries included; an admin's
    re-transcode, which resets `sweep_retries`, is no upload)."""
    if video.generation - video.sweep_retries != 1:
        return
    if not isinstance(event, TranscodeCompleted | TranscodeRenditionReady):
        return
    seconds = max(0.0, (event.occurred_at - video.created_at).total_seconds())
    if not was_playable and video.status == VideoStatus.READY.value:
        UPLOAD_TO_PLAYABLE.observe(seconds)
    if isinstance(event, TranscodeCompleted):
        UPLOAD_TO_READY.observe(seconds)


def _apply_outcome(session: AsyncSession, video: Video, event: TranscoderOutcome) -> bool:
    if isinstance(event, TranscodeProgress):
        return _apply_progress(video, event)
    if isinstance(event, TranscodeFailed):
        if video.status not in IN_FLIGHT:
            return False
        video.status = VideoStatus.FAILED.value
        video.failure_reason = event.reason[:2000] or "Transcoding failed."
        return True
    if isinstance(event, TranscodeCompleted):
        if video.status == VideoStatus.READY.value and video.progress >= 100:
            return False
        video.progress = 100.0
        video.eta_seconds = None
        video.renditions_progress = {name: 100.0 for name in event.renditions}
    elif video.status == VideoStatus.READY.value and set(event.renditions) <= set(
        video.renditions or []
    ):
        return False
    _mark_playable(session, video, event)
    return True


def _apply_progress(video: Video, event: TranscodeProgress) -> bool:
    if video.status == VideoStatus.FAILED.value:
        return False
    if video.status == VideoStatus.READY.value and (
        video.progress >= 100 or not event.renditions_percent
    ):
        return False
    if video.status == VideoStatus.UPLOADED.value:
        video.status = VideoStatus.PROCESSING.value
    video.progress = max(video.progress, min(event.percent, 99.9))
    if event.renditions_percent:
        merged = dict(video.renditions_progress or {})
        for rung, percent in event.renditions_percent.items():
            merged[rung] = max(merged.get(rung, 0.0), percent)
        video.renditions_progress = merged
    if event.eta_seconds is not None:  # a chunk's own progress reports carry none
        video.eta_seconds = event.eta_seconds
    return True


def _mark_playable(
    session: AsyncSession, video: Video, event: TranscodeCompleted | TranscodeRenditionReady
) -> None:
    """The video plays (its lowest rung at least): `ready`, with what the transcoder
    wrote; published now if it was meant to be once ready."""
    before = (video.status, video.published)
    video.status = VideoStatus.READY.value
    video.duration_seconds = event.duration_seconds
    video.width = event.width
    video.height = event.height
    video.renditions = list(event.renditions)
    # Every ready rendition's (a film's event lists all of them so far).
    video.renditions_bitrate = {
        name: rate.model_dump() for name, rate in event.renditions_bitrate.items()
    }
    video.thumbnail_path = event.thumbnail_path
    video.master_playlist_path = event.master_playlist_path
    video.failure_reason = None
    if isinstance(event, TranscodeRenditionReady):
        progress = dict(video.renditions_progress or {})
        progress.update({name: 100.0 for name in event.renditions})
        video.renditions_progress = progress
    if video.publish_when_ready:
        video.published, video.publish_when_ready = True, False
    if (video.status, video.published) != before:
        announce_access(session, video)


async def record_queue_state(session: AsyncSession, *, event: TranscodeQueueState) -> bool:
    """The transcoder's heartbeat: note when it was heard, and that every video it has
    queued or running is alive (with its place), so none of them is taken for stuck."""
    now = utcnow()
    heartbeat = await session.get(TranscoderHeartbeat, 1, with_for_update=True)
    if heartbeat is None:
        session.add(TranscoderHeartbeat(id=1, seen_at=now))
    else:
        heartbeat.seen_at = max(heartbeat.seen_at, now)
    places = {(v.video_id, v.generation): v for v in event.videos}
    changed = False
    if places:
        videos = await session.scalars(
            select(Video)
            .where(Video.id.in_([v.video_id for v in event.videos]))
            .order_by(Video.id)
            .with_for_update(of=Video)
        )
        for video in videos:
            queued = places.get((video.id, video.generation))
            if queued is None:
                continue
            video.last_activity_at = now
            place = None if queued.running else queued.place
            changed = changed or place != video.queue_place
            video.queue_place = place
    await session.commit()
    return changed


async def transcoder_last_heard(session: AsyncSession) -> datetime | None:
    heartbeat = await session.get(TranscoderHeartbeat, 1)
    return None if heartbeat is None else heartbeat.seen_at


# -- stuck-job sweeper -----------------------------------------------------------------


@dataclass(frozen=True)
class SweepResult:
    retried: list[int]
    failed: list[int]


async def sweep_stuck_videos(
    session: AsyncSession,
    *,
    stuck_after: timedelta,
    max_retries: int,
    now: datetime | None = None,
    batch_size: int = 100,
) -> SweepResult:
    """Re-publish the upload event of videos without progress for `stuck_after`, as a new
    generation, at most `max_retries` times; after that mark them failed with a reason.

    Rows are claimed with SKIP LOCKED, so several replicas can sweep at once.
    """
    now = now or utcnow()
    stuck = (
        await session.scalars(
            select(Video)
            .where(Video.status.in_(IN_FLIGHT), Video.last_activity_at < now - stuck_after)
            .order_by(Video.last_activity_at)
            .limit(batch_size)
            .with_for_update(of=Video, skip_locked=True)
        )
    ).all()
    retried, failed = [], []
    for video in stuck:
        if video.sweep_retries < max_retries:
            video.sweep_retries += 1
            _start_new_generation(session, video, now=now)
            retried.append(video.id)
        else:
            minutes = stuck_after.total_seconds() / 60
            video.status = VideoStatus.FAILED.value
            video.failure_reason = (
                f"Transcoding made no progress for {minutes:g} minutes after "
                f"{video.sweep_retries + 1} attempt(s); check the transcoder workers and "
                "re-transcode."
            )
            video.updated_at = now
            failed.append(video.id)
    await session.commit()
    if retried or failed:
        logger.warning("stuck-job sweep: retried %s, failed %s", retried, failed)
    return SweepResult(retried=retried, failed=failed)
