"""`videoflix-streaming serve --workers 2`: one scrape of `/metrics` answers for both worker
processes (prometheus_client's multiprocess mode, videoflix_shared.metrics): N requests
spread over the workers are counted N, whichever worker answers the scrape; a worker that
dies takes its share of the live gauges with it, not its counts."""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from videoflix_testing.metrics import (
    MultiprocessServer,
    requests_per_process,
    scrape,
    send_until_every_worker_served,
    serving_with_workers,
)
from videoflix_testing.plugin import wait_until

SEGMENT = "/api/video/1/480p/seg_00000.ts"
SEGMENT_ROUTE = {"route": "/api/video/{id}/{resolution}/{segment}", "status": "200"}


@pytest.fixture
def two_workers(request, streaming_env, tmp_path) -> Iterator[MultiprocessServer]:
    request.getfixturevalue("video")  # what the server is asked for
    command = ["videoflix-streaming", "serve", "--workers", "2"]
    with serving_with_workers(
        command, {**streaming_env, "LOG_LEVEL": "WARNING"}, tmp_path
    ) as server:
        yield server


def segment_requests_per_worker(metrics_dir: Path) -> Counter[int]:
    return requests_per_process(metrics_dir, SEGMENT_ROUTE)


def send_until_both_workers_served(server: MultiprocessServer, auth: dict[str, str]) -> int:
    def get() -> int:
        return httpx.get(server.url + SEGMENT, headers=auth, timeout=10).status_code

    return send_until_every_worker_served(get, metrics_dir=server.metrics_dir, labels=SEGMENT_ROUTE)


def test_one_scrape_counts_the_requests_of_both_workers(two_workers, auth, video):
    sent = send_until_both_workers_served(two_workers, auth)
    per_worker = segment_requests_per_worker(two_workers.metrics_dir)
    assert len(per_worker) == 2
    assert all(per_worker.values())
    assert sum(per_worker.values()) == sent

    segment = len(video.file("480p/seg_00000.ts").read_bytes())
    for _ in range(4):  # whichever worker answers the scrape, it answers for both
        metrics = scrape(two_workers.url)
        assert metrics.value("http_requests_total", SEGMENT_ROUTE) == sent
        duration = {"route": SEGMENT_ROUTE["route"]}
        assert metrics.value("http_request_duration_seconds_count", duration) == sent
        assert (
            metrics.value("http_request_duration_seconds_bucket", {**duration, "le": "+Inf"})
            == sent
        )
        assert (
            metrics.value("videoflix_streaming_sent_bytes_total", {"kind": "segment"})
            == sent * segment
        )
        lookups = metrics.value("videoflix_streaming_body_cache_lookups_total", {"kind": "segment"})
        assert lookups == sent
        # each worker read the segment (again while its first read was under way) and
        # keeps it: the live gauge sums both caches
        assert (
            metrics.value("videoflix_streaming_body_cache_lookups_total", {"result": "miss"}) >= 2
        )
        assert metrics.value("videoflix_streaming_body_cache_bytes") == 2 * segment


def test_a_killed_worker_keeps_its_counts_and_leaves_the_live_gauges(two_workers, auth, video):
    sent = send_until_both_workers_served(two_workers, auth)
    segment = len(video.file("480p/seg_00000.ts").read_bytes())
    killed = next(iter(segment_requests_per_worker(two_workers.metrics_dir)))
    os.kill(killed, signal.SIGKILL)  # no clean exit: the next scrape forgets it

    def gauge_without_the_dead_worker() -> bool:
        return scrape(two_workers.url).value("videoflix_streaming_body_cache_bytes") == segment

    wait_until(
        gauge_without_the_dead_worker,
        timeout=30,
        what="the killed worker's cache to leave the gauge",
    )
    assert not list(two_workers.metrics_dir.glob(f"gauge_live*_{killed}.db"))
    metrics = scrape(two_workers.url)
    assert metrics.value("http_requests_total", SEGMENT_ROUTE) == sent  # what it counted stays
