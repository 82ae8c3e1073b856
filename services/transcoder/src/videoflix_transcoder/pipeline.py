"""Source file -> finished HLS directory: probe, thumbnail, one-pass ladder, playlist fix.

No Redis, NATS or job bookkeeping here (the benchmark runs exactly this code); the job in
`service.py` wraps it with atomic output, retries and events.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from videoflix_transcoder.errors import TranscodeError, invalid_source, transient
from videoflix_transcoder.ffmpeg import (
    FfmpegFailed,
    ladder_command,
    run_ffmpeg,
    thumbnail_command,
)
from videoflix_transcoder.ladder import Rendition, fit_within, plan_renditions, thumbnail_seconds
from videoflix_transcoder.playlists import (
    RenditionBitrate,
    correct_master_bandwidth,
    encoded_duration,
    renditions_bitrate,
)
from videoflix_transcoder.probe import SourceInfo, probe_source
from videoflix_transcoder.ratecontrol import plan_content
from videoflix_transcoder.settings import TranscoderSettings

logger = logging.getLogger(__name__)

MASTER_PLAYLIST = "master.m3u8"
THUMBNAIL = "thumbnail.jpg"
THUMBNAIL_BOX = (854, 480)
THUMBNAIL_TIMEOUT_SECONDS = 120
RECORD = ".transcode.json"  # what was encoded, kept beside the output (not served)

# ffmpeg messages that mean the upload itself is broken: retrying cannot help.
_INPUT_ERRORS = (
    "invalid data found",
    "moov atom not found",
    "error while decoding",
    "corrupt",
    "decoder (codec",
    "could not find codec parameters",
    "unsupported codec",
    "no such file or directory",
    "end of file",
)

ProgressPercent = Callable[[float], None]


@dataclass(frozen=True)
class EncodeResult:
    generation: int
    duration_seconds: float
    width: int
    height: int
    renditions: list[str]
    # False while a film's higher rungs are still being assembled (films.py).
    complete: bool = True
    # Per rung: average and peak bit rate as written, and its CRF (None: fixed ladder).
    renditions_bitrate: dict[str, RenditionBitrate] = field(default_factory=dict)

    def save(self, directory: Path) -> None:
        (directory / RECORD).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, directory: Path) -> EncodeResult | None:
        try:
            return cls(**json.loads((directory / RECORD).read_text()))
        except (OSError, ValueError, TypeError):
            return None


def encode_timeout(settings: TranscoderSettings, duration_seconds: float) -> float:
    """How long the ladder encode may take: a multiple of the video's own duration."""
    return max(settings.min_timeout_seconds, duration_seconds * settings.timeout_factor)


def _log_encode_plan(
    source: Path,
    info: SourceInfo,
    renditions: list[Rendition],
    settings: TranscoderSettings,
    *,
    detailed: bool,
) -> None:
    logger.info(
        "encoding %s (%.1fs, %dx%d, %s content) into %s",
        source.name,
        info.duration_seconds,
        info.width,
        info.height,
        "detailed" if detailed else "ordinary",
        ", ".join(
            f"{r.name} {r.width}x{r.height} {settings.preset_for(r.name, detailed=detailed)} "
            + (f"{r.video_kbps}k" if r.crf is None else f"crf {r.crf:g} max {r.maxrate_kbps}k")
            for r in renditions
        ),
    )


