"""deploy/docker/healthcheck.py, the containers' healthcheck, against real HTTP servers."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from videoflix_testing.plugin import free_port

HEALTHCHECK = Path(__file__).resolve().parents[1] / "docker" / "healthcheck.py"


class HealthHandler(http.server.BaseHTTPRequestHandler):
    routes = {"/readyz": (200, b'{"status": "ready"}'), "/healthz": (200, b'{"status": "ok"}')}

    def do_GET(self) -> None:
        status, body = self.routes.get(self.path, (404, b'{"detail": "Not found."}'))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class NotReadyHandler(HealthHandler):
    routes = {"/readyz": (503, b'{"status": "not ready", "checks": {"database": "failing"}}')}


def serve(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def ready_port() -> Iterator[int]:
    yield from serve(HealthHandler)


@pytest.fixture
def not_ready_port() -> Iterator[int]:
    yield from serve(NotReadyHandler)


def run_healthcheck(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HTTP_PORT": str(port)}
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_ready_service_is_healthy(ready_port):
    result = run_healthcheck(ready_port)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_probed_path_can_be_chosen(ready_port):
    assert run_healthcheck(ready_port, "/healthz").returncode == 0
    missing = run_healthcheck(ready_port, "/nope")
    assert missing.returncode == 1
    assert "HTTP 404" in missing.stderr


def test_not_ready_service_is_unhealthy_with_the_failing_check_shown(not_ready_port):
    result = run_healthcheck(not_ready_port)
    assert result.returncode == 1
    assert "HTTP 503" in result.stderr
    assert '"database": "failing"' in result.stderr


def test_nothing_listening_is_unhealthy():
    result = run_healthcheck(free_port())
    assert result.returncode == 1
    assert "Connection refused" in result.stderr
