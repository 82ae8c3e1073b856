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
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from harness import Hermetic, WrkResult, load_average, parse_wrk, running, service_binary
from sqlalchemy import select

from videoflix_catalog.cli import MIGRATIONS
from videoflix_catalog.models import Category, Video, VideoStatus
from videoflix_shared.db import (
    create_engine,
    create_session_factory,
    ensure_database,
    run_migrations,
)
from videoflix_testing.plugin import ServerThread, free_port
from videoflix_testing.tokens import TestTokenIssuer

VIDEOS = 50
LIST_PATH = "/api/video/"
# Not run here (no Django in this project): issue #5's figures for a comparable Django
# implementation of the same endpoint, measured on this machine kind with the same wrk setup.
DJANGO_RPS = 176.0
DJANGO_P99_MS = 126.0
DJANGO_SOURCE = "issue #5, not run here"
TARGET_RPS = 1760.0
TARGET_P99_MS = 20.0


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


def run_wrk(url: str, *, cookie: str, connections: int, threads: int, seconds: float) -> WrkResult:
    command = [
        *("wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency"),
        *("-H", f"Cookie: access_token={cookie}", url),
    ]
    return parse_wrk(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


def measure(args: argparse.Namespace, names: Hermetic, work: Path) -> tuple[WrkResult, int]:
    """Seed, start catalog, check the list, then wrk: the result and the list's size."""
    issuer = TestTokenIssuer()
    cookie = issuer.token(user_id=7, email="bench@example.com", ttl=3600)
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
        with running([service_binary("catalog"), "serve"], env=env, log=log):
            videos = wait_for_list(url, cookie, log=log)
            if len(videos) != VIDEOS:
                raise SystemExit(f"expected {VIDEOS} videos in the list, got {len(videos)}")
            body_bytes = len(json.dumps(videos, separators=(",", ":")).encode())
            wrk_args = {"cookie": cookie, "connections": args.connections, "threads": args.threads}
            run_wrk(url, seconds=args.warmup, **wrk_args)
            return run_wrk(url, seconds=args.duration, **wrk_args), body_bytes


def report(
    args: argparse.Namespace,
    result: WrkResult,
    body_bytes: int,
    load: tuple[tuple[float, float, float], tuple[float, float, float]],
) -> bool:
    """Print the table next to the Django reference; whether the targets are met."""
    ok = (
        result.requests_per_second >= TARGET_RPS
        and result.p99_ms < TARGET_P99_MS
        and not result.errors
    )
    print(
        f"\nGET {LIST_PATH}: {VIDEOS} videos (~{body_bytes} bytes of JSON), cookie auth, "
        f"wrk {args.connections} connections / {args.threads} threads, {args.duration:g}s, "
        f"catalog with its default workers; load average before "
        f"{load_average(load[0])}, after {load_average(load[1])}"
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
        f"ratio catalog/Django: {result.requests_per_second / DJANGO_RPS:.1f}x req/s; target "
        f">= {TARGET_RPS:,.0f} req/s and p99 < {TARGET_P99_MS:g} ms: {'PASS' if ok else 'FAIL'}"
    )
    return ok


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
    names = Hermetic.new("catalog")
    work = Path(tempfile.mkdtemp(prefix="videoflix-bench-catalog-"))
    try:
        result, body_bytes = measure(args, names, work)
    finally:
        names.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    ok = report(args, result, body_bytes, (load_before, os.getloadavg()))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
