"""The transcoder's Prometheus metrics (names shared with the dashboards, alert rules and
KEDA's scaler; docs/QUEUE.md).

The dispatcher's health port serves the queue, read from Redis at scrape time, so any
number of dispatchers and workers never count a job twice:
- `videoflix_transcode_queue_depth{queue,priority}`: jobs queued and not running,
- `videoflix_transcode_queue_oldest_age_seconds{queue,priority}`: since the oldest of them
  was queued (0 when none),
- `videoflix_transcode_jobs_running{queue}`.
`priority` is `first` for work that makes a video playable (queued ahead of everything
else, queue.enqueue) and `normal`; a job held back by a retry's backoff counts as queued.

Each worker's health port serves what its own tries did:
- `videoflix_transcode_jobs_total{outcome}`: completed, retried (a transient failure, it
  runs again later), failed (the video failed), cancelled (by an operator, or the worker
  stopped under it: it runs again elsewhere), skipped (deleted or superseded meanwhile),
- `videoflix_transcode_speed_ratio{rung}`: seconds of media encoded per second of wall time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.asyncio import Redis

from videoflix_shared.transcode_jobs import JobPriority
from videoflix_transcoder.jobs import QueueEntry, now_ms, priority_of, read_queue
from videoflix_transcoder.settings import TranscoderSettings

logger = logging.getLogger(__name__)

OUTCOMES = ("completed", "retried", "failed", "cancelled", "skipped")
PRIORITIES: tuple[JobPriority, ...] = ("first", "normal")
SPEED_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128)
SCRAPE_TIMEOUT_SECONDS = 5.0


class WorkerMetrics:
    """What a worker process's tries did (its health port's /metrics)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.jobs = Counter(
            "videoflix_transcode_jobs",
            "Transcode job tries by how they ended",
            ["outcome"],
            registry=registry,
        )
        for outcome in OUTCOMES:  # every series exists from the start, at 0
            self.jobs.labels(outcome=outcome)
        self.speed = Histogram(
            "videoflix_transcode_speed_ratio",
            "Seconds of media encoded per second of wall time (x real time), per rung",
            ["rung"],
            buckets=SPEED_BUCKETS,
            registry=registry,
        )

    def count(self, outcome: str) -> None:
        self.jobs.labels(outcome=outcome).inc()

    def observe_speed(
        self, rungs: Iterable[str], media_seconds: float, wall_seconds: float
    ) -> None:
        if media_seconds <= 0 or wall_seconds <= 0:
            return
        for rung in rungs:
            self.speed.labels(rung=rung).observe(media_seconds / wall_seconds)


@dataclass
class QueueSummary:
    depth: dict[JobPriority, int] = field(default_factory=lambda: dict.fromkeys(PRIORITIES, 0))
    oldest_age_seconds: dict[JobPriority, float] = field(
        default_factory=lambda: dict.fromkeys(PRIORITIES, 0.0)
    )
    running: int = 0


def summarize(entries: Iterable[QueueEntry], at_ms: float) -> QueueSummary:
    summary = QueueSummary()
    for entry in entries:
        if entry.running:
            summary.running += 1
            continue
        priority = priority_of(entry.score_ms, at_ms)
        summary.depth[priority] += 1
        if entry.enqueued_ms is not None:
            age = max(0.0, (at_ms - entry.enqueued_ms) / 1000)
            summary.oldest_age_seconds[priority] = max(summary.oldest_age_seconds[priority], age)
    return summary


class QueueCollector(Collector):
    """The dispatcher's queue gauges, computed from Redis when Prometheus scrapes.

    prometheus_client collects synchronously on the serving event loop, so the read runs on
    a loop of its own in a short-lived thread with its own connection (a scrape every few
    seconds; a few milliseconds each, SCRAPE_TIMEOUT_SECONDS at most while Redis is away).
    A failed read yields no queue samples (the gap shows; /readyz says why)."""

    def __init__(self, settings: TranscoderSettings) -> None:
        self.settings = settings

    def describe(self) -> Iterator[Metric]:
        # Names only: without this, registering would call collect() (and Redis) at once.
        yield from self._families(None)

    def collect(self) -> Iterator[Metric]:
        try:
            entries = self._read_entries()
        except Exception as exc:
            logger.warning("transcode queue not readable for /metrics (%s)", exc)
            return
        yield from self._families(summarize(entries, now_ms()))

    def _read_entries(self) -> list[QueueEntry]:
        async def read() -> list[QueueEntry]:
            redis = Redis.from_url(
                self.settings.redis_url,
                socket_connect_timeout=SCRAPE_TIMEOUT_SECONDS / 2,
                socket_timeout=SCRAPE_TIMEOUT_SECONDS / 2,
            )
            try:
                return await read_queue(redis, self.settings)
            finally:
                await redis.aclose()

        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="queue-metrics")
        try:
            return thread.submit(lambda: asyncio.run(read())).result(SCRAPE_TIMEOUT_SECONDS)
        finally:
            thread.shutdown(wait=False)  # a hung read ends by its socket timeouts

    def _families(self, summary: QueueSummary | None) -> list[Metric]:
        queue = self.settings.queue_name
        depth = GaugeMetricFamily(
            "videoflix_transcode_queue_depth",
            "Transcode jobs queued and not running",
            labels=["queue", "priority"],
        )
        oldest = GaugeMetricFamily(
            "videoflix_transcode_queue_oldest_age_seconds",
            "Seconds since the oldest queued transcode job was queued (0 when none)",
            labels=["queue", "priority"],
        )
        running = GaugeMetricFamily(
            "videoflix_transcode_jobs_running", "Transcode jobs in progress", labels=["queue"]
        )
        if summary is not None:
            for priority in PRIORITIES:
                depth.add_metric([queue, priority], summary.depth[priority])
                oldest.add_metric([queue, priority], summary.oldest_age_seconds[priority])
            running.add_metric([queue], summary.running)
        return [depth, oldest, running]
