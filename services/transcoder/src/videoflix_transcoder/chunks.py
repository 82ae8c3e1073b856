"""Films: the chunk-parallel ladder's plan, its files on the media volume and its ffmpeg
command lines (no Redis, NATS or jobs here; `films.py` runs them).

A source longer than TRANSCODER_FILM_THRESHOLD_SECONDS is cut by time into chunks of whole
HLS segments. The rungs are split into groups: the lowest rung alone (so it is playable
first), the others together (one decode for both). A chunk job decodes only its range and
encodes it for the rungs of its group into one MP4 per rung (video only, key frames at
every segment boundary); the film's audio is encoded once, whole, by its own job. The
assembly of a group joins its chunks with the concat demuxer and the audio by stream copy
into each rung's HLS segments.

Frame-exact cuts: a chunk decodes from a key frame before its start with the source's own
timestamps (`-copyts -noaccurate_seek`) and keeps the frames in [start, end) with `trim`,
both bounds half a frame early, so every frame falls into exactly one chunk whatever the
rounding of its timestamp.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from videoflix_transcoder.ffmpeg import rate_control_args
from videoflix_transcoder.ladder import Rendition

PLAN = "plan.json"
AUDIO = "audio.m4a"
SEEK_MARGIN_SECONDS = 1.0  # decode from a key frame at least this much before the chunk
MASTER_HEADER = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n"
_QUIET = ("-hide_banner", "-nostdin", "-y", "-loglevel", "error")


@dataclass(frozen=True)
class Chunk:
    index: int
    start: float  # seconds from the video's first frame
    end: float | None  # None: to the end of the source

    def seconds(self, duration: float) -> float:
        return (self.end if self.end is not None else duration) - self.start


@dataclass(frozen=True)
class FilmPlan:
    """What the chunk, audio and assembly jobs of one (video, generation) need to know;
    written once by the first job (`plan.json` in the film's work directory)."""

    video_id: int
    generation: int
    source_path: str  # relative to MEDIA_ROOT
    duration_seconds: float
    width: int
    height: int
    has_audio: bool
    frame_rate: float
    start_time: float  # of the video stream, in the source's own timestamps
    detailed: bool
    renditions: list[Rendition]  # with the content-aware ladder's CRF per rung, if any
    chunks: list[Chunk]
    groups: list[list[str]] = field(default_factory=list)  # rung names, lowest rung first

    def rungs(self, group: int) -> list[Rendition]:
        names = self.groups[group]
        return [r for r in self.renditions if r.name in names]

    def save(self, path: Path) -> None:
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(self)))
        temporary.replace(path)

    @classmethod
    def load(cls, path: Path) -> FilmPlan | None:
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        raw["renditions"] = [Rendition(**r) for r in raw["renditions"]]
        raw["chunks"] = [Chunk(**c) for c in raw["chunks"]]
        return cls(**raw)


def plan_chunks(duration: float, *, segment_seconds: int, chunk_seconds: float) -> list[Chunk]:
    """Cut `duration` into chunks of whole segments (at least one) of about `chunk_seconds`.

    A remainder shorter than half a chunk joins the last chunk rather than making a tiny
    job of its own."""
    length = max(1, round(chunk_seconds / segment_seconds)) * segment_seconds
    count = max(1, math.floor(duration / length))
    if duration - count * length >= length / 2:
        count += 1
    return [
        Chunk(
            index=i,
            start=float(i * length),
            end=None if i == count - 1 else float((i + 1) * length),
        )
        for i in range(count)
    ]


def rung_groups(renditions: list[Rendition]) -> list[list[str]]:
    """The lowest rung alone (it makes the video playable), then all others together."""
    names = [r.name for r in renditions]
    return [names[:1], names[1:]] if len(names) > 1 else [names]


@dataclass(frozen=True)
class FilmFiles:
    """The work directory of one film generation: `hls/.film-<id>-<generation>/`."""

    root: Path

    @classmethod
    def of(cls, media_root: Path, video_id: int, generation: int) -> FilmFiles:
        return cls(media_root / "hls" / f".film-{video_id}-{generation}")

    @property
    def plan(self) -> Path:
        return self.root / PLAN

    @property
    def audio(self) -> Path:
        return self.root / AUDIO

    def chunk(self, rung: str, index: int) -> Path:
        return self.root / rung / f"chunk_{index:05d}.mp4"

    def concat_list(self, rung: str, chunks: list[Chunk]) -> Path:
        """An ffconcat file naming the rung's chunks in order (paths relative to it)."""
        path = self.root / rung / "chunks.ffconcat"
        lines = [
            "ffconcat version 1.0",
            *(f"file {self.chunk(rung, c.index).name}" for c in chunks),
        ]
        path.write_text("\n".join(lines) + "\n")
        return path


