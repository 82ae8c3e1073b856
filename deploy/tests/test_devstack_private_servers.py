"""The launcher starts private PostgreSQL, Redis and NATS when the configured URLs point at
closed ports, and stops them again, leaving no process behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import redis

from deploy.tests.conftest import ClosedPorts
from videoflix_shared.processes import stop_pid

ROOT = Path(__file__).resolve().parents[2]


def _devstack(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deploy.devstack", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
def test_closed_ports_get_private_servers_that_stop_with_down(closed_ports: ClosedPorts):
    data_dir = closed_ports.data_dir
    pg, rd, nt = closed_ports.postgres, closed_ports.redis, closed_ports.nats
    env = {**os.environ, **closed_ports.env()}
    try:
        result = _devstack("infra", "--data-dir", str(data_dir), "--print-env", env=env)
        assert result.returncode == 0, result.stderr
        assert "starting a private instance" in result.stderr
        assert f"TEST_REDIS_URL=redis://127.0.0.1:{rd}/0" in result.stdout

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{pg}/postgres") as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert redis.Redis(port=rd).ping()
        import socket

        with socket.create_connection(("127.0.0.1", nt), timeout=2) as s:
            assert s.recv(4096).startswith(b"INFO ")

        # a second run finds them answering and starts nothing
        again = _devstack("infra", "--data-dir", str(data_dir), env=env)
        assert "starting a private instance" not in again.stderr
    finally:
        down = _devstack("down", "--data-dir", str(data_dir), env=env)
    assert "stopping private postgres" in down.stderr
    for pattern in (str(data_dir), f"redis-server 127.0.0.1:{rd}"):
        leftovers = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True).stdout
        assert leftovers == "", leftovers


def test_stopping_a_private_server_started_by_this_launcher_does_not_wait_for_the_timeout():
    """`make up` started it, so it is our child: it must be reaped, not polled as a zombie."""
    child = subprocess.Popen(["sleep", "60"])
    started = time.monotonic()
    stop_pid(child.pid, timeout=30)
    assert time.monotonic() - started < 5
    with pytest.raises(ChildProcessError):  # already reaped
        os.waitpid(child.pid, os.WNOHANG)
