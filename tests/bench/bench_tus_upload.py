"""Benchmark: a 2 GiB resumable (tus) upload in 50 MB chunks against the single-request
upload, in the same run, to the same catalog process.

    uv run --all-packages python tests/bench/bench_tus_upload.py [--gib 2] [--chunk-mb 50]

Standalone and hermetic, like bench_upload_memory.py (whose helpers it uses): one
`videoflix-catalog serve` with one worker, a Bearer admin token. First the reference: the
file in one multipart request (`POST /api/admin/videos/upload/`). Then the same bytes
through tus: `POST /api/admin/uploads/` with the metadata, then `PATCH` chunks of
`--chunk-mb` MB (the admin page's size) on one keep-alive connection until the last one
turns the upload into a video. The RSS of the server process (and of its ffprobe child) is
sampled every 20 ms in each phase. Prints a table; exits 1 unless both uploads become
videos with exactly the bytes sent (the tus file's sha256 is checked), tus reaches at least
0.8x the single request's throughput and the server process's peak RSS stays under 150 MB
during the tus upload.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench_upload_memory import CHUNK, LIMIT_MB, RssSampler, catalog_for_uploads
from bench_upload_memory import upload as single_request_upload
from harness import Hermetic

TARGET_RATIO = 0.8
SEND_BYTES = 1024 * 1024  # a chunk goes out in pieces of this size


@dataclass
class Phase:
    name: str
    ok: bool
    seconds: float
    peak_own: int
    peak_children: int
    detail: str = ""


def metadata(**fields: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in fields.items())


def tus_upload(
    port: int, token: str, clip: bytes, total: int, chunk: int
) -> tuple[bool, str, float, str]:
    """The file through tus; (accepted, video id or error, seconds, sha256 of what was sent)."""
    block = clip * (CHUNK // len(clip) + 1)  # the same byte stream as the multipart upload
    window = block * (chunk // len(block) + 2)
    digest = hashlib.sha256()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    auth = {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"}
    started = time.monotonic()
    conn.request(
        "POST",
        "/api/admin/uploads/",
        headers={
            **auth,
            "Upload-Length": str(total),
            "Upload-Metadata": metadata(
                title="Two gigabytes in chunks", category="Drama", filename="big.ts"
            ),
        },
    )
    created = conn.getresponse()
    created.read()
    if created.status != 201:
        return False, f"POST {created.status}", 0.0, ""
    location = created.getheader("Location")
    offset = 0
    video_id = ""
    while offset < total:
        size = min(chunk, total - offset)
        start = offset % len(block)
        data = memoryview(window)[start : start + size]
        conn.putrequest("PATCH", location)
        for name, value in {
            **auth,
            "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream",
            "Content-Length": str(size),
        }.items():
            conn.putheader(name, value)
        conn.endheaders()
        for piece in range(0, size, SEND_BYTES):
            conn.send(data[piece : piece + SEND_BYTES])
        digest.update(data)
        response = conn.getresponse()
        body = response.read()
        if response.status != 204:
            return False, f"PATCH {response.status} {body[:200]!r}", 0.0, ""
        offset = int(response.getheader("Upload-Offset") or -1)
        video_id = response.getheader("Video-Id") or ""
    return bool(video_id), video_id, time.monotonic() - started, digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(8 * 1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def measure(pid: int, run) -> tuple[object, RssSampler]:
    sampler = RssSampler(pid)
    sampler.start()
    try:
        result = run()
    finally:
        sampler.stop()
    return result, sampler


def single_request_phase(
    pid: int, port: int, token: str, clip: bytes, total: int, media: Path
) -> Phase:
    (status, body, seconds), rss = measure(
        pid, lambda: single_request_upload(port, token, clip, total)
    )
    stored = media / f"uploads/{body.get('id')}/source.ts"
    size = stored.stat().st_size if stored.exists() else -1
    shutil.rmtree(stored.parent, ignore_errors=True)  # the disk needs to hold one copy only
    return Phase(
        "single request",
        status == 202 and size == total,
        seconds,
        rss.peak_own,
        rss.peak_children,
        f"{status}, {size:,} bytes stored",
    )


def tus_phase(
    pid: int, port: int, token: str, clip: bytes, total: int, media: Path, chunk_mb: int
) -> Phase:
    (accepted, video_id, seconds, sent_sha), rss = measure(
        pid, lambda: tus_upload(port, token, clip, total, chunk_mb * 1000 * 1000)
    )
    stored = media / f"uploads/{video_id}/source.ts"
    same = accepted and stored.exists() and sha256_of(stored) == sent_sha
    detail = f"video {video_id}, sha256 {'identical' if same else 'DIFFERENT'}"
    return Phase(
        f"tus, {chunk_mb} MB chunks",
        same,
        seconds,
        rss.peak_own,
        rss.peak_children,
        detail if accepted else video_id,
    )


def report(phases: list[Phase], total: int, idle: int) -> bool:
    """Print the table and the checks; True when all pass."""
    reference, tus = phases
    ratio = reference.seconds / tus.seconds if tus.seconds and reference.seconds else 0.0
    print(
        f"\n{total:,} bytes ({total / 1024**3:g} GiB) to one catalog process; "
        f"RSS idle {idle / 1e6:.1f} MB"
    )
    print(
        f"{'path':<22}{'time':>9}{'MB/s':>8}{'vs single':>11}{'peak RSS server':>17}"
        f"{'ffprobe':>9}  result"
    )
    for phase in phases:
        print(
            f"{phase.name:<22}{phase.seconds:>8.1f}s{total / phase.seconds / 1e6:>8.0f}"
            f"{reference.seconds / phase.seconds:>10.2f}x{phase.peak_own / 1e6:>14.1f} MB"
            f"{phase.peak_children / 1e6:>6.0f} MB  {phase.detail}"
        )
    tus_mb = tus.peak_own / 1e6
    checks = {
        "both uploads stored exactly": reference.ok and tus.ok,
        f"tus throughput >= {TARGET_RATIO}x single request ({ratio:.2f}x)": ratio >= TARGET_RATIO,
        f"tus peak RSS of the server < {LIMIT_MB} MB ({tus_mb:.1f} MB)": tus_mb < LIMIT_MB,
    }
    for check, passed in checks.items():
        print(f"{'PASS' if passed else 'FAIL'}  {check}")
    return all(checks.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=2.0, help="upload size in GiB")
    parser.add_argument("--chunk-mb", type=int, default=50, help="tus chunk size in MB")
    args = parser.parse_args()
    total = int(args.gib * 1024**3)

    names = Hermetic.new("catalog")
    work = Path(tempfile.mkdtemp(prefix="videoflix-bench-tus-"))
    media = work / "media"
    try:
        with catalog_for_uploads(total, names, work) as catalog:
            pid, port, token, clip = catalog.pid, catalog.port, catalog.token, catalog.clip
            idle = catalog.idle_rss
            phases = [
                single_request_phase(pid, port, token, clip, total, media),
                tus_phase(pid, port, token, clip, total, media, args.chunk_mb),
            ]
    finally:
        names.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    return 0 if report(phases, total, idle) else 1


if __name__ == "__main__":
    sys.exit(main())
