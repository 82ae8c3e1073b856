"""The content-aware ladder: which capped CRF each rung of a title gets, decided once.

Before the ladder, one trial ffmpeg decodes three 1 s windows of the source (at 20/50/80 %
of its length) and encodes them: at 640x360, ultrafast, CRF 23 (the complexity measure
that picks the detailed preset), at every rung's own size with the ladder's preset family
at CRF 23, and the lowest rung once more at CRF 19. x264 reports each encode's frames by
type and its PSNR. From them, per rung: the bit rate at CRF 23 with the ladder's key-frame
spacing (the trial's windows each start with a key frame, which a real segment has only
once), how many CRF steps halve the bits on this content, and the top rung's PSNR. No
VMAF at run time; deterministic: the same source gives the same bits and PSNR (a fixed
trial thread count), so the same CRFs.

Per rung the lower (better) of two CRFs, bounded by TRANSCODER_CRF_MIN/MAX, half steps:

- the quality target: where the top rung's PSNR reaches the value that goes with
  TRANSCODER_VMAF_TARGET (`psnr_for_vmaf`, calibrated on the benchmark's clips);
- the guard: the CRF at which this content spends the fixed ladder's rate at this rung,
  plus GUARD_CRF_STEPS (and CONTENT_OPTIONS_CRF_STEPS for ordinary content, which the
  content-aware ladder encodes with better x264 options, TRANSCODER_X264_PARAMS_CONTENT).
  Measured on the benchmark's clips, the fixed ladder gives VMAF 94-98 on all but the
  hardest content, above any target worth having; one CRF step past its rate costs at
  most ~0.85 VMAF (the steepest rung), so no rung falls a visible step below today's.

The encode is capped: `maxrate` and `bufsize` are the rung's nominal fixed-ladder rate
(480p 1500k, 720p 3500k, 1080p 6500k; scaled like the fixed ladder for sources smaller
than the box), so hard content never costs more than today and easy content costs less.
tests/bench/bench_bitrate.py prints every clip's trial, decision and per-rung VMAF, so the
constants can be checked against VMAF again.

Calibration (bench_bitrate.py --seconds 10; VMAF of each rung at its own size): the top
rung's trial PSNR against the VMAF measured at the CRF chosen, and what `psnr_for_vmaf`
predicts there (0.8 dB per CRF step): Big Buck Bunny 720p 42.3 dB, CRF 18.5: 96.3 (96.4);
simple 1080p 48.3 dB, CRF 26.5: 96.3 (96.0); bikes 42.8 dB, CRF 20: 97.5 (95.7, the line
is cautious there); noise is over-predicted by ~3 (detailed 720p, CRF 21: 91.2 (94.3)),
where the cap decides anyway. The guard left every rung of the four clips within 0.8 VMAF
of the fixed ladder's (simple 720p -0.79 the closest; BBB and detailed rungs above it).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from videoflix_transcoder.ffmpeg import (
    COMPLEXITY_CRF,
    COMPLEXITY_FPS,
    COMPLEXITY_SIZE,
    FfmpegFailed,
    TrialOutput,
    run_ffmpeg,
    trial_command,
)
from videoflix_transcoder.ladder import Rendition
from videoflix_transcoder.probe import SourceInfo
from videoflix_transcoder.settings import TranscoderSettings

logger = logging.getLogger(__name__)

TRIAL_CRF = 23.0
SLOPE_CRF = 19.0  # the lowest rung is also encoded at this CRF: how fast bits fall with CRF
TRIAL_WINDOWS = (0.2, 0.5, 0.8)  # where in the video the sampled windows lie
TRIAL_WINDOW_SECONDS = 1.0
COMPLEXITY_WINDOW_SECONDS = 2.0  # the fixed ladder's trial: the complexity measure alone
TRIAL_TIMEOUT_SECONDS = 300
TRIAL_PRESET = "veryfast"

# x264 spends about half the bits every 4.5-7 CRF steps, depending on the content; the
# trial measures it on the lowest rung, within these bounds.
CRF_PER_HALVING_BOUNDS = (3.5, 8.0)
# How far past the CRF that spends the fixed rate a rung may go: one step costs at most
# about 0.85 VMAF on the benchmark's clips (detailed 480p, the steepest), so one step keeps
# every rung within 1 VMAF of the fixed ladder.
GUARD_CRF_STEPS = 1.0
# What TRANSCODER_X264_PARAMS_CONTENT (trellis=1) buys over today's options for ordinary
# content at the same bits, in CRF steps: ~1 VMAF at +2.5 % bits on Big Buck Bunny and
# bikes, where one step is ~0.75 VMAF. Detailed content has the same options either way.
CONTENT_OPTIONS_CRF_STEPS = 1.3
# The top rung's PSNR (x264's, at the trial CRF and the rung's size) at VMAF 94, and how
# much PSNR one CRF step costs there (calibration: see the module docstring).
PSNR_AT_VMAF_94 = 43.5
PSNR_PER_VMAF = 1.0
PSNR_PER_CRF = 0.8

_PSNR_SUMMARY = re.compile(r"\] PSNR Mean .*Global:\s*([0-9.]+|inf)")
_FRAME_SUMMARY = re.compile(r"\] frame ([IPB]):(\d+)\s.*size:\s*([0-9.]+)")
_ENCODER = re.compile(r"\[libx264 @ (0x[0-9a-f]+)\]")


@dataclass(frozen=True)
class RungTrial:
    name: str
    kbps: float  # what the rung's sampled windows took at TRIAL_CRF
    psnr: float  # x264's global PSNR of them, dB


@dataclass(frozen=True)
class Trial:
    complexity: float  # bits per pixel at 640x360, ultrafast, CRF 23: detailed content?
    rungs: tuple[RungTrial, ...]  # lowest first
    crf_per_halving: float  # CRF steps that halve the bits (measured on the lowest rung)

    def summary(self) -> str:
        if not self.rungs:
            return f"{self.complexity:.3f} bits/pixel"
        rungs = ", ".join(f"{r.name} {r.kbps:.0f}k {r.psnr:.2f} dB" for r in self.rungs)
        return (
            f"{self.complexity:.3f} bits/pixel; at crf {TRIAL_CRF:g}: {rungs}; "
            f"half the bits every {self.crf_per_halving:.1f} crf"
        )


def crf_per_halving(kbps_at_slope_crf: float, kbps_at_trial_crf: float) -> float:
    low, high = CRF_PER_HALVING_BOUNDS
    ratio = kbps_at_slope_crf / max(kbps_at_trial_crf, 1e-3)
    if ratio <= 1.0:  # no fewer bits at the higher CRF: flat content, any CRF will do
        return high
    return min(high, max(low, (TRIAL_CRF - SLOPE_CRF) / math.log2(ratio)))


@dataclass(frozen=True)
class ContentPlan:
    """What the trial decided for a title: the preset family and the renditions' rate
    control (a CRF per rung, or the fixed ladder)."""

    detailed: bool
    renditions: list[Rendition]


def psnr_for_vmaf(vmaf: float) -> float:
    """The top rung's trial PSNR that goes with `vmaf` (the calibration's line)."""
    return PSNR_AT_VMAF_94 + PSNR_PER_VMAF * (vmaf - 94.0)


def choose_crfs(
    trial: Trial,
    renditions: Sequence[Rendition],
    *,
    vmaf_target: float,
    crf_min: float,
    crf_max: float,
    guard_steps: float = GUARD_CRF_STEPS,
) -> dict[str, float]:
    """The CRF of every rung (see the module docstring): deterministic, within the bounds."""
    nominal = {r.name: r.video_kbps for r in renditions}
    top = trial.rungs[-1]
    target_crf = TRIAL_CRF + (top.psnr - psnr_for_vmaf(vmaf_target)) / PSNR_PER_CRF
    chosen = {}
    for rung in trial.rungs:
        spends_fixed_rate = TRIAL_CRF - trial.crf_per_halving * math.log2(
            nominal[rung.name] / max(rung.kbps, 1.0)
        )
        crf = min(target_crf, spends_fixed_rate + guard_steps)
        chosen[rung.name] = min(crf_max, max(crf_min, round(crf * 2) / 2))
    return chosen


def capped(renditions: Sequence[Rendition], crfs: dict[str, float]) -> list[Rendition]:
    """The renditions encoded at their CRF, capped at their nominal rate (1 s of buffer)."""
    return [
        replace(r, crf=crfs[r.name], maxrate_kbps=r.video_kbps, bufsize_kbps=r.video_kbps)
        for r in renditions
    ]


async def run_trial(
    *, source: Path, info: SourceInfo, renditions: Sequence[Rendition], settings: TranscoderSettings
) -> Trial:
    """Encode the sampled windows for the complexity measure and, unless `renditions` is
    empty (the fixed ladder needs only the complexity: today's 2 s windows), at every
    rung's size; raises FfmpegFailed, TimeoutError, OSError or ValueError."""
    seconds_each = TRIAL_WINDOW_SECONDS if renditions else COMPLEXITY_WINDOW_SECONDS
    window = min(seconds_each, info.duration_seconds / len(TRIAL_WINDOWS))
    if window <= 0:
        raise ValueError("the source has no duration to sample")
    span = max(0.0, info.duration_seconds - window)
    starts = [span * at for at in TRIAL_WINDOWS]
    tmp = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="videoflix-trial-"))
    try:
        outputs = _trial_outputs(renditions, settings, tmp)
        log: list[str] = []
        command = trial_command(
            ffmpeg_bin=settings.ffmpeg_bin,
            source=source,
            outputs=outputs,
            starts=starts,
            window_seconds=window,
        )
        await run_ffmpeg(command, timeout=TRIAL_TIMEOUT_SECONDS, log=log)
        sizes = [output.target.stat().st_size for output in outputs]
    finally:
        await asyncio.to_thread(shutil.rmtree, tmp, True)
    seconds = window * len(starts)
    pixels = COMPLEXITY_SIZE[0] * COMPLEXITY_SIZE[1] * COMPLEXITY_FPS * seconds
    complexity = sizes[0] * 8 / pixels
    if not renditions:
        return Trial(complexity=complexity, rungs=(), crf_per_halving=CRF_PER_HALVING_BOUNDS[1])
    reports = reports_by_output(encoder_reports(log), sizes)
    rungs = tuple(
        RungTrial(
            name=r.name, kbps=report.kbps(seconds, settings.keyframe_interval), psnr=report.psnr
        )
        for r, report in zip(renditions, reports[1:-1], strict=True)
    )
    slope_kbps = reports[-1].kbps(seconds, settings.keyframe_interval)
    return Trial(
        complexity=complexity,
        rungs=rungs,
        crf_per_halving=crf_per_halving(slope_kbps, rungs[0].kbps),
    )