def chunk_command(
    *,
    ffmpeg_bin: str,
    source: Path,
    plan: FilmPlan,
    chunk: Chunk,
    rungs: list[Rendition],
    presets: list[str],
    outputs: list[Path],
    x264_params: str,
    keyframe_seconds: float,
    threads: int,
) -> list[str]:
    """One ffmpeg decoding only `chunk`'s range and encoding it for every rung in `rungs`
    (one MP4 each), with the ladder's rate control and a key frame every segment."""
    half_frame = 0.5 / plan.frame_rate if plan.frame_rate > 0 else 1 / 240
    trim = f"trim=start={max(0.0, plan.start_time + chunk.start - half_frame):.6f}"
    seek = max(0.0, plan.start_time + chunk.start - SEEK_MARGIN_SECONDS)
    if chunk.end is not None:
        # No input -t: it would count from the key frame the seek lands on. ffmpeg stops
        # reading once trim has ended every output.
        trim += f":end={plan.start_time + chunk.end - half_frame:.6f}"
    count = len(rungs)
    graph = [
        f"[0:v:0]{trim},setpts=PTS-STARTPTS,split={count}"
        + "".join(f"[s{i}]" for i in range(count))
    ]
    graph += [
        f"[s{i}]scale={r.width}:{r.height},setsar=1,format=yuv420p[v{i}]"
        for i, r in enumerate(rungs)
    ]
    # A set thread count holds for the whole chunk job, decoder and scalers included: a
    # worker is then one core, and cores are filled by workers (one per core), which
    # scales better than threads inside one encode. 0 lets ffmpeg decide for each part.
    pinned = ("-threads", str(threads)) if threads > 0 else ()
    command = [
        ffmpeg_bin,
        *_QUIET,
        *("-progress", "pipe:1", "-nostats"),
        *("-copyts", "-noaccurate_seek", "-ss", f"{seek:.3f}", *pinned, "-i", str(source)),
        *(("-filter_complex_threads", str(threads)) if threads > 0 else ()),
        *("-filter_complex", ";".join(graph)),
    ]
    for i, (rendition, preset, output) in enumerate(zip(rungs, presets, outputs, strict=True)):
        command += [
            *("-map", f"[v{i}]", "-c:v", "libx264", "-threads", str(threads), "-preset", preset),
            # The title's rate control, decided once in the plan (renditions carry it).
            *rate_control_args(rendition, stream=":v"),
            *(("-x264-params", x264_params) if x264_params else ()),
            *("-force_key_frames", f"expr:gte(t,n_forced*{keyframe_seconds:g})"),
            *("-an", "-sn", "-dn", "-f", "mp4", str(output)),
        ]
    return command


def audio_command(*, ffmpeg_bin: str, source: Path, target: Path, bitrate: str) -> list[str]:
    """The whole film's audio in one AAC encode (the ladder's settings), so no chunk edge
    ever gets an encoder priming gap."""
    return [
        ffmpeg_bin,
        *_QUIET,
        *("-progress", "pipe:1", "-nostats", "-i", str(source)),
        *("-map", "0:a:0", "-vn", "-sn", "-dn"),
        *("-c:a", "aac", "-ac", "2", "-ar", "48000", "-b:a", bitrate),
        *("-f", "mp4", str(target)),
    ]


def assemble_command(
    *,
    ffmpeg_bin: str,
    concat_list: Path,
    audio: Path | None,
    output_dir: Path,
    segment_seconds: int,
) -> list[str]:
    """Join a rung's chunks (and the film's audio) by stream copy into HLS segments, its
    media playlist and a one-variant master playlist (`variant.m3u8`: RESOLUTION, CODECS)."""
    inputs = ["-f", "concat", "-safe", "0", "-i", str(concat_list)]
    maps = ["-map", "0:v:0"]
    if audio is not None:
        inputs += ["-i", str(audio)]
        maps += ["-map", "1:a:0"]
    return [
        ffmpeg_bin,
        *_QUIET,
        *inputs,
        *maps,
        *("-c", "copy"),
        *("-f", "hls", "-hls_time", str(segment_seconds), "-hls_playlist_type", "vod"),
        *("-hls_flags", "independent_segments", "-hls_segment_type", "mpegts"),
        *("-hls_segment_filename", str(output_dir / "seg_%05d.ts")),
        *("-master_pl_name", "variant.m3u8"),
        str(output_dir / "index.m3u8"),
    ]


def master_playlist(variants: dict[str, str]) -> str:
    """A master playlist listing `variants` (rung name -> its `#EXT-X-STREAM-INF` line) in
    ladder order, each pointing at `<rung>/index.m3u8`."""
    lines = [MASTER_HEADER.rstrip("\n")]
    for rung, stream_inf in variants.items():
        lines += [stream_inf, f"{rung}/index.m3u8"]
    return "\n".join(lines) + "\n"


def stream_inf_line(variant_playlist: Path) -> str:
    """The `#EXT-X-STREAM-INF` line ffmpeg wrote for a single rung."""
    for line in variant_playlist.read_text().splitlines():
        if line.startswith("#EXT-X-STREAM-INF:"):
            return line.strip()
    raise ValueError(f"no variant in {variant_playlist}")
