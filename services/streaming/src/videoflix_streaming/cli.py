"""`videoflix-streaming serve [--workers N]`: the service on uvicorn (uvloop, httptools).

Why uvicorn, as every other service, and no longer Granian: a segment now leaves from the
per-process body cache (service.py), and for that uvicorn does less work per request.
uvloop writes the cached `bytes` to the socket as they are, in the one thread that ran the
request; Granian copies every body from Python into Rust and hands each request between
three threads (its I/O thread, the thread that takes the GIL to schedule the request, the
event loop's), with a GIL handover and wake-ups on each. Measured on this machine (620 KB
segment from memory, 16 connections, 2 processes each, in rounds interleaved with nginx so
both see the same load from other processes): Granian 260-430 µs of CPU per request,
uvicorn with http_protocol.py 170-240, nginx 130-180; requests/s 0.72x nginx on Granian,
0.95x on uvicorn (medians of 10 rounds). CPU per request is what counts on a loaded
machine, where each server gets its share of the cores. What Granian had for it, sending a
file missing from the cache by `http.response.pathsend`, is replaced by one read in a
worker thread (api.py), which costs ~15% more CPU than pathsend did for such a request, and
the file is then kept in the cache.

Settings that are not the other services' (`run_http_service`): no access log (one line per
segment), and no proxy-header middleware, because streaming never uses the client's
address. The event loop and parser are named rather than "auto", so an install without
uvloop or httptools fails at start instead of serving at a fraction of the speed.
"""

from __future__ import annotations

import argparse

import uvicorn

from videoflix_shared.logs import configure_logging
from videoflix_shared.metrics import workers_share_metrics
from videoflix_shared.workers import WORKER_HEALTHCHECK_SECONDS
from videoflix_streaming.http_protocol import CoalescingHttpToolsProtocol
from videoflix_streaming.settings import StreamingSettings

APP_FACTORY = "videoflix_streaming.app:create_app"


def serve(settings: StreamingSettings, *, workers: int) -> None:
    configure_logging("streaming", level=settings.log_level, fmt=settings.log_format)
    # One /metrics for all workers (videoflix_shared.metrics).
    with workers_share_metrics("streaming", workers=workers):
        uvicorn.run(
            APP_FACTORY,
            factory=True,
            host=settings.http_host,
            port=settings.http_port,
            workers=workers,  # a supervisor restarts a worker that dies
            loop="uvloop",
            http=CoalescingHttpToolsProtocol,  # httptools; a response in one write
            ws="none",  # no WebSocket routes: upgrades are never attempted
            lifespan="on",
            log_config=None,
            access_log=False,
            proxy_headers=False,
            server_header=False,
            timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="videoflix-streaming")
    parser.add_argument("command", choices=["serve"])
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="server processes (default: STREAMING_WORKERS, 2)",
    )
    args = parser.parse_args(argv)
    settings = StreamingSettings()
    workers = args.workers if args.workers is not None else settings.workers
    if workers < 1:
        parser.error("--workers must be at least 1")
    serve(settings, workers=workers)
