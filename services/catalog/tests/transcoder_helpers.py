"""A real transcoder dispatcher beside a catalog under test: the source of the job list the
admin page's "Transcoding" panel shows (catalog only reaches it over HTTP)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis

from videoflix_shared.processes import stop_process
from videoflix_testing.plugin import REDIS_URL, wait_until

TRANSCODER = Path(sys.executable).parent / "videoflix-transcoder"


@dataclass
class Dispatcher:
    process: subprocess.Popen[bytes]
    port: int
    redis_prefix: str

    @property
    def jobs_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/jobs"

    @classmethod
    def start(cls, env: dict[str, str], *, port: int, redis_prefix: str, log: Path) -> Dispatcher:
        """`videoflix-transcoder dispatcher` on `env`'s NATS streams and its own Redis
        prefix, its health port on `port`; no worker, so what it queues stays queued."""
        process = subprocess.Popen(
            [str(TRANSCODER), "dispatcher"],
            env={**os.environ, **env, "HTTP_PORT": str(port), "REDIS_KEY_PREFIX": redis_prefix},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200,
            what="the dispatcher ready",
        )
        return cls(process, port, redis_prefix)

    def stop(self) -> None:
        stop_process(self.process)

    def forget_its_jobs(self) -> None:
        """arq's keys carry the prefix inside (`arq:job:<prefix>...`), not in front."""
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=f"arq:*{self.redis_prefix}*"):
            client.delete(key)
        client.close()
