"""`videoflix-transcoder jobs`: the list (table and JSON), retry and cancel, against a real
worker process, Redis, NATS and ffmpeg."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from arq.connections import ArqRedis

from videoflix_shared.errors import Conflict, NotFound
from videoflix_shared.events import TranscodeCompleted, TranscodeFailed, VideoUploaded
from videoflix_shared.transcode_jobs import TranscodeJobs
from videoflix_testing.plugin import free_port, wait_until_async
from videoflix_transcoder.chunks import FilmFiles, FilmPlan
from videoflix_transcoder.dispatcher import CatalogEventHandler
from videoflix_transcoder.job_control import cancel_job, retry_job
from videoflix_transcoder.jobs import list_jobs, read_queue
from videoflix_transcoder.queue import TRANSCODE_FUNCTION, film_job_id, transcode_job_id
from videoflix_transcoder.settings import TranscoderSettings

from .conftest import Spawn, place_upload
from .queue_helpers import gated_ffmpeg, jobs_cli, scrape, value
from .test_workers import FILM_ENV

pytestmark = pytest.mark.slow


def rows(table: str) -> dict[str, str]:
    """The table's lines by job id (the second column)."""
    return {
        line.split()[1]: line for line in table.splitlines()[1:] if line.strip() and " " in line
    }


async def events_of(read: Callable[..., object], video_id: int, kind: type) -> list:
    return [e for e in await read(video_id) if isinstance(e, kind)]  # type: ignore[operator]


async def test_jobs_shows_a_films_pieces_and_cancel_then_retry_leave_no_half_written_output(
    spawn: Spawn,
    make_settings: Callable[..., TranscoderSettings],
    redis_prefix: str,
    arq_pool: ArqRedis,
    transcoder_env: dict[str, str],
    make_clip: Callable[..., Path],
    event_reader: Callable[..., object],
    tmp_path: Path,
    video_id: int,
) -> None:
    prefix = f"{redis_prefix}jobscli:"
    settings = make_settings(REDIS_KEY_PREFIX=prefix, **FILM_ENV)
    env = {**transcoder_env, **FILM_ENV, "REDIS_KEY_PREFIX": prefix}
    ffmpeg, gate = gated_ffmpeg(tmp_path)
    worker_port = free_port()
    worker = spawn(
        "worker",
        redis_prefix=prefix,
        port=worker_port,
        TRANSCODER_FFMPEG=str(ffmpeg),
        TRANSCODER_MAX_JOBS="2",
        **FILM_ENV,
    )
    worker_name = f"{socket.gethostname()}:{worker.pid}"
    # A film of two chunks (FILM_ENV), in two rung groups; few frames keep it quick.
    clip = make_clip("film14.mp4", size="1280x720", seconds=14, rate=10)
    await CatalogEventHandler(settings=settings, pool=arq_pool).enqueue_transcode(
        VideoUploaded(
            video_id=video_id, source_path=place_upload(settings.media_root, video_id, clip)
        )
    )

    async def two_pieces_running() -> TranscodeJobs | None:
        listing = await list_jobs(arq_pool, settings)
        return listing if len(listing.running) == 2 else None

    # Planned: the audio and the first chunk run (held at the gate), the other chunks wait.
    await wait_until_async(two_pieces_running, timeout=90, what="two film pieces running")
    work = FilmFiles.of(settings.media_root, video_id, 1)
    plan = FilmPlan.load(work.plan)
    assert plan is not None
    chunk0 = film_job_id(settings, video_id, 1, "chunk:0:g0")
    listing = TranscodeJobs.model_validate_json(jobs_cli(env, "--json").stdout)
    assert sorted((j.part, j.worker, j.attempt) for j in listing.running) == [
        ("audio", worker_name, 1),
        ("chunk 0", worker_name, 1),
    ]
    queued = [(j.part, j.rungs, j.priority) for j in listing.queued]
    later_chunks = [f"chunk {c.index}" for c in plan.chunks[1:]]
    assert queued == [
        *((part, plan.groups[0], "first") for part in later_chunks),
        *((f"chunk {c.index}", plan.groups[1], "normal") for c in plan.chunks),
    ]
    assert all(j.video_id == video_id and j.generation == 1 for j in listing.queued)

    table = jobs_cli(env).stdout
    assert table.splitlines()[0].split() == [
        *("STATE", "JOB", "VIDEO", "GEN", "PART", "TRY", "AGE", "WORKER", "NOTE")
    ]
    line = rows(table)[chunk0]
    assert line.split()[:4] == ["running", chunk0, str(video_id), "1"]
    assert f"chunk 0 ({plan.groups[0][0]})" in line
    assert worker_name in line
    assert "plays first" in rows(table)[film_job_id(settings, video_id, 1, "chunk:1:g0")]
    waiting = 2 * len(plan.chunks) - 1
    assert f"{waiting} queued, 2 running, 0 recently failed" in table
    refused = jobs_cli(env, "retry", chunk0, expect=2)
    assert "is running" in refused.stderr

    # Cancel the running chunk (without the stack's prefix): the whole film stops.
    cancelled = jobs_cli(env, "cancel", chunk0.removeprefix(prefix)).stdout
    assert f"cancelled video {video_id} generation 1: {waiting} waiting job(s) dropped" in cancelled
    failed = await wait_until_async(
        lambda: events_of(event_reader, video_id, TranscodeFailed), timeout=60, what="failed"
    )
    assert failed[0].reason.startswith("Cancelled by an operator")

    async def nothing_of_it_left() -> bool:
        return not [e for e in await read_queue(arq_pool, settings) if e.video_id == video_id]

    await wait_until_async(nothing_of_it_left, timeout=30, what="the film's jobs gone")
    # The pieces' half-written files are gone, none became a chunk, nothing is visible.
    assert [p.name for p in work.root.rglob(".*") if p.is_file()] == []
    assert list(work.root.rglob("chunk_*.mp4")) == []
    assert not (settings.media_root / "hls" / str(video_id)).exists()
    _, samples = scrape(worker_port)
    assert value(samples, "videoflix_transcode_jobs_total", outcome="cancelled") == 2
    listing = await list_jobs(arq_pool, settings)
    assert [(j.job_id, j.state, j.worker) for j in listing.failed] == [
        (chunk0, "failed", worker_name)
    ]
    assert (listing.failed[0].reason or "").startswith("Cancelled by an operator")

    # Retry: the film runs again and completes; the failure leaves the list.
    gate.touch()
    retried = jobs_cli(env, "retry", chunk0).stdout
    assert f"retrying video {video_id} generation 1" in retried
    completed = await wait_until_async(
        lambda: events_of(event_reader, video_id, TranscodeCompleted), timeout=300, what="done"
    )
    assert completed[0].renditions == [r.name for r in plan.renditions]
    master = (settings.media_root / "hls" / str(video_id) / "master.m3u8").read_text()
    assert all(f"{r.name}/index.m3u8" in master for r in plan.renditions)
    listing = await list_jobs(arq_pool, settings)
    assert (listing.queued, listing.running, listing.failed) == ([], [], [])
    with pytest.raises(Conflict, match=r"it finished \(completed\); there is nothing to cancel"):
        await cancel_job(arq_pool, settings, chunk0)


