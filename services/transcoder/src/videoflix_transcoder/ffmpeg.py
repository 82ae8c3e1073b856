"""ffmpeg command lines (thumbnail, trial encode, the one-pass ladder) and running them.

The ladder is ONE ffmpeg process: the source is decoded once, split, scaled per rung and
encoded by one x264 instance per rung, with key frames forced at the same times in every
rung (by time, not frame count) so segments start on aligned key frames and players can
switch rendition at every segment boundary.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import signal
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from videoflix_transcoder.errors import summarize_ffmpeg_errors
from videoflix_transcoder.ladder import Rendition

PDEATHSIG = 1  # prctl(PR_SET_PDEATHSIG, ...)
STDERR_LINES_KEPT = 60

ProgressCallback = Callable[[float], None]  # seconds of output written so far
COMPLEXITY_SIZE = (640, 360)
COMPLEXITY_FPS = 30
COMPLEXITY_CRF = 23
TRIAL_THREADS = 2


def thumbnail_command(
    *,
    ffmpeg_bin: str,
    source: Path,
    target: Path,
    at_seconds: float,
    width: int,
    height: int,
) -> list[str]:
    return [
        ffmpeg_bin,
        *("-hide_banner", "-nostdin", "-y", "-loglevel", "error"),
        *("-ss", f"{at_seconds:.3f}", "-i", str(source)),
        *("-frames:v", "1", "-an", "-sn", "-dn"),
        *("-vf", f"scale={width}:{height},setsar=1", "-q:v", "3"),
        str(target),
    ]


@dataclass(frozen=True)
class TrialOutput:
    """One encode of a trial: picture size, x264 preset, CRF, and where it goes."""

    width: int
    height: int
    crf: float
    preset: str
    target: Path
    x264_params: str = ""
    frame_rate: int | None = None  # resample to this rate; None: the source's


def trial_command(
    *,
    ffmpeg_bin: str,
    source: Path,
    outputs: list[TrialOutput],
    starts: list[float],
    window_seconds: float,
) -> list[str]:
    """Fixed-quality encodes of a few short windows of `source`, decoded once, one per
    output (each scaled to its size); x264 reports each one's PSNR (see ratecontrol.py)."""
    inputs: list[str] = []
    chains = []
    for i, start in enumerate(starts):
        inputs += ["-noaccurate_seek", "-ss", f"{start:.3f}", "-t", f"{window_seconds:.3f}"]
        inputs += ["-i", str(source)]
        chains.append(f"[{i}:v:0]setsar=1,format=yuv420p,setpts=PTS-STARTPTS[w{i}]")
    joined = "".join(f"[w{i}]" for i in range(len(starts)))
    split = "".join(f"[s{i}]" for i in range(len(outputs)))
    graph = [*chains, f"{joined}concat=n={len(starts)}:v=1:a=0,split={len(outputs)}{split}"]
    for i, output in enumerate(outputs):
        resample = f",fps={output.frame_rate}" if output.frame_rate else ""
        flags = ":flags=area" if output.frame_rate else ""
        graph.append(
            f"[s{i}]scale={output.width}:{output.height}{flags},setsar=1,"
            f"format=yuv420p{resample}[t{i}]"
        )
    command = [
        ffmpeg_bin,
        # Info level: x264's closing summary ("PSNR Mean ... Global:") is an info message.
        *("-hide_banner", "-nostdin", "-y", "-loglevel", "info", "-nostats"),
        *inputs,
        *("-filter_complex", ";".join(graph)),
    ]
    for i, output in enumerate(outputs):
        command += ["-map", f"[t{i}]", "-c:v", "libx264", "-preset", output.preset]
        # A fixed thread count: the same source gives the same bits on every machine.
        command += ["-crf", f"{output.crf:g}", "-threads", str(TRIAL_THREADS), "-flags", "+psnr"]
        if output.x264_params:
            command += ["-x264-params", output.x264_params]
        command += ["-f", "h264", str(output.target)]
    return command


