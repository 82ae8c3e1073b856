"""HLS playlists after encoding: measured bandwidth in the master playlist.

The HLS spec makes BANDWIDTH an upper bound of the peak segment bit rate. ffmpeg declares
1.1 x the nominal rate (or the cap, for a capped CRF), which real segments exceed or stay
far below, so the master playlist is rewritten from the segment files actually written:
BANDWIDTH is the true peak and AVERAGE-BANDWIDTH the average (players' ABR picks a rung by
them; a content-aware rung declared at its cap would be chosen too rarely).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

_BANDWIDTH = re.compile(r"(?<![-A-Z])BANDWIDTH=\d+")
_AVERAGE_BANDWIDTH = re.compile(r",?AVERAGE-BANDWIDTH=\d+")


@dataclass(frozen=True)
class Segment:
    uri: str
    duration: float
    size_bytes: int


class RenditionBitrate(TypedDict):
    """What a rendition took (bits/s, segments as written: video, audio, container) and the
    CRF it was encoded at (None: the fixed ladder's bit rate)."""

    average_bitrate: int
    peak_bitrate: int
    crf: float | None


@dataclass(frozen=True)
class VariantRate:
    peak_bitrate: int  # BANDWIDTH
    average_bitrate: int  # AVERAGE-BANDWIDTH


def read_media_playlist(path: Path) -> list[Segment]:
    segments = []
    duration: float | None = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("#EXTINF:"):
            duration = float(line.removeprefix("#EXTINF:").split(",", 1)[0])
        elif line and not line.startswith("#") and duration is not None:
            size = (path.parent / line).stat().st_size
            segments.append(Segment(uri=line, duration=duration, size_bytes=size))
            duration = None
    return segments


def peak_bitrate(segments: list[Segment], target_duration: float) -> int:
    """Peak segment bit rate as the HLS spec defines it (RFC 8216bis, 4.4.6.2): the highest
    rate of any run of consecutive segments lasting 0.5 to 1.5 target durations."""
    if not segments:
        return 0
    best = 0.0
    for start in range(len(segments)):
        seconds = 0.0
        size = 0
        for segment in segments[start:]:
            seconds += segment.duration
            size += segment.size_bytes
            if seconds > 1.5 * target_duration:
                break
            if seconds >= 0.5 * target_duration and seconds > 0:
                best = max(best, size * 8 / seconds)
    if best == 0.0:  # the whole video is shorter than half a target duration
        total_seconds = sum(s.duration for s in segments) or 1.0
        best = sum(s.size_bytes for s in segments) * 8 / total_seconds
    return int(best) + 1


def average_bitrate(segments: list[Segment]) -> int:
    total_seconds = sum(s.duration for s in segments)
    if total_seconds <= 0:
        return 0
    return int(sum(s.size_bytes for s in segments) * 8 / total_seconds) + 1


def variant_rate(media_playlist: Path, target_duration: float) -> VariantRate:
    segments = read_media_playlist(media_playlist)
    return VariantRate(peak_bitrate(segments, target_duration), average_bitrate(segments))


def correct_master_bandwidth(master: Path, target_duration: float) -> dict[str, VariantRate]:
    """Rewrite BANDWIDTH (the measured peak) and AVERAGE-BANDWIDTH of every variant from its
    segments; returns them per variant URI."""
    lines = master.read_text().splitlines()
    result: dict[str, VariantRate] = {}
    for index, line in enumerate(lines):
        if not line.startswith("#EXT-X-STREAM-INF:"):
            continue
        uri = next((u.strip() for u in lines[index + 1 :] if u.strip()), "")
        rate = variant_rate(master.parent / uri, target_duration)
        attributes = _AVERAGE_BANDWIDTH.sub("", line.removeprefix("#EXT-X-STREAM-INF:"))
        attributes = _BANDWIDTH.sub(f"BANDWIDTH={rate.peak_bitrate}", attributes)
        attributes += f",AVERAGE-BANDWIDTH={rate.average_bitrate}"
        lines[index] = "#EXT-X-STREAM-INF:" + attributes
        result[uri] = rate
    master.write_text("\n".join(line for line in lines if line.strip()) + "\n")
    return result


def renditions_bitrate(
    rates: dict[str, VariantRate], crfs: dict[str, float | None]
) -> dict[str, RenditionBitrate]:
    """Per rung name ("480p"), from the rates per variant URI ("480p/index.m3u8")."""
    return {
        name: RenditionBitrate(
            average_bitrate=rate.average_bitrate, peak_bitrate=rate.peak_bitrate, crf=crf
        )
        for name, crf in crfs.items()
        if (rate := rates.get(f"{name}/index.m3u8")) is not None
    }


def encoded_duration(media_playlist: Path) -> float:
    return sum(segment.duration for segment in read_media_playlist(media_playlist))
