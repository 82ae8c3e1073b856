"""Transcode benchmark: this transcoder's one-pass ladder vs. the usual three ffmpeg runs.

For each clip (a simple one, ffmpeg's `testsrc2`, and a detailed one, `mandelbrot` with
temporal noise; 1080p30 with audio, generated here) it times

  (a) baseline: what comparable projects do - one ffmpeg run per rendition (480p, 720p,
      1080p) at x264's default preset, each decoding the source again, plus one more run
      for the thumbnail, and
  (b) ladder: the transcoder's own pipeline (`videoflix_transcoder.pipeline.encode_video`,
      the code the workers run, configured by the same TRANSCODER_* environment variables,
      at the fixed bit rates of (a): TRANSCODER_RATE_CONTROL=fixed),

and prints wall time, real-time factor (wall / clip duration), peak memory of the largest
ffmpeg process, and VMAF of the 720p rendition against the source (scaled to 720p; SSIM
when no libvmaf is at hand), then the speed-up and the VMAF difference.

Debian's ffmpeg has no libvmaf; the static ffmpeg in the `imageio-ffmpeg` dev package has,
and is used for scoring only.

    uv run --all-packages python tests/bench/bench_transcode.py            # 60 s clips
    uv run --all-packages python tests/bench/bench_transcode.py --seconds 10 --reuse-baseline
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from videoflix_transcoder.ladder import LADDER

REPO = Path(__file__).resolve().parents[2]
CLIPS = {
    "simple": "testsrc2=size=1920x1080:rate=30",
    # maxiter bounds the fractal's cost; the noise makes every frame detailed and unique.
    "detailed": "mandelbrot=size=1920x1080:rate=30:maxiter=1000,noise=alls=12:allf=t+u",
}
TARGET_SPEEDUP = 2.0
MAX_VMAF_LOSS = 1.0


@dataclass
class Run:
    wall_seconds: float
    cpu_seconds: float  # user + system of every ffmpeg: steadier than wall time on a busy box
    peak_rss_mib: float
    output_dir: Path
    score: float | None = None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=60, help="clip length (default 60)")
    parser.add_argument(
        "--clips", default="simple,detailed", help="comma-separated: simple,detailed"
    )
    parser.add_argument("--work-dir", type=Path, default=REPO / ".data" / "bench")
    parser.add_argument(
        "--reuse-baseline",
        action="store_true",
        help="reuse a baseline measured earlier on the same clip (for tuning the ladder)",
    )
    parser.add_argument(
        "--baseline-preset", default="", help="x264 preset for (a); default: x264's"
    )
    parser.add_argument(
        "--run-ladder", nargs=2, metavar=("SOURCE", "OUTPUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.run_ladder:
        run_ladder_here(Path(args.run_ladder[0]), Path(args.run_ladder[1]))
        return

    args.work_dir.mkdir(parents=True, exist_ok=True)
    scorer = Scorer()
    print(f"scoring with {scorer.metric} ({scorer.ffmpeg})", file=sys.stderr)
    print(f"ladder settings: {ladder_settings_summary()}", file=sys.stderr)
    rows = []
    for kind in args.clips.split(","):
        source = make_source(kind, args.seconds, args.work_dir)
        baseline = measure_baseline(
            source, args.work_dir, args.baseline_preset, args.reuse_baseline, scorer
        )
        ladder = measure_ladder(source, args.work_dir)
        ladder.score = scorer.score(ladder.output_dir / "720p" / "index.m3u8", source)
        rows.append((kind, args.seconds, baseline, ladder))
        print(
            f"{kind}: baseline {baseline.wall_seconds:.1f}s, ladder {ladder.wall_seconds:.1f}s",
            file=sys.stderr,
        )
    if not print_table(rows, scorer.metric):
        sys.exit(1)  # make bench fails when a target printed here is missed


# -- sources ---------------------------------------------------------------------------------


def make_source(kind: str, seconds: int, work_dir: Path) -> Path:
    """A 1080p30 clip with stereo audio, encoded at high quality like a camera upload."""
    path = work_dir / f"source-{kind}-{seconds}s.mp4"
    if path.exists():
        return path
    print(f"generating {path.name} ...", file=sys.stderr)
    partial = path.with_suffix(".partial.mp4")
    subprocess.run(
        [
            *("ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y"),
            *("-f", "lavfi", "-i", f"{CLIPS[kind]},trim=duration={seconds}"),
            *("-f", "lavfi", "-i", f"sine=frequency=440:beep_factor=4:duration={seconds}"),
            *("-c:v", "libx264", "-preset", "veryfast", "-crf", "16", "-pix_fmt", "yuv420p"),
            *("-c:a", "aac", "-b:a", "192k", "-ac", "2", "-shortest", str(partial)),
        ],
        check=True,
    )
    partial.rename(path)
    return path


# -- (a) baseline ----------------------------------------------------------------------------


def baseline_commands(source: Path, out: Path, preset: str) -> list[list[str]]:
    commands = []
    for rung in LADDER:
        (out / rung.name).mkdir(parents=True, exist_ok=True)
        commands.append(
            [
                *(
                    "ffmpeg",
                    "-hide_banner",
                    "-nostdin",
                    "-y",
                    "-loglevel",
                    "error",
                    "-i",
                    str(source),
                ),
                *("-vf", f"scale=-2:{rung.box_height}", "-c:v", "libx264"),
                *(("-preset", preset) if preset else ()),
                *("-b:v", f"{rung.video_kbps}k", "-maxrate", f"{rung.maxrate_kbps}k"),
                *("-bufsize", f"{rung.bufsize_kbps}k", "-pix_fmt", "yuv420p"),
                *("-c:a", "aac", "-ac", "2", "-b:a", "128k"),
                *("-f", "hls", "-hls_time", "10", "-hls_playlist_type", "vod"),
                *("-hls_segment_filename", str(out / rung.name / "seg_%05d.ts")),
                str(out / rung.name / "index.m3u8"),
            ]
        )
    commands.append(
        [
            *("ffmpeg", "-hide_banner", "-nostdin", "-y", "-loglevel", "error"),
            *("-ss", "5", "-i", str(source), "-frames:v", "1", "-vf", "scale=-2:480"),
            str(out / "thumbnail.jpg"),
        ]
    )
    return commands


def measure_baseline(source: Path, work_dir: Path, preset: str, reuse: bool, scorer: Scorer) -> Run:
    out = work_dir / f"{source.stem}-baseline"
    cache = out / "result.json"
    if reuse and cache.exists():
        cached = json.loads(cache.read_text())
        return Run(
            cached["wall_seconds"],
            cached["cpu_seconds"],
            cached["peak_rss_mib"],
            out,
            cached["score"],
        )
    shutil.rmtree(out, ignore_errors=True)
    commands = baseline_commands(source, out, preset)
    started = time.perf_counter()
    peak_kib, cpu = 0, 0.0
    for command in commands:
        command_peak_kib, command_cpu = run_measured(command)
        peak_kib, cpu = max(peak_kib, command_peak_kib), cpu + command_cpu
    run = Run(time.perf_counter() - started, cpu, peak_kib / 1024, out)
    run.score = scorer.score(out / "720p" / "index.m3u8", source)
    record = {
        "wall_seconds": run.wall_seconds,
        "cpu_seconds": run.cpu_seconds,
        "peak_rss_mib": run.peak_rss_mib,
        "score": run.score,
    }
    cache.write_text(json.dumps(record))
    return run


def run_measured(command: list[str]) -> tuple[int, float]:
    """Run a command to completion; returns its peak resident memory (KiB) and CPU seconds."""
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            stderr.seek(0)
            raise RuntimeError(
                f"{command[0]} failed: {stderr.read().decode(errors='replace')[-2000:]}"
            )
    return usage.ru_maxrss, usage.ru_utime + usage.ru_stime


# -- (b) the transcoder's ladder -------------------------------------------------------------


def measure_ladder(source: Path, work_dir: Path) -> Run:
    """Run the pipeline in a child process, so its ffmpeg children's peak memory is its own."""
    out = work_dir / f"{source.stem}-ladder"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    # The fixed bit rates, like (a): this compares one pass against three runs, not rate
    # control (the content-aware ladder against the fixed one is bench_bitrate.py's).
    env = {**os.environ, "TRANSCODER_RATE_CONTROL": "fixed"}
    result = subprocess.run(
        [sys.executable, __file__, "--run-ladder", str(source), str(out)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return Run(report["wall_seconds"], report["cpu_seconds"], report["peak_rss_mib"], out)


def run_ladder_here(source: Path, out: Path) -> None:
    from videoflix_transcoder.pipeline import encode_video
    from videoflix_transcoder.settings import TranscoderSettings

    settings = TranscoderSettings()
    started = time.perf_counter()
    asyncio.run(encode_video(source=source, output_dir=out, generation=1, settings=settings))
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        json.dumps(
            {
                "wall_seconds": wall,
                "cpu_seconds": usage.ru_utime + usage.ru_stime,
                "peak_rss_mib": usage.ru_maxrss / 1024,
            }
        )
    )


def ladder_settings_summary() -> str:
    from videoflix_transcoder.settings import TranscoderSettings

    s = TranscoderSettings()
    summary = []
    for detailed in (False, True):
        presets = {
            name: s.preset_for(name, detailed=detailed) for name in ("480p", "720p", "1080p")
        }
        params = s.x264_params_for(detailed=detailed) or "-"
        summary.append(f"{'detailed' if detailed else 'ordinary'} content: {presets} {params}")
    return f"{'; '.join(summary)} (detailed above {s.detailed_content_bpp} bits/pixel)"


# -- scoring ---------------------------------------------------------------------------------


class Scorer:
    """VMAF (or SSIM) of a 720p rendition against the source scaled to 720p."""

    def __init__(self) -> None:
        self.ffmpeg = "ffmpeg"
        self.metric = "SSIM"
        try:
            import imageio_ffmpeg

            self.ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
        except ImportError:
            pass
        filters = subprocess.run(
            [self.ffmpeg, "-hide_banner", "-filters"], capture_output=True, text=True
        ).stdout
        if " libvmaf " in filters:
            self.metric = "VMAF"

    def score(self, rendition: Path, source: Path) -> float:
        prepare = (
            "[0:v]setpts=PTS-STARTPTS[d];[1:v]scale=1280:720:flags=bicubic,setpts=PTS-STARTPTS[r];"
        )
        with tempfile.TemporaryDirectory() as tmp:
            log = Path(tmp) / "score.json"
            if self.metric == "VMAF":
                graph = f"{prepare}[d][r]libvmaf=n_threads=2:log_fmt=json:log_path={log}"
            else:
                graph = f"{prepare}[d][r]ssim=stats_file={log}"
            result = subprocess.run(
                [
                    *(self.ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "info"),
                    *("-i", str(rendition), "-i", str(source)),
                    *("-filter_complex", graph, "-f", "null", "-"),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            if self.metric == "VMAF":
                return float(json.loads(log.read_text())["pooled_metrics"]["vmaf"]["mean"])
            line = next(x for x in result.stderr.splitlines() if "SSIM" in x and "All:" in x)
            return float(line.split("All:")[1].split()[0])


# -- report ----------------------------------------------------------------------------------


def print_table(rows: list[tuple[str, int, Run, Run]], metric: str) -> bool:
    """Print the tables; True when every clip meets its target."""
    print(f"\n| clip | variant | wall s | RTF (wall/duration) | CPU s | peak MiB | {metric} 720p |")
    print("|---|---|---:|---:|---:|---:|---:|")
    summary = []
    for kind, seconds, baseline, ladder in rows:
        for name, run in (("(a) 3 runs + thumbnail", baseline), ("(b) one-pass ladder", ladder)):
            print(
                f"| {kind} {seconds}s | {name} | {run.wall_seconds:.1f} | "
                f"{run.wall_seconds / seconds:.2f} | {run.cpu_seconds:.1f} | "
                f"{run.peak_rss_mib:.0f} | {run.score:.2f} |"
            )
        speedup = baseline.wall_seconds / ladder.wall_seconds
        loss = (baseline.score or 0) - (ladder.score or 0)
        if metric == "VMAF":
            met = speedup >= TARGET_SPEEDUP and loss <= MAX_VMAF_LOSS
        else:
            met = speedup >= TARGET_SPEEDUP
        cpu_ratio = baseline.cpu_seconds / ladder.cpu_seconds
        verdict = "yes" if met else "NO"
        summary.append(f"| {kind} | {speedup:.2f}x | {cpu_ratio:.2f}x | {-loss:+.2f} | {verdict} |")
    print(
        f"\n| clip | speed-up (a)/(b) wall | CPU (a)/(b) | {metric} (b)-(a) "
        "| target met (>= 2x wall, >= -1 VMAF) |"
    )
    print("|---|---:|---:|---:|---|")
    print("\n".join(summary))
    return all(line.endswith("| yes |") for line in summary)


if __name__ == "__main__":
    main()