def ladder_command(
    *,
    ffmpeg_bin: str,
    source: Path,
    output_dir: Path,
    renditions: list[Rendition],
    has_audio: bool,
    presets: list[str],
    x264_params: str = "",
    audio_bitrate: str = "128k",
    segment_seconds: int = 10,
    keyframe_seconds: float = 10.0,
    threads: int = 0,
) -> list[str]:
    """One ffmpeg run writing `<output_dir>/<rung>/index.m3u8` + segments and master.m3u8."""
    count = len(renditions)
    split = f"[0:v:0]split={count}" + "".join(f"[s{i}]" for i in range(count))
    scales = [
        # format=yuv420p: 4:4:4 or 10-bit uploads otherwise give H.264 most devices can't play.
        f"[s{i}]scale={r.width}:{r.height},setsar=1,format=yuv420p[v{i}]"
        for i, r in enumerate(renditions)
    ]
    command = [
        ffmpeg_bin,
        *("-hide_banner", "-nostdin", "-y", "-loglevel", "error"),
        *("-progress", "pipe:1", "-nostats"),
        *("-i", str(source)),
        *("-filter_complex", ";".join([split, *scales])),
    ]
    for i in range(count):
        command += ["-map", f"[v{i}]"]
        if has_audio:
            # Decided from the probe: with -var_stream_map a missing audio stream fails even
            # when mapped with "?".
            command += ["-map", "0:a:0"]
    command += ["-c:v", "libx264", "-threads", str(threads)]
    command += _rate_control_options(renditions, presets)
    if x264_params:
        command += ["-x264-params", x264_params]
    command += ["-force_key_frames", f"expr:gte(t,n_forced*{keyframe_seconds:g})"]
    if has_audio:
        command += ["-c:a", "aac", "-ac", "2", "-ar", "48000", "-b:a", audio_bitrate]
    if has_audio:
        stream_map = " ".join(f"v:{i},a:{i},name:{r.name}" for i, r in enumerate(renditions))
    else:
        stream_map = " ".join(f"v:{i},name:{r.name}" for i, r in enumerate(renditions))
    command += [
        *("-f", "hls", "-hls_time", str(segment_seconds), "-hls_playlist_type", "vod"),
        *("-hls_flags", "independent_segments", "-hls_segment_type", "mpegts"),
        *("-hls_segment_filename", str(output_dir / "%v" / "seg_%05d.ts")),
        *("-master_pl_name", "master.m3u8", "-var_stream_map", stream_map),
        str(output_dir / "%v" / "index.m3u8"),
    ]
    return command


def _rate_control_options(renditions: list[Rendition], presets: list[str]) -> list[str]:
    """Per output stream `i`: its x264 preset and its rate control."""
    options: list[str] = []
    for i, (rendition, preset) in enumerate(zip(renditions, presets, strict=True)):
        options += [f"-preset:v:{i}", preset, *rate_control_args(rendition, stream=f":v:{i}")]
    return options


def rate_control_args(rendition: Rendition, *, stream: str = "") -> list[str]:
    """The rung's bit rate (fixed ladder) or capped CRF (content-aware), with its peak rate
    and buffer; `stream` (":v:1") when the command has several outputs."""
    if rendition.crf is None:
        target = [f"-b{stream}", f"{rendition.video_kbps}k"]
    else:
        target = [f"-crf{stream}", f"{rendition.crf:g}"]
    return [
        *target,
        *(f"-maxrate{stream}", f"{rendition.maxrate_kbps}k"),
        *(f"-bufsize{stream}", f"{rendition.bufsize_kbps}k"),
    ]


class FfmpegFailed(Exception):
    def __init__(self, returncode: int, summary: str) -> None:
        super().__init__(f"ffmpeg exited with {returncode}: {summary}")
        self.returncode = returncode
        self.summary = summary


async def run_ffmpeg(
    command: list[str],
    *,
    timeout: float,
    on_progress: ProgressCallback | None = None,
    log: list[str] | None = None,
) -> None:
    """Run ffmpeg; raises FfmpegFailed (with a summary of its errors) or TimeoutError.

    `log`, when given, receives every line ffmpeg wrote to stderr (a trial encode's report).

    ffmpeg dies with this process (PR_SET_PDEATHSIG), so a worker killed with -9 leaves no
    encoder running; cancelling the calling task kills ffmpeg too.
    """
    proc = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=_die_with_parent,
    )
    stderr_tail: deque[str] = deque(maxlen=STDERR_LINES_KEPT)
    assert proc.stdout is not None
    assert proc.stderr is not None
    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(
                _read_progress(proc.stdout, on_progress),
                _read_lines(proc.stderr, stderr_tail, log),
                proc.wait(),
            )
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(BaseException):
            await asyncio.shield(proc.wait())
        raise
    if proc.returncode != 0:
        raise FfmpegFailed(proc.returncode or -1, summarize_ffmpeg_errors(stderr_tail))


async def _read_progress(
    stream: asyncio.StreamReader, on_progress: ProgressCallback | None
) -> None:
    # -progress writes blocks of key=value lines; out_time_us is the output position.
    async for raw in stream:
        key, _, value = raw.decode(errors="replace").strip().partition("=")
        if key == "out_time_us" and on_progress is not None:
            with contextlib.suppress(ValueError):
                microseconds = int(value)
                if microseconds >= 0:
                    on_progress(microseconds / 1_000_000)


async def _read_lines(
    stream: asyncio.StreamReader, into: deque[str], log: list[str] | None
) -> None:
    async for raw in stream:
        line = raw.decode(errors="replace").rstrip()
        if line:
            into.append(line)
            if log is not None:
                log.append(line)


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PDEATHSIG, signal.SIGKILL)
