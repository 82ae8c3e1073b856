"""Benchmark: peak memory of one transcoder worker and its ffmpeg against the memory limit
the Kubernetes manifests give the worker container (issue 21).

    uv run --all-packages --group bench python tests/bench/bench_worker_memory.py
    uv run --all-packages --group bench python tests/bench/bench_worker_memory.py --seconds 20 --chunk-seconds 10

A generated 1080p30 source with audio (bench_films' source: half simple, half detailed
content, which x264 needs the most memory for) is transcoded by a real `videoflix-transcoder
worker` configured as in the cluster (deploy/k8s/base/config: common.env and
transcoder-worker.env, so TRANSCODER_FFMPEG_THREADS as the manifests set it) on this run's
Redis prefix and NATS streams, twice: (a) the single pass (the film threshold above the
source) and (b) as a film of one chunk of `--chunk-seconds` (the threshold below it: the
chunk jobs of each rung group, the audio and the assemblies). Every 50 ms it samples the
worker and all its children (ffmpeg, ffprobe): the sum of their resident memory, and the
sum of their high-water marks (VmHWM: each process's own peak, a bound the sampling cannot
miss). It prints both peaks per run, how long the film's chunk jobs took (what the workers'
TRANSCODER_SHUTDOWN_GRACE_SECONDS must cover) and exits 1 unless both runs' high-water
peak stays below the container's memory limit, read from
deploy/k8s/base/transcoder-worker.yaml.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import yaml
from arq.connections import RedisSettings, create_pool
from bench_films import make_source, piece_times, wait_for_rungs, workers
from dotenv import dotenv_values
from harness import Hermetic

from videoflix_shared.bus import EventBus
from videoflix_shared.events import VideoUploaded
from videoflix_testing.plugin import REDIS_URL
from videoflix_transcoder.dispatcher import CatalogEventHandler
from videoflix_transcoder.settings import TranscoderSettings

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "deploy" / "k8s" / "base" / "transcoder-worker.yaml"
CONFIG = [
    ROOT / "deploy" / "k8s" / "base" / "config" / f for f in ("common.env", "transcoder-worker.env")
]
SAMPLE_SECONDS = 0.05
MIB = 1024 * 1024
UNITS = {"Ki": 1024, "Mi": MIB, "Gi": 1024 * MIB, "K": 1000, "M": 1000**2, "G": 1000**3}
# The cluster's addresses and ports mean nothing here: this run's servers and paths replace them.
NOT_FROM_THE_CLUSTER = ("HTTP_HOST", "HTTP_PORT", "MEDIA_ROOT", "REDIS_KEY_PREFIX")


@dataclass
class Peak:
    label: str
    wall_seconds: float
    sampled: int  # bytes: the largest sum of resident memory seen at once
    high_water: int  # bytes: the largest sum of the live processes' own peaks
    worker: int  # bytes: the worker process's own peak
    children: int  # bytes: the largest child's own peak (ffmpeg)


def memory_limit() -> int:
    """The worker container's memory limit in deploy/k8s (bytes)."""
    deployment = yaml.safe_load(MANIFEST.read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    value = str(container["resources"]["limits"]["memory"])
    m = re.fullmatch(r"(\d+)([KMG]i?)?", value)
    assert m, f"cannot read the memory limit {value!r}"
    return int(m[1]) * UNITS.get(m[2] or "", 1)


def cluster_config() -> dict[str, str]:
    values: dict[str, str] = {}
    for path in CONFIG:
        values |= {k: v or "" for k, v in dotenv_values(path).items()}
    return {k: v for k, v in values.items() if k not in NOT_FROM_THE_CLUSTER}


def high_water_mark(process: psutil.Process) -> int:
    """VmHWM: the peak resident memory of the process so far (bytes)."""
    status = Path(f"/proc/{process.pid}/status").read_text()
    m = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(m[1]) * 1024 if m else 0


class Sampler(threading.Thread):
    """Samples a worker and its descendants until stopped."""

    def __init__(self, worker: psutil.Process) -> None:
        super().__init__(daemon=True)
        self.worker = worker
        self.done = threading.Event()
        self.sampled = self.high_water = self.worker_peak = self.child_peak = 0

    def run(self) -> None:
        while not self.done.wait(SAMPLE_SECONDS):
            try:
                processes = [self.worker, *self.worker.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            rss = marks = 0
            for process in processes:
                try:
                    rss += process.memory_info().rss
                    mark = high_water_mark(process)
                except (psutil.NoSuchProcess, FileNotFoundError, ProcessLookupError):
                    continue
                marks += mark
                if process is self.worker:
                    self.worker_peak = max(self.worker_peak, mark)
                else:
                    self.child_peak = max(self.child_peak, mark)
            self.sampled = max(self.sampled, rss)
            self.high_water = max(self.high_water, marks)


async def measure(
    label: str, source: Path, work: Path, hermetic: Hermetic, *, video_id: int, env: dict[str, str]
) -> Peak:
    media = work / f"media-{video_id}"  # where bench_films.piece_times looks
    upload = media / "uploads" / str(video_id) / "source.mp4"
    upload.parent.mkdir(parents=True)
    os.link(source, upload)
    settings = TranscoderSettings(**hermetic.env(), MEDIA_ROOT=str(media))
    bus = EventBus.from_settings(settings, principal="catalog")
    await bus.connect()
    pool = await create_pool(
        RedisSettings.from_dsn(REDIS_URL), default_queue_name=settings.queue_name
    )
    print(f"{label}: running ...", file=sys.stderr)
    try:
        with workers(1, {**env, "MEDIA_ROOT": str(media)}, work) as (worker,):
            await wait_ready(int(env["HTTP_PORT"]))  # connected, the TRANSCODER stream provisioned
            sampler = Sampler(worker)
            sampler.start()
            started = time.monotonic()
            # queued as the dispatcher queues an upload
            await CatalogEventHandler(settings=settings, pool=pool).enqueue_transcode(
                VideoUploaded(video_id=video_id, source_path=f"uploads/{video_id}/source.mp4")
            )
            _, ready = await wait_for_rungs(bus, video_id, started)
            sampler.done.set()
            sampler.join()
    finally:
        await pool.aclose()
        await bus.close()
    return Peak(
        label, ready, sampler.sampled, sampler.high_water, sampler.worker_peak, sampler.child_peak
    )


async def wait_ready(port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            try:
                if (
                    await client.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                ).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.5)
    raise SystemExit(f"the worker did not get ready within {timeout:g} s")


def worker_env(hermetic: Hermetic, *, threshold: float, chunk: float) -> dict[str, str]:
    return {
        **os.environ,
        **cluster_config(),
        **hermetic.env(),
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": "18690",
        "TRANSCODER_FILM_THRESHOLD_SECONDS": str(threshold),
        "TRANSCODER_CHUNK_SECONDS": str(chunk),
    }


def report(peaks: list[Peak], limit: int, chunk_times: list[float], seconds: int) -> bool:
    config = cluster_config()
    print(
        f"\nsource: {seconds}s 1080p30 with audio, half simple / half detailed; worker configured "
        f"as in deploy/k8s (TRANSCODER_FFMPEG_THREADS={config['TRANSCODER_FFMPEG_THREADS']}, "
        f"preset {config['TRANSCODER_X264_PRESET']})"
    )
    print(
        f"{'run':34} {'wall s':>7} {'peak MiB (sampled)':>19} {'peak MiB (high-water)':>22} "
        f"{'worker MiB':>11} {'ffmpeg MiB':>11}"
    )
    for p in peaks:
        print(
            f"{p.label:34} {p.wall_seconds:7.1f} {p.sampled / MIB:19.0f} {p.high_water / MIB:22.0f} "
            f"{p.worker / MIB:11.0f} {p.children / MIB:11.0f}"
        )
    grace = float(config["TRANSCODER_SHUTDOWN_GRACE_SECONDS"])
    if chunk_times:
        longest = max(chunk_times)
        print(
            f"film chunk jobs took {', '.join(f'{t:.1f}' for t in chunk_times)} s; the longest "
            f"is {longest / grace:.0%} of TRANSCODER_SHUTDOWN_GRACE_SECONDS={grace:g} (information)"
        )
    met = True
    for p in peaks:
        ok = p.high_water < limit
        met &= ok
        print(
            f"{p.label}: peak {p.high_water / MIB:.0f} MiB (high-water) < memory limit "
            f"{limit / MIB:.0f} MiB ({MANIFEST.relative_to(ROOT)}) (target): "
            f"{'met' if ok else 'NOT met'}, {p.high_water / limit:.0%} of it"
        )
    return met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=60, help="source length")
    parser.add_argument("--chunk-seconds", type=float, default=60.0, help="the film's chunk")
    args = parser.parse_args()
    limit = memory_limit()
    work = Path(tempfile.mkdtemp(prefix="bench-worker-memory-"))
    source = make_source(args.seconds, work)
    hermetic = Hermetic.new("transcoder")
    try:
        single = asyncio.run(
            measure(
                f"(a) single pass, {args.seconds}s",
                source,
                work,
                hermetic,
                video_id=1,
                env=worker_env(hermetic, threshold=10 * args.seconds, chunk=args.chunk_seconds),
            )
        )
        film = asyncio.run(
            measure(
                f"(b) film, chunks of {args.chunk_seconds:g}s",
                source,
                work,
                hermetic,
                video_id=2,
                env=worker_env(hermetic, threshold=args.seconds / 2, chunk=args.chunk_seconds),
            )
        )
        pieces = asyncio.run(piece_times(hermetic, work, video_id=2))
    finally:
        hermetic.cleanup()
    met = report([single, film], limit, [*pieces.first, *pieces.rest], args.seconds)
    shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()
