"""Films benchmark: the chunk-parallel ladder against today's single job (issue 17).

A generated 1080p30 source with audio, first half simple (`testsrc2`), second half
detailed (`mandelbrot` + noise), is transcoded by real `videoflix-transcoder worker`
processes on this run's Redis prefix and NATS streams, three ways:

  (a) single: one worker, the single-pass job (threshold above the source), default threads;
  (b) chunked: one worker with one encoder thread (TRANSCODER_FFMPEG_THREADS=1);
  (c) chunked: two such workers.

For each: seconds from queuing until 480p is playable (the transcoder's
`rendition_ready` for the lowest rung, what makes catalog mark the video ready; for (a) its
`completed`), until every rung is ready (`completed`), and CPU seconds of the workers and
their ffmpeg children. Then a table projected from (b)'s measured piece times (list
scheduling in queue order: audio and 480p chunks first, then the others) for 1-32 workers,
for this source and for a 2-hour film (the measured pieces repeated), and the VMAF of
(c)'s 720p against (a)'s (and their sizes; VMAF needs the bench group's imageio-ffmpeg).

    uv run --all-packages --group bench python tests/bench/bench_films.py             # 10 min
    uv run --all-packages --group bench python tests/bench/bench_films.py --minutes 2
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.jobs import Job
from harness import Hermetic, running, service_binary

from videoflix_shared.bus import EventBus
from videoflix_shared.events import TranscodeCompleted, TranscodeRenditionReady, parse_event
from videoflix_testing.plugin import REDIS_URL
from videoflix_transcoder.ledger import FilmLedger
from videoflix_transcoder.queue import enqueue, transcode_job_id
from videoflix_transcoder.settings import TranscoderSettings

SIMPLE = "testsrc2=size=1920x1080:rate=30"
# A cheaper fractal than bench_transcode's (maxiter 1000 takes ~6x real time to generate
# here); the temporal noise is what makes every frame detailed.
DETAILED = "mandelbrot=size=1920x1080:rate=30:maxiter=200,noise=alls=12:allf=t+u"
# What a phone camera (17-20 Mbit/s at 1080p30) or an editor's high-quality export writes.
# At CRF 16 the noisy half came to 79 Mbit/s, which costs more to decode (54 CPU-s per
# minute, single thread) than to encode the 480p rung, unlike any real upload.
SOURCE_VIDEO_RATE = "20M"
DETAILED_UNIT_SECONDS = 60.0
WORKER_COUNTS = (1, 2, 4, 8, 16, 32)
FILM_SECONDS = 2 * 3600


@dataclass
class Outcome:
    label: str
    playable_seconds: float
    ready_seconds: float
    cpu_seconds: float
    output: Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="source length")
    parser.add_argument("--chunk-seconds", type=float, default=60.0)
    parser.add_argument("--no-vmaf", action="store_true")
    args = parser.parse_args()
    seconds = round(args.minutes * 60)
    work = Path(tempfile.mkdtemp(prefix="bench-films-"))
    source = make_source(seconds, work)
    hermetic = Hermetic.new("transcoder")
    try:
        a = asyncio.run(
            measure(
                "(a) single job, 1 worker",
                source,
                work,
                hermetic,
                1,
                film=False,
                chunk=args.chunk_seconds,
            )
        )
        b = asyncio.run(
            measure(
                "(b) chunked, 1 worker x 1 thread",
                source,
                work,
                hermetic,
                1,
                film=True,
                chunk=args.chunk_seconds,
            )
        )
        pieces = asyncio.run(piece_times(hermetic, work, video_id=2))
        c = asyncio.run(
            measure(
                "(c) chunked, 2 workers x 1 thread",
                source,
                work,
                hermetic,
                2,
                film=True,
                chunk=args.chunk_seconds,
            )
        )
    finally:
        hermetic.cleanup()
    met = [report([a, b, c], seconds), project(pieces, seconds)]
    if not args.no_vmaf:
        met.append(compare_quality(a.output, c.output, source))
    shutil.rmtree(work, ignore_errors=True)
    if not all(met):
        print("films: a target was missed", file=sys.stderr)
        sys.exit(1)


def make_source(seconds: int, work: Path) -> Path:
    """Half simple, half detailed 1080p30 with a beeping stereo track, at the bit rate of a
    camera or an editor's export (SOURCE_VIDEO_RATE), a key frame every 2 s.

    The detailed half is one generated minute repeated (the fractal costs several times real
    time to generate; repeated, it is a scene cut every minute, equally hard to encode). The
    parts are encoded separately with the same settings and joined by stream copy."""
    half = seconds / 2
    print(f"generating a {seconds}s 1080p30 source ...", file=sys.stderr)
    simple = _encode_part(SIMPLE, half, work / "simple.mp4")
    unit = min(DETAILED_UNIT_SECONDS, seconds - half)
    detailed = _encode_part(DETAILED, unit, work / "detailed.mp4")
    concat = work / "source.ffconcat"
    parts = [simple] + [detailed] * math.ceil((seconds - half) / unit)
    concat.write_text("ffconcat version 1.0\n" + "".join(f"file {p.name}\n" for p in parts))
    path = work / f"film-{seconds}s.mp4"
    subprocess.run(
        [
            *("ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y"),
            *("-f", "concat", "-safe", "0", "-i", str(concat)),
            *("-f", "lavfi", "-i", f"sine=frequency=440:beep_factor=4:duration={seconds}"),
            *("-map", "0:v", "-map", "1:a", "-c:v", "copy", "-t", str(seconds)),
            *("-c:a", "aac", "-b:a", "192k", "-ac", "2", str(path)),
        ],
        check=True,
    )
    return path


def _encode_part(graph: str, seconds: float, path: Path) -> Path:
    subprocess.run(
        [
            *("ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y"),
            *("-f", "lavfi", "-i", f"{graph},format=yuv420p", "-t", f"{seconds:g}"),
            # A key frame every 2 s, as cameras and editors write them (x264's default of
            # 250 frames would make every chunk decode up to 8 s before its start).
            *("-c:v", "libx264", "-preset", "veryfast", "-g", "60"),
            *("-b:v", SOURCE_VIDEO_RATE, "-maxrate", SOURCE_VIDEO_RATE, "-bufsize", "40M"),
            str(path),
        ],
        check=True,
    )
    return path


def worker_env(
    hermetic: Hermetic, media: Path, *, film: bool, chunk: float, port: int
) -> dict[str, str]:
    env = {
        **os.environ,
        **hermetic.env(),
        "MEDIA_ROOT": str(media),
        "HTTP_PORT": str(port),
        "LOG_LEVEL": "INFO",
        "TRANSCODER_CHUNK_SECONDS": str(chunk),
        "TRANSCODER_QUEUE_STATE_INTERVAL_SECONDS": "5",
    }
    if film:
        env["TRANSCODER_FILM_THRESHOLD_SECONDS"] = "30"
        env["TRANSCODER_FFMPEG_THREADS"] = "1"
    else:
        env["TRANSCODER_FILM_THRESHOLD_SECONDS"] = "1000000"
    return env


@contextmanager
def workers(count: int, env: dict[str, str], logs: Path) -> Iterator[list[psutil.Process]]:
    with ExitStack() as stack:
        processes = []
        for i in range(count):
            worker_env_i = {**env, "HTTP_PORT": str(int(env["HTTP_PORT"]) + i)}
            process = stack.enter_context(
                running(
                    [service_binary("transcoder"), "worker"],
                    env=worker_env_i,
                    log=logs / f"worker-{i}.log",
                )
            )
            processes.append(psutil.Process(process.pid))
        yield processes


def cpu_of(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        with_children = process.cpu_times()
        total += with_children.user + with_children.system
        total += with_children.children_user + with_children.children_system
    return total


async def measure(
    label: str,
    source: Path,
    work: Path,
    hermetic: Hermetic,
    count: int,
    *,
    film: bool,
    chunk: float,
) -> Outcome:
    video_id = {"(a)": 1, "(b)": 2, "(c)": 3}[label[:3]]
    media = work / f"media-{video_id}"
    upload = media / "uploads" / str(video_id) / "source.mp4"
    upload.parent.mkdir(parents=True)
    os.link(source, upload)  # same temporary directory: no copy
    env = worker_env(hermetic, media, film=film, chunk=chunk, port=18600 + 10 * video_id)
    settings = TranscoderSettings(**hermetic.env(), MEDIA_ROOT=str(media))
    bus = EventBus.from_settings(settings, principal="catalog")
    await bus.connect()
    pool = await create_pool(
        RedisSettings.from_dsn(REDIS_URL), default_queue_name=settings.queue_name
    )
    print(f"{label}: running ...", file=sys.stderr)
    try:
        with workers(count, env, work) as processes:
            await asyncio.sleep(5)  # connected, the TRANSCODER stream provisioned
            cpu_before = cpu_of(processes)
            started = time.monotonic()
            await enqueue(
                pool,
                settings,
                "transcode_video",
                transcode_job_id(settings, video_id, 1),
                first=True,
                video_id=video_id,
                generation=1,
                source_path=f"uploads/{video_id}/source.mp4",
            )
            playable, ready = await wait_for_rungs(bus, video_id, started)
            cpu = cpu_of(processes) - cpu_before
    finally:
        await pool.aclose()
        await bus.close()
    return Outcome(label, playable, ready, cpu, media / "hls" / str(video_id))


async def wait_for_rungs(bus: EventBus, video_id: int, started: float) -> tuple[float, float]:
    """Seconds until the lowest rung is ready and until the video completed."""
    assert bus.js is not None
    sub = await bus.js.pull_subscribe(
        bus.subject("transcoder.video.>"), stream=bus.stream("TRANSCODER")
    )
    playable = None
    try:
        while True:
            try:
                msgs = await sub.fetch(20, timeout=1)
            except TimeoutError:  # nothing new yet
                msgs = []
            for msg in msgs:
                await msg.ack()
                event = parse_event(bus.unprefixed(msg.subject), msg.data)
                if getattr(event, "video_id", None) != video_id:
                    continue
                now = time.monotonic() - started
                if isinstance(event, TranscodeRenditionReady) and playable is None:
                    playable = now
                if isinstance(event, TranscodeCompleted):
                    return (playable if playable is not None else now), now
    finally:
        await sub.unsubscribe()


@dataclass
class Pieces:
    plan_seconds: float
    audio: float
    first: list[float]  # lowest-rung chunks, in order
    rest: list[float]  # the other group's chunks
    assemble_first: float
    assemble_rest: float


async def piece_times(hermetic: Hermetic, work: Path, video_id: int) -> Pieces:
    """How long each piece of run (b) took, from the film's ledger in Redis."""
    settings = TranscoderSettings(**hermetic.env(), MEDIA_ROOT=str(work / f"media-{video_id}"))
    pool: ArqRedis = await create_pool(RedisSettings.from_dsn(REDIS_URL))
    try:
        state = await FilmLedger(pool, settings, video_id, 1).read()
        first_job = transcode_job_id(settings, video_id, 1)
        planned = await Job(first_job, pool, _queue_name=settings.queue_name).result_info()
    finally:
        await pool.aclose()
    plan_seconds = (planned.finish_time - planned.start_time).total_seconds() if planned else 0
    done = state.done
    chunks = sorted({int(k.split(":")[1]) for k in done if k.startswith("chunk:")})
    return Pieces(
        plan_seconds=plan_seconds,  # probe, thumbnail, content check, queuing
        audio=done.get("audio", 0.0),
        first=[done.get(f"chunk:{i}:g0", 0.0) for i in chunks],
        rest=[done.get(f"chunk:{i}:g1", 0.0) for i in chunks],
        assemble_first=done.get("assemble:g0", 0.0),
        assemble_rest=done.get("assemble:g1", 0.0),
    )