async def encode_video(
    *,
    source: Path,
    output_dir: Path,
    generation: int,
    settings: TranscoderSettings,
    on_progress: ProgressPercent | None = None,
) -> EncodeResult:
    """Encode `source` into `output_dir` (which must exist and be empty)."""
    info = await probe_source(source, ffprobe_bin=settings.ffprobe_bin)
    await make_thumbnail(source=source, info=info, target=output_dir / THUMBNAIL, settings=settings)
    content = await plan_content(
        source=source, info=info, renditions=plan_renditions(info), settings=settings
    )
    renditions, detailed = content.renditions, content.detailed
    command = ladder_command(
        ffmpeg_bin=settings.ffmpeg_bin,
        source=source,
        output_dir=output_dir,
        renditions=renditions,
        has_audio=info.has_audio,
        presets=[settings.preset_for(r.name, detailed=detailed) for r in renditions],
        x264_params=settings.x264_params_for(
            detailed=detailed, content_aware=renditions[0].crf is not None
        ),
        audio_bitrate=settings.audio_bitrate,
        segment_seconds=settings.segment_seconds,
        keyframe_seconds=settings.keyframe_interval,
        threads=settings.ffmpeg_threads,
    )

    def seconds_done(seconds: float) -> None:
        if on_progress is not None:
            on_progress(min(100.0, seconds * 100 / info.duration_seconds))

    timeout = encode_timeout(settings, info.duration_seconds)
    _log_encode_plan(source, info, renditions, settings, detailed=detailed)
    try:
        await run_ffmpeg(command, timeout=timeout, on_progress=seconds_done)
    except TimeoutError:
        raise transient(
            f"encoding took longer than {timeout:.0f}s, the limit for a "
            f"{info.duration_seconds:.0f}s video (TRANSCODER_TIMEOUT_FACTOR); workers overloaded?"
        ) from None
    except FfmpegFailed as exc:
        raise classify_ffmpeg_failure(exc) from None

    check_complete(output_dir / renditions[0].name / "index.m3u8", info)
    rates = correct_master_bandwidth(output_dir / MASTER_PLAYLIST, settings.segment_seconds)
    return EncodeResult(
        generation=generation,
        duration_seconds=round(info.duration_seconds, 3),
        width=info.width,
        height=info.height,
        renditions=[r.name for r in renditions],
        renditions_bitrate=renditions_bitrate(rates, {r.name: r.crf for r in renditions}),
    )


async def make_thumbnail(
    *, source: Path, info: SourceInfo, target: Path, settings: TranscoderSettings
) -> None:
    width, height = fit_within(info.width, info.height, *_thumbnail_box(info))
    at = thumbnail_seconds(info.duration_seconds)
    # Seeking can land past the last frame of a variable-frame-rate or oddly cut file;
    # then the very first frame is still a better thumbnail than none.
    for seconds in (at, 0.0) if at > 0 else (0.0,):
        command = thumbnail_command(
            ffmpeg_bin=settings.ffmpeg_bin,
            source=source,
            target=target,
            at_seconds=seconds,
            width=width,
            height=height,
        )
        try:
            await run_ffmpeg(command, timeout=THUMBNAIL_TIMEOUT_SECONDS)
        except TimeoutError:
            raise transient("cutting the thumbnail timed out") from None
        except FfmpegFailed as exc:
            raise classify_ffmpeg_failure(exc, step="the thumbnail") from None
        if _is_nonempty_file(target):
            return
    raise invalid_source("no picture could be decoded from the upload for the thumbnail")


def check_complete(media_playlist: Path, info: SourceInfo) -> None:
    """A truncated upload can decode "successfully" up to where it breaks off."""
    try:
        written = encoded_duration(media_playlist)
    except OSError as exc:
        raise transient(f"ffmpeg finished without writing its playlist ({exc})") from None
    missing = info.duration_seconds - written
    if missing > max(1.0, 0.05 * info.duration_seconds):
        raise invalid_source(
            f"the upload is truncated or damaged: only {written:.1f}s of its "
            f"{info.duration_seconds:.1f}s could be decoded; upload the complete file again"
        )


def _is_nonempty_file(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


def _thumbnail_box(info: SourceInfo) -> tuple[int, int]:
    box_width, box_height = THUMBNAIL_BOX
    return (box_height, box_width) if info.height > info.width else (box_width, box_height)


def classify_ffmpeg_failure(exc: FfmpegFailed, step: str = "the encode") -> TranscodeError:
    if exc.returncode < 0 or exc.returncode >= 128:
        # Killed by a signal (out of memory, operator): the next attempt may well succeed.
        return transient(f"ffmpeg was killed during {step} (signal or out of memory)")
    lowered = exc.summary.lower()
    if "no space left" in lowered:
        return transient(f"the media volume is full during {step}: {exc.summary}")
    if any(marker in lowered for marker in _INPUT_ERRORS):
        return invalid_source(f"ffmpeg cannot decode the upload during {step}: {exc.summary}")
    return transient(f"ffmpeg failed during {step}: {exc.summary}")