async def test_a_held_back_job_runs_now_on_retry_and_refusals_are_clear(
    make_settings: Callable[..., TranscoderSettings],
    redis_prefix: str,
    arq_pool: ArqRedis,
    transcoder_env: dict[str, str],
    make_clip: Callable[..., Path],
    video_id: int,
) -> None:
    prefix = f"{redis_prefix}held{video_id}:"
    settings = make_settings(REDIS_KEY_PREFIX=prefix)
    env = {**transcoder_env, "REDIS_KEY_PREFIX": prefix}
    job_id = transcode_job_id(settings, video_id, 1)
    # As a retry's backoff leaves it: queued, but not before a minute from now.
    await arq_pool.enqueue_job(
        TRANSCODE_FUNCTION,
        _job_id=job_id,
        _queue_name=settings.queue_name,
        _defer_by=timedelta(minutes=1),
        video_id=video_id,
        generation=1,
        source_path=place_upload(settings.media_root, video_id, make_clip("held.mp4")),
    )
    line = rows(jobs_cli(env).stdout)[job_id]
    assert line.split()[:4] == ["queued", job_id, str(video_id), "1"]
    held = re.search(r"retry in (?:1m00s|(\d+)s)$", line)
    assert held, line
    assert int(held.group(1) or 60) >= 30  # a minute, less the CLI's start

    moved = jobs_cli(env, "retry", job_id).stdout
    assert "runs next" in moved
    assert (await arq_pool.zscore(settings.queue_name, job_id) or 0) <= time.time() * 1000

    unknown = jobs_cli(env, "cancel", "transcode:1:1", expect=2)
    assert "not queued, running or recently failed" in unknown.stderr
    with pytest.raises(NotFound, match="is not a transcode job id"):
        await retry_job(arq_pool, settings, "nonsense")
    with pytest.raises(NotFound, match="no job"):
        await retry_job(arq_pool, settings, film_job_id(settings, video_id + 1, 1, "audio"))
    await arq_pool.set(f"arq:in-progress:{job_id}", b"1", px=5000)
    with pytest.raises(Conflict, match="is running"):
        await retry_job(arq_pool, settings, job_id)
    assert [e.job_id for e in await read_queue(arq_pool, settings)] == [job_id]  # unchanged
    await arq_pool.delete(f"arq:job:{job_id}", f"arq:in-progress:{job_id}")