def schedule(pieces: Pieces, workers: int, scale: int) -> tuple[float, float]:
    """List scheduling in queue order on `workers`: (480p playable, all ready) in seconds.
    `scale` repeats the measured pieces (a film `scale` times as long)."""
    free = [pieces.plan_seconds] * workers
    heapq.heapify(free)

    def run(seconds: float) -> float:
        start = heapq.heappop(free)
        heapq.heappush(free, start + seconds)
        return start + seconds

    first_done = run(pieces.audio * scale)
    for seconds in pieces.first * scale:
        first_done = max(first_done, run(seconds))
    playable = first_done + pieces.assemble_first * scale
    rest_done = 0.0
    for seconds in pieces.rest * scale:
        rest_done = max(rest_done, run(seconds))
    ready = max(rest_done, playable) + pieces.assemble_rest * scale
    return playable, ready


def report(outcomes: list[Outcome], seconds: int) -> bool:
    print(f"\nsource: {seconds}s 1080p30 with audio, half simple / half detailed")
    print(f"{'run':36} {'480p playable s':>16} {'all ready s':>12} {'CPU s':>8}")
    for o in outcomes:
        print(
            f"{o.label:36} {o.playable_seconds:16.1f} {o.ready_seconds:12.1f} {o.cpu_seconds:8.1f}"
        )
    a, b, c = outcomes
    share = c.playable_seconds / c.ready_seconds
    speedup = b.ready_seconds / c.ready_seconds
    extra = (b.cpu_seconds / a.cpu_seconds - 1) * 100
    print(
        f"(c) 480p playable at {share:.0%} of its time to ready (target <= 30%): {'met' if share <= 0.3 else 'NOT met'}"
    )
    print(
        f"(c) ready {speedup:.2f}x sooner than (b) (target >= 1.7x): {'met' if speedup >= 1.7 else 'NOT met'}"
    )
    print(
        f"chunked CPU {extra:+.0f}% over (a) (target <= +25%): {'met' if extra <= 25 else 'NOT met'}"
    )
    return share <= 0.3 and speedup >= 1.7 and extra <= 25


