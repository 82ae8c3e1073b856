"""Reading a process's Prometheus metrics in tests, the way Prometheus reads them: the text
of `/metrics` parsed into samples (prometheus_client's parser), looked up by name and labels;
and, for a service running several worker processes, what each of them counted.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from videoflix_shared.processes import stop_process
from videoflix_testing.plugin import free_port, wait_until


class Scrape:
    """One answer of `/metrics`: every sample by name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: list[tuple[str, dict[str, str], float]] = [
            (sample.name, dict(sample.labels), sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]

    @property
    def names(self) -> set[str]:
        """Every sample name (`x_total`, `x_bucket`, `x_count`, ... as exported)."""
        return {name for name, _, _ in self.samples}

    def value(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """The sum of the samples called `name` whose labels include `labels` (0 if none)."""
        wanted = dict(labels or {})
        return sum(
            value
            for sample_name, sample_labels, value in self.samples
            if sample_name == name and wanted.items() <= sample_labels.items()
        )

    def has(self, name: str, labels: Mapping[str, str] | None = None) -> bool:
        wanted = dict(labels or {})
        return any(
            sample_name == name and wanted.items() <= sample_labels.items()
            for sample_name, sample_labels, _ in self.samples
        )


def scrape(base_url: str, *, timeout: float = 10) -> Scrape:
    """GET `<base_url>/metrics` and parse it."""
    response = httpx.get(f"{base_url.rstrip('/')}/metrics", timeout=timeout)
    response.raise_for_status()
    return Scrape(response.text)


def requests_per_process(metrics_dir: Path, labels: Mapping[str, str]) -> Counter[int]:
    """`http_requests_total` with these labels as each worker process counted it, read from
    its own file in a service's multiprocess directory (videoflix_shared.metrics)."""
    counts: Counter[int] = Counter()
    for path in metrics_dir.glob("counter_*.db"):
        pid = int(path.stem.removeprefix("counter_"))
        for metric in MultiProcessCollector.merge([str(path)]):
            for sample in metric.samples:
                if sample.name == "http_requests_total" and labels.items() <= sample.labels.items():
                    counts[pid] += int(sample.value)
    return counts


def send_until_every_worker_served(
    send: Callable[[], int],
    *,
    metrics_dir: Path,
    labels: Mapping[str, str],
    workers: int = 2,
    batch: int = 24,
    rounds: int = 20,
) -> int:
    """Rounds of `batch` requests (`send` makes one on a connection of its own and returns
    its status, which must be 200), 8 at a time, until each of the `workers` processes has
    answered some; returns how many were sent. Which process accepts a connection is the
    kernel's choice: usually all of them within the first round."""
    sent = 0
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(rounds):
            statuses = set(pool.map(lambda _: send(), range(batch)))
            assert statuses == {200}, statuses
            sent += batch
            if len(requests_per_process(metrics_dir, labels)) == workers:
                return sent
    raise AssertionError(f"not every one of {workers} workers answered {sent} requests")


@dataclass(frozen=True)
class MultiprocessServer:
    url: str
    metrics_dir: Path  # the private multiprocess directory the server made under TMPDIR


@contextlib.contextmanager
def serving_with_workers(
    command: list[str],
    env: Mapping[str, str],
    tmp_path: Path,
    *,
    ready_path: str = "/readyz",
    timeout: float = 60,
) -> Iterator[MultiprocessServer]:
    """Run a service's real command (several workers) on a free port until `ready_path`
    answers 200, with TMPDIR in `tmp_path`, where it makes its metrics directory; stopped
    afterwards, when that directory must be gone."""
    port = free_port()
    process = subprocess.Popen(
        command,
        env={**os.environ, **env, "HTTP_PORT": str(port), "TMPDIR": str(tmp_path)},
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(f"{url}{ready_path}", timeout=1).status_code == 200,
            timeout=timeout,
            what=" ".join(command),
        )
        (metrics_dir,) = tmp_path.glob("videoflix-metrics-*")
        yield MultiprocessServer(url, metrics_dir)
    finally:
        stop_process(process, group=True)
    assert not metrics_dir.exists(), "a server removes its metrics directory when it stops"
