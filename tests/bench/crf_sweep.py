"""Calibration tool for the content-aware ladder (not part of `make bench`): bytes, CPU and
VMAF of one rung of one clip under several x264 settings, to see how far a CRF can go
before a rung loses a given VMAF against the fixed ladder's average bit rate.

Each setting is one string of ffmpeg output options; the encode is video only, one key
frame per 10 s segment like the ladder, scaled to the rung's size, and scored like
bench_bitrate.py (libvmaf from imageio-ffmpeg, against the source scaled to that size):

    uv run --all-packages --group bench python tests/bench/crf_sweep.py simple 854x480 \\
        "-preset veryfast -b:v 1500k -maxrate 1750k -bufsize 3500k -x264-params aq-mode=2" \\
        "-preset veryfast -crf 22 -maxrate 1500k -bufsize 1500k -x264-params aq-mode=2:trellis=1"

The clip is a name of bench_bitrate.py (bigbuckbunny, bikes, simple, detailed; --seconds
sets the generated ones' length) or a path.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import tempfile
from pathlib import Path

from bench_bitrate import REPO, VmafScorer, clip_source

from videoflix_transcoder.probe import probe_source

KEYFRAME_FRAMES = 300  # 10 s at 30 fps: one key frame per segment


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("clip")
    parser.add_argument("size", help="WIDTHxHEIGHT of the rung")
    parser.add_argument("settings", nargs="+", help="ffmpeg output options, one string each")
    parser.add_argument("--seconds", type=int, default=10, help="generated clips' length")
    parser.add_argument("--work-dir", type=Path, default=REPO / ".data" / "bench")
    args = parser.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    path = Path(args.clip)
    source = path if path.is_file() else clip_source(args.clip, args.seconds, args.work_dir)
    width, height = (int(n) for n in args.size.split("x"))
    seconds = asyncio.run(probe_source(source)).duration_seconds
    scorer = VmafScorer()
    print("| setting | kbit/s | CPU s | VMAF |\n|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for setting in args.settings:
            out = Path(tmp) / "rung.mp4"
            cpu = encode(source, out, width, height, setting.split())
            kbps = out.stat().st_size * 8 / seconds / 1000
            vmaf = scorer.score_file(out, source, width, height)
            print(f"| {setting} | {kbps:.0f} | {cpu:.1f} | {vmaf:.2f} |", flush=True)


def encode(source: Path, out: Path, width: int, height: int, options: list[str]) -> float:
    """Encode; the CPU seconds ffmpeg took."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(
        [
            *("ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y"),
            *("-i", str(source), "-an", "-vf", f"scale={width}:{height}", "-c:v", "libx264"),
            *("-g", str(KEYFRAME_FRAMES), "-keyint_min", str(KEYFRAME_FRAMES)),
            *("-sc_threshold", "0", *options, "-f", "mp4", str(out)),
        ],
        check=True,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


if __name__ == "__main__":
    main()
