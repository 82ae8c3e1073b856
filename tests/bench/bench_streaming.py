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
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

from harness import WrkResult, parse_wrk, running, service_binary

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
UNCACHED = "(streaming, no body cache)"

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


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
                body: bytes = response.read()
                return body
        except Exception as exc:
            last_error = exc
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout:.0f}s: {last_error!r}")


def run_wrk(url: str, *, cookie: str, connections: int, threads: int, seconds: float) -> WrkResult:
    command = [
        *("wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency"),
        *("-H", f"Cookie: access_token={cookie}", url),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=True)
    return parse_wrk(completed.stdout)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds per server")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of warm-up per server")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=2, help="processes of each server")
    return parser.parse_args()


def nginx_binary() -> str:
    for tool in ("wrk", "ffmpeg"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is required (apt-get install {tool})")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise SystemExit("nginx is required (apt-get install nginx)")
    return nginx


def streaming_env(
    issuer: TestTokenIssuer, jwks_url: str, nats_env: dict[str, str], media: Path
) -> dict[str, str]:
    """What `videoflix-streaming serve` needs (its port is added per instance)."""
    return {
        **os.environ,
        **nats_env,
        "HTTP_HOST": "127.0.0.1",
        "MEDIA_ROOT": str(media),
        "JWKS_URL": jwks_url,
        "JWT_ISSUER": issuer.issuer,
        "JWT_AUDIENCE": issuer.audience,
        "LOG_LEVEL": "WARNING",
        "ENVIRONMENT": "bench",
    }


def measure(urls: dict[str, str], args: argparse.Namespace, cookie: str) -> dict[str, WrkResult]:
    """wrk against each server in turn (warm-up, then the measured run), same workload."""
    wrk_args = {"cookie": cookie, "connections": args.connections, "threads": args.threads}
    results = {}
    for name, url in urls.items():
        run_wrk(url, seconds=args.warmup, **wrk_args)
        results[name] = run_wrk(url, seconds=args.duration, **wrk_args)
    return results


def serve_and_measure(
    args: argparse.Namespace, work: Path, issuer: TestTokenIssuer
) -> tuple[int, dict[str, WrkResult]]:
    """Start nginx and the two streaming instances on the segment, check that each serves
    it, measure them; the segment's size and the results."""
    cookie = issuer.token(ttl=3600)
    media = work / "media"
    segment = make_segment(media)
    for path in [work, *work.rglob("*")]:  # nginx workers may run as another user
        path.chmod(0o755 if path.is_dir() else 0o644)
    ports = {NGINX: free_port(), STREAMING: free_port(), UNCACHED: free_port()}
    (work / "nginx.conf").write_text(
        NGINX_CONF.format(workers=args.workers, prefix=work, port=ports[NGINX], media=media)
    )
    nginx_cmd = [nginx_binary(), "-p", str(work), "-c", str(work / "nginx.conf")]
    nginx_cmd += ["-e", str(work / "error.log")]
    streaming_cmd = [service_binary("streaming"), "serve", "--workers", str(args.workers)]
    with ServerThread(issuer.jwks_app()) as jwks, published_video(1) as nats_env:
        env = streaming_env(issuer, f"{jwks.url}/.well-known/jwks.json", nats_env, media)
        # For reference only: the same service with its in-memory body cache off, so every
        # segment is read from the file for each request.
        uncached_env = {**env, "HTTP_PORT": str(ports[UNCACHED]), "STREAMING_BODY_CACHE_MB": "0"}
        with (
            running(
                streaming_cmd,
                env={**env, "HTTP_PORT": str(ports[STREAMING])},
                log=work / "streaming.log",
            ),
            running(streaming_cmd, env=uncached_env, log=work / "uncached.log"),
            running(nginx_cmd, log=work / "nginx.log"),
        ):
            urls = {name: f"http://127.0.0.1:{port}{SEGMENT_PATH}" for name, port in ports.items()}
            expected = segment.read_bytes()
            for url in urls.values():
                body = wait_for(url, {"Cookie": f"access_token={cookie}"})
                if body != expected:
                    raise SystemExit(f"{url} did not serve the segment ({len(body)} bytes)")
            return len(expected), measure(urls, args, cookie)


def report(
    args: argparse.Namespace, size: int, load_before: float, results: dict[str, WrkResult]
) -> bool:
    """Print the table and the verdict; whether the target is met."""
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
    return ok


def main() -> int:
    args = parse_args()
    nginx_binary()  # fail before any work when a tool is missing
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="videoflix-bench-streaming-"))
    try:
        size, results = serve_and_measure(args, work, TestTokenIssuer())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if report(args, size, load_before, results) else 1


if __name__ == "__main__":
    sys.exit(main())