def _trial_outputs(
    renditions: Sequence[Rendition], settings: TranscoderSettings, tmp: Path
) -> list[TrialOutput]:
    """The complexity measure's encode, then each rung's at TRIAL_CRF and the lowest rung's
    at SLOPE_CRF, with the content-aware ladder's options for ordinary content."""
    complexity = TrialOutput(
        *COMPLEXITY_SIZE,
        crf=COMPLEXITY_CRF,
        preset="ultrafast",
        target=tmp / "complexity.h264",
        frame_rate=COMPLEXITY_FPS,
    )
    if not renditions:
        return [complexity]
    params = settings.x264_params_for(detailed=False, content_aware=True)
    rungs = [
        TrialOutput(
            r.width,
            r.height,
            crf=TRIAL_CRF,
            preset=TRIAL_PRESET,
            target=tmp / f"{r.name}.h264",
            x264_params=params,
        )
        for r in renditions
    ]
    lowest = renditions[0]
    slope = TrialOutput(
        lowest.width,
        lowest.height,
        crf=SLOPE_CRF,
        preset=TRIAL_PRESET,
        target=tmp / "slope.h264",
        x264_params=params,
    )
    return [complexity, *rungs, slope]


@dataclass
class EncoderReport:
    """What x264's closing summary says about one trial encode."""

    psnr: float = 0.0
    frames: dict[str, tuple[int, float]] = field(default_factory=dict)  # type: (count, bytes)

    @property
    def total_bytes(self) -> float:
        return sum(n * size for n, size in self.frames.values())

    def kbps(self, seconds: float, keyframe_seconds: float) -> float:
        """The rate at one key frame per `keyframe_seconds` (the ladder's), whatever the
        trial had: each window starts with a key frame, which short windows overcount."""
        count = sum(n for n, _ in self.frames.values())
        intra_count, intra_bytes = self.frames.get("I", (0, 0.0))
        others = count - intra_count
        if others <= 0 or seconds <= 0:
            return self.total_bytes * 8 / max(seconds, 1e-3) / 1000
        other_bytes = (
            sum(n * size for kind, (n, size) in self.frames.items() if kind != "I") / others
        )
        per_second = count / seconds * other_bytes + (intra_bytes - other_bytes) / keyframe_seconds
        return per_second * 8 / 1000


