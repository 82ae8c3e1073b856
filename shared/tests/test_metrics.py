"""videoflix_shared.metrics and the app factory's `/metrics`: refreshes run before a scrape
and never fail it; a supervisor's multiprocess directory is private, new at every start,
gone afterwards, and what killed supervisors left behind is removed. (Several real worker
processes behind one port: services/*/tests/test_metrics_across_workers.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

from prometheus_client import Gauge

from videoflix_shared.app import create_service_app, register_metrics_refresh
from videoflix_shared.metrics import MULTIPROCESS_DIR_VARIABLE, workers_share_metrics
from videoflix_shared.settings import CommonSettings
from videoflix_testing.clients import asgi_client
from videoflix_testing.metrics import Scrape

REFRESHED = Gauge("videoflix_test_refreshed_things", "set by a refresh", multiprocess_mode="max")


async def test_refreshes_set_gauges_before_each_scrape_and_a_failing_one_is_skipped():
    app = create_service_app(service="test", settings=CommonSettings())
    things = iter(range(3, 100))

    async def count_things() -> None:
        REFRESHED.set(next(things))

    async def broken() -> None:
        raise ConnectionError("Redis is away")

    register_metrics_refresh(app, "things", count_things)
    register_metrics_refresh(app, "broken", broken)
    async with asgi_client(app) as client:
        first = await client.get("/metrics")
        second = await client.get("/metrics")
    assert first.status_code == second.status_code == 200
    assert Scrape(first.text).value("videoflix_test_refreshed_things") == 3
    assert Scrape(second.text).value("videoflix_test_refreshed_things") == 4


def test_one_process_needs_no_directory(monkeypatch):
    monkeypatch.delenv(MULTIPROCESS_DIR_VARIABLE, raising=False)
    with workers_share_metrics("test", workers=1) as directory:
        assert directory is None
        assert MULTIPROCESS_DIR_VARIABLE not in os.environ


def test_workers_get_a_new_private_directory_removed_afterwards(monkeypatch, tmp_path):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.delenv(MULTIPROCESS_DIR_VARIABLE, raising=False)
    monkeypatch.setattr(tempfile, "tempdir", None)  # TMPDIR is read again
    with workers_share_metrics("test", workers=2) as first:
        assert first is not None
        assert first.parent == tmp_path
        assert os.environ[MULTIPROCESS_DIR_VARIABLE] == str(first)
        assert list(first.iterdir()) == []
    assert not first.exists()
    assert MULTIPROCESS_DIR_VARIABLE not in os.environ
    with workers_share_metrics("test", workers=2) as second:
        assert second != first


def test_directories_of_killed_supervisors_are_removed_at_the_next_start(monkeypatch, tmp_path):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(gone.stdout)
    leftover = tmp_path / f"videoflix-metrics-test-{dead_pid}-abc"
    leftover.mkdir()
    (leftover / "counter_1.db").write_bytes(b"\0" * 8)
    alive = tmp_path / f"videoflix-metrics-test-{os.getppid()}-def"  # its supervisor runs
    alive.mkdir()
    other_service = tmp_path / f"videoflix-metrics-other-{dead_pid}-ghi"
    other_service.mkdir()
    with workers_share_metrics("test", workers=2):
        assert not leftover.exists()
        assert alive.exists()
        assert other_service.exists()
