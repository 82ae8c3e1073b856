"""Films: a source longer than the threshold goes the chunk-parallel way (real Redis, NATS,
ffmpeg; an in-process arq worker in burst mode). Thresholds and chunk lengths are set low
so a 20 s clip is a film of three chunks."""

from __future__ import annotations

import itertools
import json
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import m3u8
import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.jobs import Job

from videoflix_shared.bus import EventBus
from videoflix_shared.events import (
    TranscodeCompleted,
    TranscodeFailed,
    TranscodeRenditionReady,
    VideoUploaded,
)
from videoflix_transcoder.dispatcher import CatalogEventHandler
from videoflix_transcoder.playlists import read_media_playlist
from videoflix_transcoder.queue import (
    PRIORITY_OFFSET_MS,
    enqueue,
    film_job_id,
    queue_state,
    transcode_job_id,
)
from videoflix_transcoder.settings import TranscoderSettings
from videoflix_transcoder.worker import build_worker

from .conftest import new_video_id, place_upload

pytestmark = pytest.mark.slow

FILM_ENV = {
    "TRANSCODER_FILM_THRESHOLD_SECONDS": "10",
    "TRANSCODER_CHUNK_SECONDS": "6",
    "TRANSCODER_SEGMENT_SECONDS": "2",
}


@pytest.fixture
def film_settings(
    make_settings: Callable[..., TranscoderSettings], redis_prefix: str
) -> TranscoderSettings:
    return make_settings(**FILM_ENV, REDIS_KEY_PREFIX=f"{redis_prefix}film{new_video_id()}:")


@pytest.fixture
async def pool(film_settings: TranscoderSettings) -> AsyncIterator[ArqRedis]:
    pool = await create_pool(
        RedisSettings.from_dsn(film_settings.redis_url), default_queue_name=film_settings.queue_name
    )
    yield pool
    await pool.aclose()


async def run_queue_dry(settings: TranscoderSettings, pool: ArqRedis, bus: EventBus) -> None:
    worker = build_worker(settings, pool, bus)
    worker.burst = True
    try:
        await worker.async_run()
    finally:
        await worker.close()


async def transcode_upload(
    settings: TranscoderSettings, pool: ArqRedis, bus: EventBus, video_id: int, clip: Path
) -> None:
    """Place `clip` as the video's upload, queue it as the dispatcher does, run the queue dry."""
    source_path = place_upload(settings.media_root, video_id, clip)
    await CatalogEventHandler(settings=settings, pool=pool).enqueue_transcode(
        VideoUploaded(video_id=video_id, source_path=source_path)
    )
    await run_queue_dry(settings, pool, bus)