def reports_by_output(reports: list[EncoderReport], sizes: list[int]) -> list[EncoderReport]:
    """Which report is whose: the encoders log in no fixed order, so each output file gets
    the report whose frames add up to its size (headers make the file a little larger)."""
    if len(reports) != len(sizes):
        raise ValueError(f"x264 reported on {len(reports)} of {len(sizes)} trial encodes")
    left = list(reports)
    ordered = []
    for size in sizes:
        best = min(left, key=lambda report: abs(size - report.total_bytes))
        left.remove(best)
        ordered.append(best)
    return ordered


def encoder_reports(log: Sequence[str]) -> list[EncoderReport]:
    """x264's closing summary of each encoder that wrote one."""
    reports: dict[str, EncoderReport] = {}
    for line in log:
        encoder = _ENCODER.search(line)
        if encoder is None:
            continue
        report = reports.setdefault(encoder.group(1), EncoderReport())
        if summary := _PSNR_SUMMARY.search(line):
            value = summary.group(1)
            report.psnr = 100.0 if value == "inf" else float(value)
        elif frames := _FRAME_SUMMARY.search(line):
            report.frames[frames.group(1)] = (int(frames.group(2)), float(frames.group(3)))
    return [r for r in reports.values() if r.frames and r.psnr > 0]


