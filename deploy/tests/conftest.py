"""Fixtures of the launcher's tests."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from videoflix_testing.plugin import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ClosedPorts:
    """Server URLs on ports where nothing answers, so the launcher starts private servers
    into `data_dir`."""

    data_dir: Path
    postgres: int
    redis: int
    nats: int

    def env(self) -> dict[str, str]:
        pg = self.postgres
        return {
            "AUTH_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{pg}/videoflix_auth",
            "CATALOG_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{pg}/videoflix_catalog",
            "REDIS_URL": f"redis://127.0.0.1:{self.redis}/0",
            "NATS_URL": f"nats://127.0.0.1:{self.nats}",
        }


@pytest.fixture
def closed_ports() -> Iterator[ClosedPorts]:
    # Under the repo, not /tmp: when run as root, PostgreSQL runs as user postgres and must
    # be able to reach its data directory.
    data_dir = ROOT / ".data" / f"test-private-{uuid.uuid4().hex[:6]}"
    yield ClosedPorts(data_dir, free_port(), free_port(), free_port())
    shutil.rmtree(data_dir, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """What the Kubernetes tests validated and what they could not (deploy/tests/
    k8s_manifests.py collects it), at the end of the run and in test-artifacts/."""
    from deploy.tests.k8s_manifests import REPORT

    if not REPORT:
        return
    terminalreporter.section("Kubernetes manifests (deploy/k8s): validated and not")
    for line in REPORT.values():
        terminalreporter.write_line(line)
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "k8s-validation.txt").write_text("\n".join(REPORT.values()) + "\n")
