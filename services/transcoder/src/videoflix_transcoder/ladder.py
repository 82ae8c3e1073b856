"""The rendition ladder: which rungs a source gets, their picture size and bitrates.

A rung's box is 854x480, 1280x720 or 1920x1080 (turned upright for portrait video). The
picture is fitted into the box keeping its aspect ratio, with even dimensions, and never
upscaled: a rung is encoded only when the source fills its box in width or height, except
480p, which every video gets (a source smaller than 480p keeps its own size).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from videoflix_transcoder.probe import SourceInfo


@dataclass(frozen=True)
class Rung:
    name: str
    box_width: int
    box_height: int
    video_kbps: int
    maxrate_kbps: int
    bufsize_kbps: int


LADDER: tuple[Rung, ...] = (
    Rung("480p", 854, 480, 1500, 1750, 3500),
    Rung("720p", 1280, 720, 3500, 4000, 8000),
    Rung("1080p", 1920, 1080, 6500, 7500, 15000),
)

# A rung smaller than its box (a narrow or tiny source) needs fewer bits for the same
# quality; never less than this share of the nominal rate.
MIN_BITRATE_SHARE = 0.35


@dataclass(frozen=True)
class Rendition:
    name: str
    width: int
    height: int
    video_kbps: int
    maxrate_kbps: int
    bufsize_kbps: int
    # Content-aware ladder (ratecontrol.py): x264's CRF, capped by maxrate/bufsize; None: the
    # fixed ladder's average bit rate `video_kbps`.
    crf: float | None = None


def plan_renditions(source: SourceInfo) -> list[Rendition]:
    """The renditions for `source`, smallest first; 480p is always the first."""
    renditions = []
    for index, rung in enumerate(LADDER):
        box_width, box_height = _oriented_box(rung, source)
        fills_box = source.width >= box_width or source.height >= box_height
        if index > 0 and not fills_box:
            break
        width, height = fit_within(source.width, source.height, box_width, box_height)
        share = min(1.0, max(MIN_BITRATE_SHARE, (width * height) / (box_width * box_height)))
        renditions.append(
            Rendition(
                name=rung.name,
                width=width,
                height=height,
                video_kbps=round(rung.video_kbps * share),
                maxrate_kbps=round(rung.maxrate_kbps * share),
                bufsize_kbps=round(rung.bufsize_kbps * share),
            )
        )
    return renditions


def fit_within(width: int, height: int, box_width: int, box_height: int) -> tuple[int, int]:
    """Scale (width, height) down into the box keeping the aspect ratio; even, never larger."""
    scale = min(box_width / width, box_height / height, 1.0)
    return (
        _even(width * scale, limit=min(width, box_width)),
        _even(height * scale, limit=min(height, box_height)),
    )


def thumbnail_seconds(duration_seconds: float) -> float:
    """At 5 s into the video, or at 10% of its duration when that comes earlier."""
    return min(5.0, duration_seconds * 0.1)


def _oriented_box(rung: Rung, source: SourceInfo) -> tuple[int, int]:
    if source.height > source.width:
        return rung.box_height, rung.box_width
    return rung.box_width, rung.box_height


def _even(value: float, *, limit: int) -> int:
    """Nearest even size (H.264 4:2:0 needs even sizes), never above `limit` (no upscaling)."""
    return max(2, min(round(value / 2) * 2, limit // 2 * 2))