async def plan_content(
    *,
    source: Path,
    info: SourceInfo,
    renditions: list[Rendition],
    settings: TranscoderSettings,
) -> ContentPlan:
    """Run the trial (unless nothing needs it) and decide preset family and rate control.

    The trial is an optimisation, never a reason to fail: if it cannot run, the ordinary
    preset and the fixed ladder are used and the ladder encode reports any real problem.
    """
    content_aware = settings.rate_control == "content"
    if settings.detailed_content_bpp <= 0 and not content_aware:
        return ContentPlan(detailed=False, renditions=renditions)
    try:
        trial = await run_trial(
            source=source,
            info=info,
            renditions=renditions if content_aware else [],
            settings=settings,
        )
    except (FfmpegFailed, TimeoutError, OSError, ValueError) as exc:
        logger.warning(
            "complexity check (trial encode) of %s failed (%s); ordinary preset, fixed ladder",
            source.name,
            exc,
        )
        return ContentPlan(detailed=False, renditions=renditions)
    detailed = 0 < settings.detailed_content_bpp < trial.complexity
    if content_aware:
        better_options = not detailed and settings.x264_params_content != settings.x264_params
        crfs = choose_crfs(
            trial,
            renditions,
            vmaf_target=settings.vmaf_target,
            crf_min=settings.crf_min,
            crf_max=settings.crf_max,
            guard_steps=GUARD_CRF_STEPS + (CONTENT_OPTIONS_CRF_STEPS if better_options else 0),
        )
        renditions = capped(renditions, crfs)
    logger.info(
        "trial of %s: %s; %s content, %s",
        source.name,
        trial.summary(),
        "detailed" if detailed else "ordinary",
        ", ".join(f"{r.name} crf {r.crf:g}" for r in renditions if r.crf is not None)
        or "fixed ladder",
    )
    return ContentPlan(detailed=detailed, renditions=renditions)
