"""Benchmark: one HLS segment through the streaming service vs. nginx serving the same file.

    uv run --all-packages python tests/bench/bench_streaming.py [--duration 10] [--connections 16]

Standalone: it cuts one ~620 KB MPEG-TS segment with ffmpeg, starts `videoflix-streaming
serve` (uvicorn, 2 processes, as deployed: the RS256 access-token cookie is checked on every
request against keys from a JWKS endpoint served here, the video's playback state comes from
an announcement on the NATS at NATS_URL under streams of the bench's own, segments come from
the in-memory body cache) and Debian's nginx (2 workers, non-daemon, its own temporary prefix and config,
sendfile) on free ports, then runs wrk with the same connections, threads and duration
against each, one after the other. For reference it also measures the service with the body
cache off (every segment read from the file for each request). It prints req/s, p50 and
p99 and the ratio, and exits 1 when the target is missed: streaming reaches at least 0.5x
nginx's req/s at 16 connections with a p99 under 25 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness import running

from videoflix_shared.bus import EventBus
from videoflix_shared.events import VideoAccessChanged
from videoflix_testing.plugin import ServerThread
from videoflix_testing.tokens import TestTokenIssuer

SEGMENT_TARGET_BYTES = 620 * 1024
SEGMENT_PATH = "/api/video/1/720p/seg_00000.ts"
TARGET_RATIO = 0.5
TARGET_P99_MS = 25.0
NGINX = "nginx (static, sendfile)"
STREAMING = "streaming (uvicorn)"

NGINX_CONF = """\
daemon off;
master_process on;
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    types {{ video/MP2T ts; }}
    server {{
        listen 127.0.0.1:{port};
        location /api/video/ {{ alias {media}/hls/; }}
    }}
}}
"""


@dataclass(frozen=True)
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: str  # non-2xx answers and socket errors, as wrk reports them ("" if none)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_segment(media: Path) -> Path:
    """A real 720p H.264 MPEG-TS segment of ~620 KB (a 4 s segment of the 720p rendition)."""
    segment = media / "hls" / "1" / "720p" / "seg_00000.ts"
    segment.parent.mkdir(parents=True)
    subprocess.run(
        [
            *("ffmpeg", "-nostdin", "-v", "error", "-y"),
            *("-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25", "-t", "8"),
            *("-c:v", "libx264", "-preset", "ultrafast", "-b:v", "2M"),
            *("-f", "mpegts", "-fs", str(SEGMENT_TARGET_BYTES)),
            str(segment),
        ],
        check=True,
        timeout=120,
    )
    # -fs stops just past the limit: cut back to it, on a 188-byte TS packet boundary.
    size = min(segment.stat().st_size, SEGMENT_TARGET_BYTES)
    with segment.open("r+b") as file:
        file.truncate(size // 188 * 188)
    return segment


@contextlib.contextmanager
def published_video(video_id: int) -> Iterator[dict[str, str]]:
    """Announce the video as published and ready, as catalog would, on streams of the bench's
    own (never a running stack's); yields the NATS settings streaming needs; removes them."""
    tag = uuid.uuid4().hex[:8]
    names = {
        "NATS_URL": os.environ.get("NATS_URL", "nats://127.0.0.1:4222"),
        "NATS_SUBJECT_PREFIX": f"bench{tag}.",
        "NATS_STREAM_PREFIX": f"BENCH{tag}_",
    }
    bus = EventBus(
        url=names["NATS_URL"],
        subject_prefix=names["NATS_SUBJECT_PREFIX"],
        stream_prefix=names["NATS_STREAM_PREFIX"],
    )

    async def announce() -> None:
        await bus.connect(wait=False)
        await bus.publish(VideoAccessChanged(video_id=video_id, published=True, ready=True))
        await bus.close()

    async def remove() -> None:
        await bus.connect(wait=False)
        await bus.delete_streams()
        await bus.close()

    asyncio.run(announce())
    try:
        yield names
    finally:
        asyncio.run(remove())


def wait_for(url: str, headers: dict[str, str], timeout: float = 60) -> bytes:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(url, headers=headers)  # noqa: S310 (local URL)
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                return response.read()
        except Exception as exc:
            last_error = exc
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout:.0f}s: {last_error!r}")


def streaming_binary() -> str:
    beside_python = Path(sys.executable).with_name("videoflix-streaming")
    found = str(beside_python) if beside_python.exists() else shutil.which("videoflix-streaming")
    if not found:
        raise SystemExit("videoflix-streaming not found: run with `uv run --all-packages`")
    return found


def to_ms(value: str) -> float:
    match = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", value)
    if match is None:
        raise SystemExit(f"unexpected duration in wrk's output: {value!r}")
    return float(match[1]) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[match[2]]


