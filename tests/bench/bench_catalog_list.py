"""Benchmark: the public video list, GET /api/video/, with cookie auth.

    uv run --all-packages python tests/bench/bench_catalog_list.py [--duration 15] [--connections 16]

Standalone and hermetic: it creates its own database (`vfbench_<run>_catalog`, dropped at
the end), migrates it, seeds 50 ready and published videos, serves a test signing key as
JWKS, and starts `videoflix-catalog serve` (its default 2 uvicorn workers, LOG_LEVEL=WARNING
so no access-log line per request) on a free port with a per-run Redis key prefix and NATS
subject/stream prefixes (its keys and streams are deleted afterwards). Then wrk (Debian's)
runs with 16 connections for 15 s, sending a valid access_token cookie, after a short
warm-up. It prints req/s, p50 and p99 next to the Django reference (176 req/s, p99 126 ms:
issue #5's measurement of a comparable Django implementation on this machine kind; quoted,
not run here) and exits 1 unless req/s >= 1,760 and p99 < 20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import make_url

from videoflix_catalog.cli import MIGRATIONS
from videoflix_catalog.models import Category, Video, VideoStatus
from videoflix_shared.bus import EventBus
from videoflix_shared.db import (
    create_engine,
    create_session_factory,
    drop_database,
    ensure_database,
    run_migrations,
)
from videoflix_shared.testing.plugin import ServerThread, free_port
from videoflix_shared.testing.tokens import TestTokenIssuer

POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
NATS_URL = os.environ.get("TEST_NATS_URL", "nats://127.0.0.1:4222")

VIDEOS = 50
LIST_PATH = "/api/video/"
# Not run here (no Django in this project): issue #5's figures for a comparable Django
# implementation of the same endpoint, measured on this machine kind with the same wrk setup.
DJANGO_RPS = 176.0
DJANGO_P99_MS = 126.0
DJANGO_SOURCE = "issue #5, not run here"
TARGET_RPS = 1760.0
TARGET_P99_MS = 20.0


@dataclass(frozen=True)
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: str  # non-2xx answers and socket errors as wrk reports them ("" if none)


@dataclass(frozen=True)
class Hermetic:
    """The per-run names of everything the benchmark creates on the shared servers."""

    run: str
    database_url: str
    redis_prefix: str
    subject_prefix: str
    stream_prefix: str

    @classmethod
    def new(cls) -> Hermetic:
        run = uuid.uuid4().hex[:8]
        url = make_url(POSTGRES_URL).set(database=f"vfbench_{run}_catalog")
        return cls(
            run=run,
            database_url=url.render_as_string(hide_password=False),
            redis_prefix=f"vfbench:{run}:",
            subject_prefix=f"vfbench{run}.",
            stream_prefix=f"VFBENCH{run}_",
        )

    def env(self) -> dict[str, str]:
        """What a catalog subprocess needs to use exactly these names."""
        return {
            "CATALOG_DATABASE_URL": self.database_url,
            "REDIS_URL": REDIS_URL,
            "REDIS_KEY_PREFIX": self.redis_prefix,
            "NATS_URL": NATS_URL,
            "NATS_SUBJECT_PREFIX": self.subject_prefix,
            "NATS_STREAM_PREFIX": self.stream_prefix,
        }

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            drop_database(self.database_url)
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        with contextlib.suppress(Exception):
            keys = list(client.scan_iter(match=self.redis_prefix + "*", count=1000))
            if keys:
                client.delete(*keys)
        client.close()

        async def delete_streams() -> None:
            bus = EventBus(
                url=NATS_URL, subject_prefix=self.subject_prefix, stream_prefix=self.stream_prefix
            )
            await bus.connect(wait=False)
            await bus.delete_streams()
            await bus.close()

        with contextlib.suppress(Exception):
            asyncio.run(delete_streams())


async def seed(database_url: str, count: int) -> None:
    """`count` ready, published videos across the categories (what the list shows)."""
    engine = create_engine(database_url)
    try:
        async with create_session_factory(engine)() as session, session.begin():
            # The migrations seed the default categories; the videos spread over them.
            categories = list(await session.scalars(select(Category).order_by(Category.id)))
            if not categories:
                categories = [Category(name="Drama")]
            for number in range(1, count + 1):
                session.add(
                    Video(
                        title=f"Benchmark video {number}",
                        description=f"Seeded video number {number} of the list benchmark. " * 3,
                        category=categories[number % len(categories)],
                        published=True,
                        status=VideoStatus.READY.value,
                        progress=100.0,
                        source_path=f"uploads/{number}/source.mp4",
                        source_size=10_000_000,
                        width=1920,
                        height=1080,
                        duration_seconds=600.0,
                        renditions=["480p", "720p", "1080p"],
                        thumbnail_path=f"hls/{number}/thumbnail.jpg",
                        master_playlist_path=f"hls/{number}/master.m3u8",
                    )
                )
    finally:
        await engine.dispose()


@contextlib.contextmanager
def running(command: list[str], *, env: dict[str, str], log: Path) -> Iterator[None]:
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            command, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def wait_for_list(url: str, cookie: str, *, log: Path, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(url, headers={"Cookie": f"access_token={cookie}"})  # noqa: S310
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (local URL)
                return json.loads(response.read())
        except Exception as exc:
            last_error = exc
            time.sleep(0.3)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    raise SystemExit(f"{url} did not answer within {timeout:.0f}s: {last_error!r}\n{tail}")


def catalog_binary() -> str:
    beside_python = Path(sys.executable).with_name("videoflix-catalog")
    found = str(beside_python) if beside_python.exists() else shutil.which("videoflix-catalog")
    if not found:
        raise SystemExit("videoflix-catalog not found: run with `uv run --all-packages`")
    return found


def to_ms(value: str) -> float:
    number, unit = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def run_wrk(url: str, *, cookie: str, connections: int, threads: int, seconds: float) -> WrkResult:
    command = [
        *("wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency"),
        *("-H", f"Cookie: access_token={cookie}", url),
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rps = re.search(r"Requests/sec:\s+([0-9.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    if not (rps and p50 and p99):
        raise SystemExit(f"could not read wrk's output:\n{output}")
    errors = [
        line.strip() for line in output.splitlines() if "Non-2xx" in line or "Socket errors" in line
    ]
    return WrkResult(float(rps[1]), to_ms(p50[1]), to_ms(p99[1]), "; ".join(errors))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=15, help="seconds of measurement")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of warm-up")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is required (apt-get install wrk)")

    load_before = os.getloadavg()
    names = Hermetic.new()
    issuer = TestTokenIssuer()
    cookie = issuer.token(user_id=7, email="bench@example.com", ttl=3600)
    work = Path(tempfile.mkdtemp(prefix="videoflix-bench-catalog-"))
    try:
        ensure_database(names.database_url)
        run_migrations(names.database_url, MIGRATIONS)
        asyncio.run(seed(names.database_url, VIDEOS))
        port = free_port()
        with ServerThread(issuer.jwks_app()) as jwks:
            env = {
                **os.environ,
                "ENVIRONMENT": "bench",
                "LOG_LEVEL": "WARNING",
                "HTTP_HOST": "127.0.0.1",
                "HTTP_PORT": str(port),
                **names.env(),
                "JWKS_URL": f"{jwks.url}/.well-known/jwks.json",
                "JWT_ISSUER": issuer.issuer,
                "JWT_AUDIENCE": issuer.audience,
                "MEDIA_ROOT": str(work / "media"),
            }
            # The default worker count of `serve` is what is measured.
            env.pop("CATALOG_WORKERS", None)
            log = work / "catalog.log"
            url = f"http://127.0.0.1:{port}{LIST_PATH}"
            with running([catalog_binary(), "serve"], env=env, log=log):
                videos = wait_for_list(url, cookie, log=log)
                if len(videos) != VIDEOS:
                    raise SystemExit(f"expected {VIDEOS} videos in the list, got {len(videos)}")
                body_bytes = len(json.dumps(videos, separators=(",", ":")).encode())
                wrk_args = {
                    "cookie": cookie,
                    "connections": args.connections,
                    "threads": args.threads,
                }
                run_wrk(url, seconds=args.warmup, **wrk_args)
                result = run_wrk(url, seconds=args.duration, **wrk_args)
    finally:
        names.cleanup()
        shutil.rmtree(work, ignore_errors=True)

    ratio = result.requests_per_second / DJANGO_RPS
    load_after = os.getloadavg()
    ok = (
        result.requests_per_second >= TARGET_RPS
        and result.p99_ms < TARGET_P99_MS
        and not result.errors
    )
    print(
        f"\nGET {LIST_PATH}: {VIDEOS} videos (~{body_bytes} bytes of JSON), cookie auth, "
        f"wrk {args.connections} connections / {args.threads} threads, {args.duration:g}s, "
        f"catalog with its default workers; load average before "
        f"{' '.join(f'{x:.2f}' for x in load_before)}, after "
        f"{' '.join(f'{x:.2f}' for x in load_after)}"
    )
    print(f"{'server':<30}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}  errors")
    print(
        f"{'Django reference':<30}{DJANGO_RPS:>10.0f}{'':>10}{DJANGO_P99_MS:>10.2f}  "
        f"- ({DJANGO_SOURCE})"
    )
    print(
        f"{'catalog (uvicorn)':<30}{result.requests_per_second:>10.0f}{result.p50_ms:>10.2f}"
        f"{result.p99_ms:>10.2f}  {result.errors or '-'}"
    )
    print(
        f"ratio catalog/Django: {ratio:.1f}x req/s; target >= {TARGET_RPS:,.0f} req/s and "
        f"p99 < {TARGET_P99_MS:g} ms: {'PASS' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
