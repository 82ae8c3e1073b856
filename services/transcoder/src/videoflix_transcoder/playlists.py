"""HLS playlists after encoding: measured bandwidth in the master playlist.

The HLS spec makes BANDWIDTH an upper bound of the peak segment bit rate. ffmpeg declares
1.1 x the nominal rate, which real segments exceed, so the master playlist is corrected
from the segment files actually written (and AVERAGE-BANDWIDTH added).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_BANDWIDTH = re.compile(r"(?<![-A-Z])BANDWIDTH=\d+")
_AVERAGE_BANDWIDTH = re.compile(r",?AVERAGE-BANDWIDTH=\d+")


@dataclass(frozen=True)
class Segment:
    uri: str
    duration: float
    size_bytes: int


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


def correct_master_bandwidth(master: Path, target_duration: float) -> dict[str, int]:
    """Rewrite BANDWIDTH (never lower than declared) and AVERAGE-BANDWIDTH of every variant
    from its segments; returns the new BANDWIDTH per variant URI."""
    lines = master.read_text().splitlines()
    result: dict[str, int] = {}
    for index, line in enumerate(lines):
        if not line.startswith("#EXT-X-STREAM-INF:"):
            continue
        uri = next((u.strip() for u in lines[index + 1 :] if u.strip()), "")
        segments = read_media_playlist(master.parent / uri)
        declared_match = _BANDWIDTH.search(line)
        declared = int(declared_match.group(0).split("=")[1]) if declared_match else 0
        bandwidth = max(declared, peak_bitrate(segments, target_duration))
        attributes = _AVERAGE_BANDWIDTH.sub("", line.removeprefix("#EXT-X-STREAM-INF:"))
        attributes = _BANDWIDTH.sub(f"BANDWIDTH={bandwidth}", attributes)
        attributes += f",AVERAGE-BANDWIDTH={average_bitrate(segments)}"
        lines[index] = "#EXT-X-STREAM-INF:" + attributes
        result[uri] = bandwidth
    master.write_text("\n".join(line for line in lines if line.strip()) + "\n")
    return result


def encoded_duration(media_playlist: Path) -> float:
    return sum(segment.duration for segment in read_media_playlist(media_playlist))
