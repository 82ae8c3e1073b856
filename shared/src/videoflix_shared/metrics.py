"""Prometheus metrics of a service as one whole, however many worker processes serve it.

catalog and streaming run several uvicorn worker processes behind one port; a scrape of
`/metrics` reaches one of them at random. So that it answers for all of them, the supervisor
process gives its workers prometheus_client's multiprocess mode (`workers_share_metrics`):
a directory of its own, new and empty at every start, where each worker keeps its values in
memory-mapped files, and which `/metrics` (`exposition`) sums up: N requests spread over the
workers are one counter of N, histograms likewise, and each gauge is combined as its
`multiprocess_mode` says. A gauge must name one (prometheus_client's default, "all", keeps a
series per process id, dead ones included):

- `livesum` / `livemax` / `livemin` / `livemostrecent`: over the running workers only, for a
  figure each process holds for itself (bytes in its own cache, its NATS connection);
- `mostrecent` / `max`: for a figure every worker reads from the same source (a table, Redis).

A worker that stops forgets its `live*` gauges (`forget_this_process`, run when the app's
lifespan ends); one killed without that is forgotten at the next scrape, since the directory
belongs to this process group alone and a file's process id no longer running means it died.
Counters and histograms of a dead worker stay: what it counted happened.

A service that runs one process keeps prometheus_client's default registry, as before.
Gauges read from elsewhere at scrape time register a refresh with
`videoflix_shared.app.register_metrics_refresh`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess

from videoflix_shared.processes import pid_alive

# prometheus_client's own variable; set by `workers_share_metrics` for the worker processes
# it starts, never configuration (a value inherited by a one-process service would switch
# it to multiprocess mode too).
MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
DIRECTORY_PREFIX = "videoflix-metrics-"
LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")


def _multiprocess_directory() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


@contextlib.contextmanager
def workers_share_metrics(service: str, *, workers: int) -> Iterator[Path | None]:
    """Run the body (the supervisor starting `workers` processes) with a private, empty
    multiprocess directory in the environment the workers inherit; removed afterwards.
    One process needs none: yields None and changes nothing."""
    if workers <= 1:
        yield None
        return
    root = Path(tempfile.gettempdir())
    _remove_leftovers(root, service)
    directory = Path(tempfile.mkdtemp(prefix=f"{DIRECTORY_PREFIX}{service}-{os.getpid()}-"))
    os.environ[MULTIPROCESS_DIR_VARIABLE] = str(directory)
    try:
        yield directory
    finally:
        os.environ.pop(MULTIPROCESS_DIR_VARIABLE, None)
        shutil.rmtree(directory, ignore_errors=True)


def _remove_leftovers(root: Path, service: str) -> None:
    """Directories of this service's earlier process groups that were killed before they
    could remove theirs (their supervisor is gone, or its pid is now ours)."""
    for leftover in root.glob(f"{DIRECTORY_PREFIX}{service}-*-*"):
        owner = leftover.name.removeprefix(f"{DIRECTORY_PREFIX}{service}-").split("-", 1)[0]
        if owner.isdigit() and (int(owner) == os.getpid() or not pid_alive(int(owner))):
            shutil.rmtree(leftover, ignore_errors=True)


def exposition() -> bytes:
    """The text `/metrics` answers: every worker's values combined, or this process's."""
    directory = _multiprocess_directory()
    if directory is None:
        return generate_latest(REGISTRY)
    _forget_dead_processes(directory)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    return generate_latest(registry)


def forget_this_process() -> None:
    """A worker on its way out: its `live*` gauges no longer count."""
    directory = _multiprocess_directory()
    if directory is not None:
        multiprocess.mark_process_dead(os.getpid(), directory)


def _forget_dead_processes(directory: str) -> None:
    with contextlib.suppress(OSError):
        for name in os.listdir(directory):
            match = LIVE_GAUGE_FILE.fullmatch(name)
            if match and not pid_alive(int(match[1])):
                multiprocess.mark_process_dead(int(match[1]), directory)
