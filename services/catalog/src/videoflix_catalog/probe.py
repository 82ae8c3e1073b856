"""Asking ffprobe whether a received file is a video catalog can accept, and its size.

Used on every complete upload before the video is recorded; the transcoder probes again,
fully, when it encodes. A file without a readable video stream, or a still image (which
ffprobe reports as a one-frame video), is refused as `Unsupported` on the `file` field.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videoflix_shared.errors import Unsupported

FILE_FIELD = "file"
NOT_A_VIDEO = "The file is not a video that can be processed (no readable video stream)."
PROBE_TIMED_OUT = "The file could not be read as a video (probing timed out)."
STILL_IMAGE = "The file is a still image, not a video."

# ffprobe reports still images as one-frame "video" streams in these formats.
_IMAGE_FORMATS = re.compile(r"(^|,)(image2|[a-z0-9]+_pipe|apng|gif|webp)(,|$)")


@dataclass(frozen=True)
class ProbeResult:
    width: int
    height: int
    duration_seconds: float | None
    format_name: str


async def probe_video(path: Path, *, ffprobe_bin: str, timeout: float) -> ProbeResult:
    """What `path` holds; `Unsupported` unless it is a video ffprobe can read in time."""
    return _video_from(await _ffprobe_json(path, ffprobe_bin=ffprobe_bin, timeout=timeout))


async def _ffprobe_json(path: Path, *, ffprobe_bin: str, timeout: float) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        ffprobe_bin,
        "-v",
        "error",
        "-select_streams",
        "V",
        "-show_entries",
        "stream=width,height:format=format_name,duration",
        "-of",
        "json",
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "LC_ALL": "C"},
    )
    try:
        stdout, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise Unsupported(PROBE_TIMED_OUT, field=FILE_FIELD) from None
    if process.returncode != 0:
        raise Unsupported(NOT_A_VIDEO, field=FILE_FIELD)
    try:
        info = json.loads(stdout or b"{}")
    except ValueError:
        raise Unsupported(NOT_A_VIDEO, field=FILE_FIELD) from None
    if not isinstance(info, dict):
        raise Unsupported(NOT_A_VIDEO, field=FILE_FIELD)
    return info


def _video_from(info: dict[str, Any]) -> ProbeResult:
    streams = [
        s for s in info.get("streams", []) if s.get("width", 0) > 0 and s.get("height", 0) > 0
    ]
    format_name = str(info.get("format", {}).get("format_name", ""))
    if not streams:
        raise Unsupported(NOT_A_VIDEO, field=FILE_FIELD)
    if _IMAGE_FORMATS.search(format_name):
        raise Unsupported(STILL_IMAGE, field=FILE_FIELD)
    try:
        duration: float | None = float(info["format"]["duration"])
    except (KeyError, TypeError, ValueError):
        duration = None
    return ProbeResult(
        width=int(streams[0]["width"]),
        height=int(streams[0]["height"]),
        duration_seconds=duration,
        format_name=format_name,
    )
