"""`videoflix-streaming serve --workers 2`: one scrape of `/metrics` answers for both worker
processes (prometheus_client's multiprocess mode, videoflix_shared.metrics): N requests
spread over the workers are counted N, whichever worker answers the scrape; a worker that
dies takes its share of the live gauges with it, not its counts."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from videoflix_shared.processes import stop_process
from videoflix_testing.metrics import scrape
from videoflix_testing.plugin import free_port, wait_until

SEGMENT = "/api/video/1/480p/seg_00000.ts"
SEGMENT_ROUTE = {"route": "/api/video/{id}/{resolution}/{segment}", "status": "200"}
BATCH = 24  # requests per round, 8 at a time, each on a connection of its own
MAX_ROUNDS = 20


@dataclass(frozen=True)
class TwoWorkers:
    url: str
    metrics_dir: Path  # the private multiprocess directory the server made under TMPDIR


@pytest.fixture
def two_workers(request, streaming_env, tmp_path) -> Iterator[TwoWorkers]:
    request.getfixturevalue("video")  # what the server is asked for
    port = free_port()
    env = {
        **os.environ,
        **streaming_env,
        "HTTP_PORT": str(port),
        "LOG_LEVEL": "WARNING",
        "TMPDIR": str(tmp_path),  # where the server makes its metrics directory
    }
    process = subprocess.Popen(
        ["videoflix-streaming", "serve", "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(f"{url}/readyz", timeout=1).status_code == 200,
            timeout=40,
            what="videoflix-streaming serve --workers 2",
        )
        (metrics_dir,) = tmp_path.glob("videoflix-metrics-streaming-*")
        yield TwoWorkers(url, metrics_dir)
    finally:
        stop_process(process, group=True)
    assert not metrics_dir.exists(), "the server removes its metrics directory when it stops"


def segment_requests_per_worker(metrics_dir: Path) -> Counter[int]:
    """Segment requests each worker process counted, read from its own counter file."""
    counts: Counter[int] = Counter()
    for path in metrics_dir.glob("counter_*.db"):
        pid = int(re.fullmatch(r"counter_(\d+)\.db", path.name)[1])
        for metric in MultiProcessCollector.merge([str(path)]):
            for sample in metric.samples:
                if (
                    sample.name == "http_requests_total"
                    and SEGMENT_ROUTE.items() <= sample.labels.items()
                ):
                    counts[pid] += int(sample.value)
    return counts


def send_until_both_workers_served(server: TwoWorkers, auth: dict[str, str]) -> int:
    """Rounds of segment requests until each worker has answered some; how many were sent.
    (Which process accepts a connection is the kernel's choice: usually both within a round.)"""

    def get(_: int) -> int:
        return httpx.get(server.url + SEGMENT, headers=auth, timeout=10).status_code

    sent = 0
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(MAX_ROUNDS):
            assert set(pool.map(get, range(BATCH))) == {200}
            sent += BATCH
            if len(segment_requests_per_worker(server.metrics_dir)) == 2:
                return sent
    pytest.fail(f"one worker answered all {sent} requests")


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