def probe_frames(path: Path, stream: str) -> list[float]:
    out = subprocess.run(
        [
            *("ffprobe", "-v", "error", "-select_streams", stream),
            *("-show_entries", "frame=best_effort_timestamp_time,duration_time"),
            *("-of", "json", str(path)),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [float(f["best_effort_timestamp_time"]) for f in json.loads(out)["frames"]]


def media_playlist_durations(path: Path) -> list[float]:
    return [
        float(line.split(":", 1)[1].split(",")[0])
        for line in path.read_text().splitlines()
        if line.startswith("#EXTINF:")
    ]


async def test_a_film_is_chunked_and_its_seams_are_invisible(
    film_settings: TranscoderSettings,
    pool: ArqRedis,
    event_bus: EventBus,
    event_reader: Callable[..., object],
    make_clip: Callable[..., Path],
) -> None:
    video_id = new_video_id()
    clip = make_clip("film720.mp4", size="1280x720", seconds=20, rate=30)
    await transcode_upload(film_settings, pool, event_bus, video_id, clip)

    events = await event_reader(video_id)  # type: ignore[operator]
    ready = [e for e in events if isinstance(e, TranscodeRenditionReady)]
    completed = [e for e in events if isinstance(e, TranscodeCompleted)]
    assert [e.rendition for e in ready] == ["480p", "720p"]
    assert ready[0].renditions == ["480p"]
    assert len(completed) == 1
    assert completed[0].renditions == ["480p", "720p"]
    # The plan's three chunks ran as jobs of their own, per rung group.
    for part in ("chunk:0:g0", "chunk:2:g0", "chunk:1:g1", "audio", "assemble:g1"):
        assert await pool.exists(f"arq:result:{film_job_id(film_settings, video_id, 1, part)}"), (
            part
        )

    out = film_settings.media_root / "hls" / str(video_id)
    master = (out / "master.m3u8").read_text()
    assert "480p/index.m3u8" in master
    assert "720p/index.m3u8" in master
    assert "RESOLUTION=1280x720" in master
    assert "CODECS=" in master
    source_frames = probe_frames(clip, "v:0")
    for rung in ("480p", "720p"):
        playlist = out / rung / "index.m3u8"
        video = probe_frames(playlist, "v:0")
        assert len(video) == len(source_frames) == 600, rung
        assert all(b > a for a, b in itertools.pairwise(video)), "monotonic"
        durations = media_playlist_durations(playlist)
        assert all(abs(d - 2.0) <= 0.1 for d in durations[:-1]), durations
        # Audio and video start and end within one frame of each other (the audio's first
        # packet carries the AAC encoder's priming, as in the single pass).
        audio = probe_frames(playlist, "a:0")
        frame = 1 / 30
        assert abs(audio[0] - video[0]) <= frame
        assert abs((audio[-1] + 1024 / 48000) - (video[-1] + frame)) <= frame
    # Every chunk of a rung was encoded at the title's CRF, decided once in the plan; the
    # master playlist declares each rung's measured peak, which covers every segment.
    rates = completed[0].renditions_bitrate
    assert set(rates) == {"480p", "720p"}
    assert all(rate.crf is not None for rate in rates.values())
    for variant in m3u8.load(str(out / "master.m3u8")).playlists:
        rung = variant.uri.split("/")[0]
        assert variant.stream_info.bandwidth == rates[rung].peak_bitrate
        assert variant.stream_info.average_bandwidth == rates[rung].average_bitrate
        segments = read_media_playlist(out / variant.uri)
        assert all(
            s.size_bytes * 8 / s.duration <= variant.stream_info.bandwidth
            for s in segments
            if s.duration >= 1.0
        )
    # The work directory is gone.
    assert not list((film_settings.media_root / "hls").glob(f".film-{video_id}-*"))


async def test_a_truncated_film_fails_once_with_its_reason_and_shows_nothing(
    film_settings: TranscoderSettings,
    pool: ArqRedis,
    event_bus: EventBus,
    event_reader: Callable[..., object],
    make_clip: Callable[..., Path],
    tmp_path: Path,
) -> None:
    """Its header promises 20 s, its data ends near 10 s: the chunk that meets the cut cannot
    decode it, a permanent failure with ffmpeg's reason, not retried."""
    video_id = new_video_id()
    whole = make_clip(
        "film-faststart.mp4", size="640x360", seconds=20, output_args=("-movflags", "+faststart")
    )
    truncated = tmp_path / "film-truncated.mp4"
    data = whole.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    await transcode_upload(film_settings, pool, event_bus, video_id, truncated)

    events = await event_reader(video_id)  # type: ignore[operator]
    failed = [e for e in events if isinstance(e, TranscodeFailed)]
    assert len(failed) == 1, events
    assert "cannot decode the upload during chunk" in failed[0].reason, failed[0].reason
    assert not [e for e in events if isinstance(e, TranscodeCompleted | TranscodeRenditionReady)]
    # Every piece that ran, ran once: nothing was retried.
    prefix = "arq:result:"
    results = await pool.keys(f"{prefix}{transcode_job_id(film_settings, video_id, 1)}*")
    assert len(results) > 1  # the plan and at least one piece
    for key in results:
        info = await Job(key.decode().removeprefix(prefix), pool).result_info()
        assert info is not None
        assert info.job_try == 1, key
    hls = film_settings.media_root / "hls"
    assert not (hls / str(video_id)).exists()  # nothing became visible
    # The pieces that finished stay for an operator's retry of this generation (a new
    # generation or a deletion removes them: test_jobs.py, test_workers.py).
    assert (hls / f".film-{video_id}-1" / "plan.json").is_file()


async def test_lowest_rung_work_runs_before_any_higher_rung_work(
    film_settings: TranscoderSettings, pool: ArqRedis
) -> None:
    older, newer = new_video_id(), new_video_id()
    for video, part, first in (
        (older, "chunk:0:g1", False),
        (older, "chunk:1:g1", False),
        (older, "chunk:0:g0", True),
        (newer, "chunk:0:g0", True),
    ):
        await enqueue(
            pool,
            film_settings,
            "film_chunk",
            film_job_id(film_settings, video, 1, part),
            first=first,
        )

    order = [raw.decode() for raw in await pool.zrange(film_settings.queue_name, 0, -1)]
    assert order == [
        film_job_id(film_settings, older, 1, "chunk:0:g0"),
        film_job_id(film_settings, newer, 1, "chunk:0:g0"),  # ahead of older higher rungs
        film_job_id(film_settings, older, 1, "chunk:0:g1"),
        film_job_id(film_settings, older, 1, "chunk:1:g1"),
    ]
    scores = [s for _, s in await pool.zrange(film_settings.queue_name, 0, -1, withscores=True)]
    assert scores[2] - scores[1] > PRIORITY_OFFSET_MS / 2
    state = await queue_state(pool, film_settings)
    assert [(v.video_id, v.place, v.running) for v in state] == [
        (older, 1, False),
        (newer, 2, False),
    ]
    # The single pass of a short upload is first-class work too.
    job_id = transcode_job_id(film_settings, new_video_id(), 1)
    await CatalogEventHandler(settings=film_settings, pool=pool).enqueue_transcode(
        VideoUploaded(video_id=int(job_id.rsplit(":", 2)[1]), source_path="uploads/x/source.mp4")
    )
    order = [raw.decode() for raw in await pool.zrange(film_settings.queue_name, 0, -1)]
    assert order.index(job_id) < order.index(film_job_id(film_settings, older, 1, "chunk:0:g1"))
