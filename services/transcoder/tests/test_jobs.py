"""One transcode job against real ffmpeg, Redis and NATS: atomic output, events, retries."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

from videoflix_shared.bus import EventBus
from videoflix_shared.events import TranscodeCompleted, TranscodeFailed, TranscodeProgress
from videoflix_shared.tracing import TraceIdFilter, parse_traceparent
from videoflix_testing.plugin import wait_until_async
from videoflix_transcoder.pipeline import EncodeResult
from videoflix_transcoder.queue import VideoMarks
from videoflix_transcoder.service import RetryLater, delete_video_media, transcode_video
from videoflix_transcoder.settings import TranscoderSettings
from videoflix_transcoder.worker import traced, transcode_job

from .conftest import place_upload

pytestmark = pytest.mark.slow


def leftovers(media_root: Path, video_id: int) -> list[str]:
    hls = media_root / "hls"
    return sorted(p.name for p in hls.glob(f".*-{video_id}-*")) if hls.exists() else []


async def run_job(
    settings: TranscoderSettings,
    bus: EventBus,
    marks: VideoMarks,
    video_id: int,
    source_path: str,
    *,
    generation: int = 1,
    attempt: int = 1,
) -> str:
    return await transcode_video(
        settings=settings,
        bus=bus,
        marks=marks,
        video_id=video_id,
        generation=generation,
        source_path=source_path,
        attempt=attempt,
    )


async def test_finished_job_is_swapped_into_place_and_announced(
    settings: TranscoderSettings,
    event_bus: EventBus,
    marks: VideoMarks,
    media_root: Path,
    video_id: int,
    make_clip: Callable[..., Path],
    event_reader: Callable[..., object],
) -> None:
    source_path = place_upload(
        media_root, video_id, make_clip("job.mp4", size="640x360", seconds=3)
    )

    outcome = await run_job(settings, event_bus, marks, video_id, source_path)

    assert outcome == "completed"
    output = media_root / "hls" / str(video_id)
    assert (output / "master.m3u8").is_file()
    assert (output / "thumbnail.jpg").is_file()
    assert (output / "480p" / "index.m3u8").is_file()
    assert (output / "480p" / "seg_00000.ts").is_file()
    assert leftovers(media_root, video_id) == []
    events = await event_reader(video_id)
    completed = [e for e in events if isinstance(e, TranscodeCompleted)]
    assert len(completed) == 1
    assert completed[0].model_dump(include={"generation", "width", "height", "renditions"}) == {
        "generation": 1,
        "width": 640,
        "height": 360,
        "renditions": ["480p"],
    }
    assert completed[0].duration_seconds == pytest.approx(3, abs=0.1)
    assert completed[0].thumbnail_path == f"hls/{video_id}/thumbnail.jpg"
    assert completed[0].master_playlist_path == f"hls/{video_id}/master.m3u8"
    assert (media_root / completed[0].master_playlist_path).is_file()
    progress = [e for e in events if isinstance(e, TranscodeProgress)]
    assert progress
    assert all(e.generation == 1 and 0 < e.percent <= 100 for e in progress)


async def test_retranscode_replaces_the_previous_output_in_one_step_and_clears_older_work(
    settings: TranscoderSettings,
    event_bus: EventBus,
    marks: VideoMarks,
    media_root: Path,
    video_id: int,
    make_clip: Callable[..., Path],
) -> None:
    first = place_upload(media_root, video_id, make_clip("small.mp4"))
    assert await run_job(settings, event_bus, marks, video_id, first) == "completed"
    second = place_upload(media_root, video_id, make_clip("hd720.mp4", size="1280x720", seconds=2))
    # What generation 1 could have left: a failed film's pieces (kept for an operator's
    # retry of that generation) and a killed attempt's temporary output.
    for stale in (f".film-{video_id}-1/480p", f".tmp-{video_id}-1-dead"):
        (media_root / "hls" / stale).mkdir(parents=True)

    outcome = await run_job(settings, event_bus, marks, video_id, second, generation=2)

    assert outcome == "completed"
    output = media_root / "hls" / str(video_id)
    assert EncodeResult.load(output).generation == 2
    assert sorted(p.name for p in output.iterdir() if p.is_dir()) == ["480p", "720p"]
    assert leftovers(media_root, video_id) == []
    # A late retry of the older generation must not put the old video back.
    assert await run_job(settings, event_bus, marks, video_id, first, generation=1, attempt=2) == (
        "skipped: superseded by generation 2"
    )
    assert EncodeResult.load(output).generation == 2


async def test_unreadable_upload_fails_once_with_a_reason_and_no_retry(
    settings: TranscoderSettings,
    event_bus: EventBus,
    marks: VideoMarks,
    media_root: Path,
    video_id: int,
    tmp_path: Path,
    event_reader: Callable[..., object],
) -> None:
    garbage = tmp_path / "holiday.mp4"
    garbage.write_bytes(b"this is not a video" * 100)
    source_path = place_upload(media_root, video_id, garbage)

    outcome = await run_job(settings, event_bus, marks, video_id, source_path)

    assert outcome == "failed"
    assert not (media_root / "hls" / str(video_id)).exists()
    assert leftovers(media_root, video_id) == []
    failed = [e for e in await event_reader(video_id) if isinstance(e, TranscodeFailed)]
    assert len(failed) == 1
    assert "not a readable video file" in failed[0].reason
    assert "Traceback" not in failed[0].reason


async def test_source_path_outside_the_media_volume_is_refused(
    settings: TranscoderSettings,
    event_bus: EventBus,
    marks: VideoMarks,
    video_id: int,
    event_reader: Callable[..., object],
) -> None:
    outcome = await run_job(settings, event_bus, marks, video_id, "../../etc/passwd")

    assert outcome == "failed"
    failed = [e for e in await event_reader(video_id) if isinstance(e, TranscodeFailed)]
    assert "not inside the media volume" in failed[0].reason


async def test_ffmpeg_killed_mid_encode_is_retried_then_failed_with_reason(
    make_settings: Callable[..., TranscoderSettings],
    event_bus: EventBus,
    marks: VideoMarks,
    media_root: Path,
    video_id: int,
    tmp_path: Path,
    make_clip: Callable[..., Path],
    event_reader: Callable[..., object],
) -> None:
    # An ffmpeg that dies by SIGKILL on the ladder encode (as under the OOM killer).
    dying = tmp_path / "ffmpeg-oom"
    dying.write_text(
        '#!/bin/sh\ncase "$*" in *filter_complex*) kill -9 $$;; esac\nexec ffmpeg "$@"\n'
    )
    dying.chmod(0o755)
    settings = make_settings(TRANSCODER_FFMPEG=str(dying), TRANSCODER_MAX_ATTEMPTS="2")
    source_path = place_upload(media_root, video_id, make_clip("small.mp4"))

    with pytest.raises(RetryLater) as retry:
        await run_job(settings, event_bus, marks, video_id, source_path, attempt=1)
    assert "killed" in retry.value.reason
    assert retry.value.delay > 0
    outcome = await run_job(settings, event_bus, marks, video_id, source_path, attempt=2)

    assert outcome == "failed"
    assert not (media_root / "hls" / str(video_id)).exists()
    assert leftovers(media_root, video_id) == []
    failed = [e for e in await event_reader(video_id) if isinstance(e, TranscodeFailed)]
    assert len(failed) == 1
    assert "ffmpeg was killed" in failed[0].reason
    assert "gave up after 2 attempts" in failed[0].reason


async def test_completion_is_not_lost_while_nats_is_down(
    settings: TranscoderSettings,
    event_bus: EventBus,
    marks: VideoMarks,
    media_root: Path,
    video_id: int,
    make_clip: Callable[..., Path],
    event_reader: Callable[..., object],
    nats_names: dict[str, str],
) -> None:
    source_path = place_upload(media_root, video_id, make_clip("small.mp4"))
    unreachable = EventBus(
        url="nats://127.0.0.1:1",
        subject_prefix=nats_names["NATS_SUBJECT_PREFIX"],
        stream_prefix=nats_names["NATS_STREAM_PREFIX"],
    )  # never connects: every publish fails like during an outage

    with pytest.raises(RetryLater):
        await run_job(settings, unreachable, marks, video_id, source_path, attempt=1)
    assert (media_root / "hls" / str(video_id) / "master.m3u8").is_file()
    assert [e for e in await event_reader(video_id) if isinstance(e, TranscodeCompleted)] == []

    # NATS is back: the retry finds the output in place and only publishes.
    outcome = await run_job(settings, event_bus, marks, video_id, source_path, attempt=2)

    assert outcome == "completed (output was already in place)"
    completed = [e for e in await event_reader(video_id) if isinstance(e, TranscodeCompleted)]
    assert len(completed) == 1
    assert completed[0].renditions == ["480p"]


async def test_job_of_a_deleted_video_is_skipped(
    settings: TranscoderSettings,
    event_bus: EventBus,
    marks: VideoMarks,
    media_root: Path,
    video_id: int,
    make_clip: Callable[..., Path],
) -> None:
    source_path = place_upload(media_root, video_id, make_clip("small.mp4"))
    await marks.mark_deleted(video_id)

    outcome = await run_job(settings, event_bus, marks, video_id, source_path)

    assert outcome == "skipped: the video was deleted"
    assert not (media_root / "hls" / str(video_id)).exists()


async def test_deleting_a_video_stops_its_running_encode_and_removes_everything(
    make_settings: Callable[..., TranscoderSettings],
    event_bus: EventBus,
    marks: VideoMarks,
    media_root: Path,
    video_id: int,
    make_clip: Callable[..., Path],
) -> None:
    settings = make_settings(TRANSCODER_X264_PRESET="medium")
    clip = make_clip("long720.mp4", size="1280x720", seconds=20)
    source_path = place_upload(media_root, video_id, clip)
    job = asyncio.create_task(run_job(settings, event_bus, marks, video_id, source_path))
    await wait_until_async(
        lambda: list((media_root / "hls").glob(f".tmp-{video_id}-1-*/480p")),
        timeout=60,
        what="ffmpeg writing the ladder",
    )

    await delete_video_media(settings=settings, marks=marks, video_id=video_id)
    outcome = await asyncio.wait_for(job, timeout=30)

    assert outcome.startswith("skipped")
    assert not (media_root / "hls" / str(video_id)).exists()
    assert not (media_root / "uploads" / str(video_id)).exists()
    assert leftovers(media_root, video_id) == []


async def test_a_job_runs_and_announces_in_the_trace_it_was_queued_in(
    settings: TranscoderSettings,
    event_bus: EventBus,
    redis: Redis,
    media_root: Path,
    video_id: int,
    make_clip: Callable[..., Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The worker's `traced` wrapper takes the job's `traceparent` (queue.enqueue added it):
    the job's log lines and the events it publishes carry the upload's trace."""
    trace_id = "5c2f2a0e9b1d4e7fa3c6d8b0e1f2a3b4"
    source_path = place_upload(media_root, video_id, make_clip("traced.mp4", seconds=1))
    caplog.set_level(logging.INFO)
    lines = TraceIds()
    logging.getLogger().addHandler(lines)
    ctx = {"settings": settings, "redis": redis, "bus": event_bus, "job_id": "j", "job_try": 1}
    try:
        outcome = await traced(transcode_job)(
            ctx,
            video_id=video_id,
            generation=1,
            source_path=source_path,
            traceparent=f"00-{trace_id}-a3ce929d0e0e4736-01",
        )
    finally:
        logging.getLogger().removeHandler(lines)

    assert outcome == "completed"
    assert lines.of("videoflix_transcoder") == {trace_id}
    assert event_bus.js is not None
    message = await event_bus.js.get_last_msg(
        event_bus.stream("TRANSCODER"), event_bus.subject(TranscodeCompleted.subject)
    )
    published_in = parse_traceparent((message.headers or {}).get("traceparent"))
    assert published_in is not None
    assert published_in.trace_id == trace_id


class TraceIds(logging.Handler):
    """The trace ids of the records it sees, per logger name prefix."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.addFilter(TraceIdFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def of(self, prefix: str) -> set[str]:
        return {getattr(r, "trace_id", "-") for r in self.records if r.name.startswith(prefix)}