def parse_wrk(output: str) -> WrkResult:
    rps = re.search(r"Requests/sec:\s+([0-9.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    if not (rps and p50 and p99):
        raise SystemExit(f"could not read wrk's output:\n{output}")
    errors = [
        line.strip() for line in output.splitlines() if "Non-2xx" in line or "Socket errors" in line
    ]
    return WrkResult(float(rps[1]), to_ms(p50[1]), to_ms(p99[1]), "; ".join(errors))


def run_wrk(url: str, *, cookie: str, connections: int, threads: int, seconds: float) -> WrkResult:
    command = [
        *("wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency"),
        *("-H", f"Cookie: access_token={cookie}", url),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=True)
    return parse_wrk(completed.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds per server")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of warm-up per server")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=2, help="processes of each server")
    args = parser.parse_args()
    for tool in ("wrk", "ffmpeg"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is required (apt-get install {tool})")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise SystemExit("nginx is required (apt-get install nginx)")

    load_before = os.getloadavg()[0]
    issuer = TestTokenIssuer()
    cookie = issuer.token(ttl=3600)
    work = Path(tempfile.mkdtemp(prefix="videoflix-bench-streaming-"))
    try:
        media = work / "media"
        segment = make_segment(media)
        for path in [work, *work.rglob("*")]:  # nginx workers may run as another user
            path.chmod(0o755 if path.is_dir() else 0o644)
        size = segment.stat().st_size
        streaming_port, uncached_port, nginx_port = free_port(), free_port(), free_port()
        (work / "nginx.conf").write_text(
            NGINX_CONF.format(workers=args.workers, prefix=work, port=nginx_port, media=media)
        )
        with ServerThread(issuer.jwks_app()) as jwks, published_video(1) as nats_env:
            env = {
                **os.environ,
                **nats_env,
                "HTTP_HOST": "127.0.0.1",
                "HTTP_PORT": str(streaming_port),
                "MEDIA_ROOT": str(media),
                "JWKS_URL": f"{jwks.url}/.well-known/jwks.json",
                "JWT_ISSUER": issuer.issuer,
                "JWT_AUDIENCE": issuer.audience,
                "LOG_LEVEL": "WARNING",
                "ENVIRONMENT": "bench",
            }
            # For reference only: the same service with its in-memory body cache off, so every
            # segment is read from the file for each request.
            uncached_env = {**env, "HTTP_PORT": str(uncached_port), "STREAMING_BODY_CACHE_MB": "0"}
            streaming_cmd = [streaming_binary(), "serve", "--workers", str(args.workers)]
            nginx_cmd = [
                nginx,
                "-p",
                str(work),
                "-c",
                str(work / "nginx.conf"),
                "-e",
                str(work / "error.log"),
            ]
            with (
                running(streaming_cmd, env=env, log=work / "streaming.log"),
                running(streaming_cmd, env=uncached_env, log=work / "uncached.log"),
                running(nginx_cmd, log=work / "nginx.log"),
            ):
                urls = {
                    NGINX: f"http://127.0.0.1:{nginx_port}{SEGMENT_PATH}",
                    STREAMING: f"http://127.0.0.1:{streaming_port}{SEGMENT_PATH}",
                    "(streaming, no body cache)": f"http://127.0.0.1:{uncached_port}{SEGMENT_PATH}",
                }
                expected = segment.read_bytes()
                for url in urls.values():
                    body = wait_for(url, {"Cookie": f"access_token={cookie}"})
                    if body != expected:
                        raise SystemExit(f"{url} did not serve the segment ({len(body)} bytes)")
                results = {}
                for name, url in urls.items():
                    wrk_args = {
                        "cookie": cookie,
                        "connections": args.connections,
                        "threads": args.threads,
                    }
                    run_wrk(url, seconds=args.warmup, **wrk_args)
                    results[name] = run_wrk(url, seconds=args.duration, **wrk_args)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    nginx_result, streaming_result = results[NGINX], results[STREAMING]
    ratio = streaming_result.requests_per_second / nginx_result.requests_per_second
    print(
        f"\nsegment {size} bytes, wrk {args.connections} connections / {args.threads} threads, "
        f"{args.duration:g}s per server, {args.workers} processes each, "
        f"load average before: {load_before:.2f}"
    )
    print(f"{'server':<28}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}  errors")
    for name, result in results.items():
        print(
            f"{name:<28}{result.requests_per_second:>10.0f}{result.p50_ms:>10.2f}"
            f"{result.p99_ms:>10.2f}  {result.errors or '-'}"
        )
    ok = (
        ratio >= TARGET_RATIO
        and streaming_result.p99_ms < TARGET_P99_MS
        and not streaming_result.errors
    )
    print(
        f"ratio streaming/nginx: {ratio:.2f} (target >= {TARGET_RATIO}); streaming p99 "
        f"{streaming_result.p99_ms:.2f} ms (target < {TARGET_P99_MS:g} ms): "
        f"{'PASS' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