def project(pieces: Pieces, seconds: int) -> bool:
    scale = max(1, round(FILM_SECONDS / seconds))
    print(f"\nprojection from (b)'s piece times (list scheduling, queue order), x{scale} for 2 h:")
    print(f"{'workers':>8} {'480p s':>9} {'ready s':>9} {'2h: 480p min':>13} {'2h: ready min':>14}")
    for count in WORKER_COUNTS:
        playable, ready = schedule(pieces, count, 1)
        film_playable, film_ready = schedule(pieces, count, scale)
        print(
            f"{count:8d} {playable:9.1f} {ready:9.1f} {film_playable / 60:13.1f} {film_ready / 60:14.1f}"
        )
    film_playable, _ = schedule(pieces, 16, scale)
    verdict = "met" if film_playable <= 600 else "NOT met"
    print(
        f"2-hour film playable at 480p on 16 workers in {film_playable / 60:.1f} min (target <= 10): {verdict}"
    )
    return film_playable <= 600


def compare_quality(single: Path, chunked: Path, source: Path) -> bool:
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_transcode import Scorer

    scorer = Scorer()
    sizes = [sum(p.stat().st_size for p in (d / "720p").glob("*.ts")) for d in (single, chunked)]
    scores = [scorer.score(d / "720p" / "index.m3u8", source) for d in (single, chunked)]
    delta, growth = scores[1] - scores[0], sizes[1] / sizes[0] - 1
    met = delta >= -0.3 and abs(growth) <= 0.03  # better quality is no miss
    print(
        f"\n720p {scorer.metric}: single {scores[0]:.2f} ({sizes[0] / 1e6:.1f} MB), chunked "
        f"{scores[1]:.2f} ({sizes[1] / 1e6:.1f} MB): {delta:+.2f} at {growth * 100:+.1f}% "
        f"bytes (target: not 0.3 below, at +-3% bytes): {'met' if met else 'NOT met'}"
    )
    return met


if __name__ == "__main__":
    main()
