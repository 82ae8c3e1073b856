"""What the transcoder publishes (progress, completed, failed) and consumes (uploaded,
deleted; see dispatcher.py).

Completed and failed events get an event id derived from (video, generation), so a
publish retried after NATS was down is the same message: JetStream drops the duplicate
within its window and the catalog's consumer recognises the id after that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

from videoflix_shared.bus import EventBus
from videoflix_shared.events import (
    Event,
    QueuedTranscode,
    RenditionBitrate,
    TranscodeCompleted,
    TranscodeFailed,
    TranscodeProgress,
    TranscodeQueueState,
    TranscodeRenditionReady,
)
from videoflix_transcoder.pipeline import MASTER_PLAYLIST, THUMBNAIL, EncodeResult
from videoflix_transcoder.queue import QueuedVideo

logger = logging.getLogger(__name__)

_EVENT_NAMESPACE = uuid.UUID("6f1d3c64-52f5-4b1e-9d0a-2b7f0c9e1a11")
PROGRESS_PUBLISH_TIMEOUT = 2.0


class PublishFailed(Exception):
    pass


def completed_event(*, video_id: int, result: EncodeResult) -> TranscodeCompleted:
    return TranscodeCompleted(
        event_id=uuid.uuid5(_EVENT_NAMESPACE, f"completed:{video_id}:{result.generation}"),
        video_id=video_id,
        generation=result.generation,
        duration_seconds=result.duration_seconds,
        width=result.width,
        height=result.height,
        renditions=result.renditions,
        thumbnail_path=f"hls/{video_id}/{THUMBNAIL}",
        master_playlist_path=f"hls/{video_id}/{MASTER_PLAYLIST}",
        renditions_bitrate=_bitrates(result),
    )


def _bitrates(result: EncodeResult) -> dict[str, RenditionBitrate]:
    return {
        name: RenditionBitrate.model_validate(rate)
        for name, rate in result.renditions_bitrate.items()
    }


def failed_event(*, video_id: int, generation: int, reason: str) -> TranscodeFailed:
    return TranscodeFailed(
        event_id=uuid.uuid5(_EVENT_NAMESPACE, f"failed:{video_id}:{generation}"),
        video_id=video_id,
        generation=generation,
        reason=reason,
    )


def rendition_ready_event(
    *, video_id: int, result: EncodeResult, rendition: str
) -> TranscodeRenditionReady:
    """`rendition` of a film's output is in place (`result`: the output as it is now)."""
    return TranscodeRenditionReady(
        event_id=uuid.uuid5(
            _EVENT_NAMESPACE, f"rendition:{video_id}:{result.generation}:{rendition}"
        ),
        video_id=video_id,
        generation=result.generation,
        rendition=rendition,
        renditions=result.renditions,
        duration_seconds=result.duration_seconds,
        width=result.width,
        height=result.height,
        thumbnail_path=f"hls/{video_id}/{THUMBNAIL}",
        master_playlist_path=f"hls/{video_id}/{MASTER_PLAYLIST}",
        renditions_bitrate=_bitrates(result),
    )


def progress_event(
    *,
    video_id: int,
    generation: int,
    percent: float,
    renditions_percent: dict[str, float],
    eta_seconds: float | None,
) -> TranscodeProgress:
    return TranscodeProgress(
        video_id=video_id,
        generation=generation,
        percent=percent,
        renditions_percent=renditions_percent,
        eta_seconds=eta_seconds,
    )


def queue_state_event(videos: list[QueuedVideo]) -> TranscodeQueueState:
    return TranscodeQueueState(
        videos=[
            QueuedTranscode(
                video_id=v.video_id,
                generation=v.generation,
                running=v.running,
                place=v.place,
                waiting_jobs=v.waiting_jobs,
            )
            for v in videos
        ]
    )


async def publish_reliably(
    bus: EventBus, event: Event, *, attempts: int = 3, pause: float = 1.0
) -> None:
    """Publish and wait for JetStream's ack, a few times; raises PublishFailed after that."""
    for attempt in range(1, attempts + 1):
        try:
            await bus.publish(event)
            return
        except Exception as exc:
            logger.warning(
                "publishing %s (attempt %d/%d) failed: %s", event.subject, attempt, attempts, exc
            )
            if attempt < attempts:
                await asyncio.sleep(pause * attempt)
    raise PublishFailed(f"could not publish {event.subject} for {event.event_id}")


class ProgressReporter:
    """Turns ffmpeg's frequent progress into a TranscodeProgress every `step` % or `interval` s.

    Publishing runs beside the encode and is best effort: a slow or absent NATS never
    slows ffmpeg down, and a dropped progress event is superseded by the next one.
    """

    def __init__(
        self,
        bus: EventBus,
        *,
        video_id: int,
        generation: int,
        step_percent: float,
        interval_seconds: float,
    ) -> None:
        self.bus = bus
        self.video_id = video_id
        self.generation = generation
        self.step_percent = step_percent
        self.interval_seconds = interval_seconds
        self.last_percent = 0.0
        self.last_time = time.monotonic()
        self._in_flight: asyncio.Task[None] | None = None

    def __call__(self, percent: float) -> None:
        now = time.monotonic()
        due = percent - self.last_percent >= self.step_percent or (
            now - self.last_time >= self.interval_seconds and percent > self.last_percent
        )
        if not due or (self._in_flight is not None and not self._in_flight.done()):
            return
        self.last_percent, self.last_time = percent, now
        event = TranscodeProgress(
            video_id=self.video_id, generation=self.generation, percent=round(percent, 1)
        )
        self._in_flight = asyncio.create_task(self._publish(event))

    async def _publish(self, event: TranscodeProgress) -> None:
        try:
            await self.bus.publish(event, timeout=PROGRESS_PUBLISH_TIMEOUT)
        except Exception as exc:
            logger.info("progress event dropped (%s)", exc)

    async def close(self) -> None:
        if self._in_flight is not None:
            self._in_flight.cancel()
            with contextlib.suppress(BaseException):
                await self._in_flight
