"""ffprobe: what the uploaded file contains (duration, picture size as displayed, audio)."""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from videoflix_transcoder.errors import invalid_source, summarize_ffmpeg_errors, transient

PROBE_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class SourceInfo:
    duration_seconds: float
    width: int  # as displayed: sample aspect ratio applied, rotation applied
    height: int
    rotation: int  # degrees, as found in the file (ffmpeg rotates while decoding)
    frame_rate: float
    pixel_format: str
    has_audio: bool
    audio_channels: int


async def probe_source(path: Path, *, ffprobe_bin: str = "ffprobe") -> SourceInfo:
    """Probe `path`; raises a permanent TranscodeError when the file is not a usable video."""
    if not await asyncio.to_thread(path.is_file):
        raise invalid_source(f"the source file {path.name} does not exist in the media volume")
    returncode, stdout, stderr = await _ffprobe(
        ffprobe_bin, "-print_format", "json", "-show_format", "-show_streams", str(path)
    )
    if returncode != 0:
        summary = summarize_ffmpeg_errors(stderr.decode(errors="replace").splitlines())
        raise invalid_source(f"the upload is not a readable video file (ffprobe: {summary})")
    try:
        report = json.loads(stdout)
    except ValueError:
        raise invalid_source("the upload is not a readable video file") from None
    return source_info_from_probe(report)


def source_info_from_probe(report: dict[str, Any]) -> SourceInfo:
    streams = report.get("streams") or []
    video = next(
        (
            s
            for s in streams
            if s.get("codec_type") == "video"
            # Cover art in audio files is a "video" stream of one still picture.
            and not (s.get("disposition") or {}).get("attached_pic")
        ),
        None,
    )
    if video is None:
        raise invalid_source("the upload has no video stream (audio only or not a video file)")
    coded_width, coded_height = int(video.get("width") or 0), int(video.get("height") or 0)
    if coded_width <= 0 or coded_height <= 0:
        raise invalid_source("the video stream has no picture size; the file looks damaged")

    duration = _first_positive_float(
        (report.get("format") or {}).get("duration"), video.get("duration")
    )
    if duration is None:
        raise invalid_source("the duration of the upload cannot be determined; re-export it")

    rotation = _rotation(video)
    sample_aspect = _fraction(video.get("sample_aspect_ratio")) or Fraction(1)
    display_width = max(1, round(coded_width * sample_aspect))
    width, height = display_width, coded_height
    if rotation % 180 == 90:
        width, height = height, width

    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    return SourceInfo(
        duration_seconds=duration,
        width=width,
        height=height,
        rotation=rotation,
        frame_rate=float(
            _fraction(video.get("avg_frame_rate")) or _fraction(video.get("r_frame_rate")) or 0
        ),
        pixel_format=str(video.get("pix_fmt") or "unknown"),
        has_audio=audio is not None,
        audio_channels=int(audio.get("channels") or 0) if audio else 0,
    )


def _first_positive_float(*values: Any) -> float | None:
    for value in values:
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number) and number > 0:
            return number
    return None


def _fraction(value: Any) -> Fraction | None:
    """ffprobe writes ratios as "16:9" or "30000/1001"; "0:1" and "N/A" mean unknown."""
    if not isinstance(value, str):
        return None
    text = value.replace(":", "/")
    try:
        fraction = Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None
    return fraction if fraction > 0 else None


def _rotation(video: dict[str, Any]) -> int:
    for side_data in video.get("side_data_list") or []:
        if "rotation" in side_data:
            return round(float(side_data["rotation"])) % 360
    rotate_tag = (video.get("tags") or {}).get("rotate")
    if rotate_tag is not None:
        try:
            return int(rotate_tag) % 360
        except ValueError:
            return 0
    return 0


async def video_start_time(path: Path, *, ffprobe_bin: str = "ffprobe") -> float:
    """The first timestamp of the video stream (films cut chunks on the source's own
    timestamps); 0 when ffprobe does not say."""
    _, stdout, _ = await _ffprobe(
        ffprobe_bin,
        *("-select_streams", "v:0", "-show_entries", "stream=start_time"),
        *("-of", "default=noprint_wrappers=1:nokey=1", str(path)),
    )
    return _first_positive_float(stdout.decode().strip()) or 0.0


async def _ffprobe(ffprobe_bin: str, *args: str) -> tuple[int, bytes, bytes]:
    """Run ffprobe (errors only on stderr); transient TranscodeError if it hangs."""
    proc = await asyncio.create_subprocess_exec(
        ffprobe_bin,
        *("-v", "error", *args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
            stdout, stderr = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise transient(f"ffprobe did not answer within {PROBE_TIMEOUT_SECONDS}s") from None
    return proc.returncode or 0, stdout, stderr
