"""Test media, generated with ffmpeg in the run (never downloaded, never committed)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

JOURNEY_CLIP_SECONDS = 25


@dataclass(frozen=True)
class Clip:
    path: Path
    seconds: float


def generate_clip(path: Path, *, seconds: int, width: int, height: int) -> Path:
    """A test-pattern clip with a sine tone (video and audio), cheap to encode."""
    subprocess.run(
        [
            *("ffmpeg", "-hide_banner", "-loglevel", "error", "-y"),
            *("-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=25"),
            *("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"),
            *("-t", str(seconds)),
            *("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"),
            *("-c:a", "aac", "-shortest", str(path)),
        ],
        check=True,
        timeout=120,
    )
    return path
